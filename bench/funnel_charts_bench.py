"""What the Funnel page's charts cost beside the page: server time of the page and of each
chart image (the first request draws it, later ones are served kept), on the demo's store.

The store is ``leadflow demo``'s sample funnel (1,200 leads, 15 reps, 400 deals) run over
``--days`` simulated days, so every chart has figures to draw; the page is requested for those
days through the daemon's application in-process, as bench/dashboard_bench.py does.

    .venv/bin/python bench/funnel_charts_bench.py [--days 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from dashboard_bench import PASSWORD, ROOT, application

from leadflow.cli.demo_funnel import START, run_demo_funnel
from leadflow.config import load_settings
from leadflow.logs import configure_logging
from leadflow.store.database import create_store_engine


async def measure(app: object, period: str, rounds: int) -> dict[str, list[float]]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    times: dict[str, list[float]] = {"page": []}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        login = await http.post("/ui/login", data={"username": "ops", "password": PASSWORD})
        assert login.status_code == 303, login.text
        page = ""
        for _ in range(rounds):
            started = time.perf_counter()
            page = (await http.get(f"/ui/funnel?{period}")).text
            times["page"].append(time.perf_counter() - started)
        urls = [u.replace("&amp;", "&") for u in re.findall(r'<img src="([^"]+)"', page)]
        assert len(urls) == 4, urls
        for url in urls:
            name = url.split("?")[0].rsplit("/", 1)[1]
            for round_ in range(rounds):
                started = time.perf_counter()
                response = await http.get(url)
                elapsed = time.perf_counter() - started
                assert response.status_code == 200, (url, response.status_code)
                times.setdefault(f"{name} ({'drawn' if round_ == 0 else 'kept'})", []).append(
                    elapsed
                )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configure_logging("warning")
    with open("/proc/loadavg", encoding="ascii") as load:
        print(f"load average before: {load.read().strip()}")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        (folder / "config.yaml").write_text("", encoding="utf-8")
        settings = load_settings(ROOT / "config.yaml", env={})
        started = time.perf_counter()
        run_demo_funnel(settings.settings, folder / "demo", days=args.days)
        print(f"demo store: {args.days} days simulated in {time.perf_counter() - started:.0f} s")
        url = f"sqlite:///{folder / 'demo' / 'leadflow.db'}"
        engine = create_store_engine(url)
        app = application(engine, url, folder)
        last = (START + timedelta(days=args.days - 1)).date()
        times = asyncio.run(measure(app, f"from={START.date()}&to={last}", args.rounds))
        engine.dispose()
    print(f"server time, median (slowest) of {args.rounds}; a chart's first request draws it")
    for name, samples in times.items():
        median, slowest = statistics.median(samples) * 1000, max(samples) * 1000
        print(f"  {name:<32} {median:8.1f} ms ({slowest:.1f})")
    with open("/proc/loadavg", encoding="ascii") as load:
        print(f"load average after: {load.read().strip()}")


if __name__ == "__main__":
    main()
