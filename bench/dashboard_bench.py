"""Server time of each dashboard page on a large store, on SQLite and PostgreSQL.

The store (bench/dashboard_store.py): ``--leads`` leads among 20 reps, each with its stage
entry and (nine in ten) an activity, ``--audit`` audit rows spread over the leads and 578 days,
a running SLA timer on every tenth lead, 100,000 outbox rows (sent, failed, pending) and a
score change on every tenth lead, all generated inside the database (set-based, loaded as a
bulk load is: indexes and constraints put back afterwards), both stores at the same time
(SQLite in a thread of this process, PostgreSQL in its server). The bench checks that each
store then has every index, constraint and trigger its migration made.

Each page is requested through the daemon's ASGI application in-process (httpx's ASGI
transport: no network, so the time is the server's: routing, the session check, the queries,
the template), signed in as an operator, ``--rounds`` times; the median and the slowest are
reported. The Funnel page is first requested once, which starts its period's report (the
last 7 days), and the report is waited for: its computing time is reported on its own line (it
is the report's time); the rounds then measure the page served from that snapshot, as the
daemon serves it after warming the default period. Then the Funnel page's chart images, twice
each: the first request draws the chart, the second is served kept. The defaults run in under
5 minutes on 2 cores.

    .venv/bin/python bench/dashboard_bench.py [--leads 1000000] [--audit 10000000] [--rounds 5]
        [--skip-postgres] [--skip-sqlite] [--postgres URL] [--schema-prefix lf_dashboard_bench]
        [--no-stage-history]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).parent))
from dashboard_store import NOW, fill_postgres, fill_sqlite, schema

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.dashboard.funnel_page import period_days
from leadflow.dashboard.funnel_snapshots import FunnelSnapshots, funnel_snapshots
from leadflow.engine.runtime import Runtime
from leadflow.http import create_app
from leadflow.rule_language.model import RuleSet
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.store.database import create_store_engine, migrate

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password"
PAGES = (
    "/ui/funnel",
    "/ui/rules",
    "/ui/sla",
    "/ui/sla?status=running&page=200",
    "/ui/sla?status=breached",
    "/ui/outbox?status=failed",
    "/ui/outbox?status=pending",
    "/ui/search?q=L0500000",
    "/ui/search?q=lead77",
    "/ui/leads/L0000077",
)


def application(engine: Engine, url: str, folder: Path) -> tuple[Any, FunnelSnapshots]:
    """The daemon's application and the Funnel page's snapshots (as the daemon holds them)."""
    config = folder / "config.yaml"
    config.write_text("", encoding="utf-8")
    hashed = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    settings = load_settings(
        config,
        env={},
        overrides={
            "database.url": url,
            "paths.rules": str(ROOT / "rules"),
            "paths.templates": str(ROOT / "templates"),
            "attributes.leads": {"region": "string", "employees": "integer"},
            "http.allow_anonymous": True,
            "dashboard.enabled": True,
            "dashboard.users": {"ops": {"password_hash": hashed, "role": "operator"}},
        },
    ).settings
    runtime = Runtime.build(engine, settings, SettableClock(NOW))
    holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=runtime.clock)
    holder.record_success(runtime.load_rules())
    snapshots = funnel_snapshots(runtime)
    return create_app(runtime, holder, funnel=snapshots), snapshots


SLOW = 5.0
"""A page slower than this (seconds) in the first round is not requested again: over ten times
the target is measured well enough once, and more rounds of it would not fit in 5 minutes."""


async def measure(app: Any, snapshots: FunnelSnapshots, rounds: int) -> dict[str, list[float]]:
    transport = httpx.ASGITransport(app=app)
    times: dict[str, list[float]] = {page: [] for page in PAGES}
    bodies: dict[str, str] = {}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        login = await http.post("/ui/login", data={"username": "ops", "password": PASSWORD})
        assert login.status_code == 303, login.text
        times.update(await _funnel_snapshot(http, snapshots))
        for _ in range(rounds):
            for page in PAGES:
                if times[page] and times[page][0] > SLOW:
                    continue
                started = time.perf_counter()
                response = await http.get(page)
                times[page].append(time.perf_counter() - started)
                assert response.status_code == 200, (page, response.status_code)
                bodies[page] = response.text
        times.update(await _charts(http, bodies["/ui/funnel"]))
    return times


async def _funnel_snapshot(
    http: httpx.AsyncClient, snapshots: FunnelSnapshots
) -> dict[str, list[float]]:
    """The Funnel page's first request (its report starts, the page waits dashboard.funnel_wait
    for it), then the report's own computing time: what the snapshot took, waited for here.
    The rounds then measure the page served from that snapshot, as the daemon serves it once
    it has warmed the default period."""
    started = time.perf_counter()
    response = await http.get("/ui/funnel")
    first = time.perf_counter() - started
    assert response.status_code == 200, response.status_code
    assert await asyncio.to_thread(snapshots.wait_idle, 3600), "the report did not finish"
    snapshot = snapshots.kept(*period_days(None, None, NOW.date()))
    assert snapshot is not None, "the report failed: see the log"
    return {
        "  Funnel, first request (report starts)": [first],
        "  Funnel report (the snapshot computed)": [snapshot.took],
    }


async def _charts(http: httpx.AsyncClient, page: str) -> dict[str, list[float]]:
    """The Funnel page's chart images: the first request draws, the next ones are kept."""
    times: dict[str, list[float]] = {}
    for found in re.findall(r'<img src="(/ui/funnel/charts/[^"]+)"', page):
        url = found.replace("&amp;", "&")
        for when in ("drawn", "kept"):
            started = time.perf_counter()
            response = await http.get(url)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, (url, response.status_code)
            name = url.split("?")[0].rsplit("/", 1)[1]
            times.setdefault(f"  chart {name} ({when})", []).append(elapsed)
    return times


def report(store: str, times: dict[str, list[float]]) -> None:
    print(f"\n{store}: page server time, median (slowest) of the rounds")
    print("  (a chart image: one request each, the first drawing it, the second kept)")
    for page, samples in times.items():
        slow = len(samples) == 1 and samples[0] > SLOW and not page.startswith("  ")
        once = " (once: over 5 s)" if slow else ""
        label = f"{page} (from its snapshot)" if page == "/ui/funnel" else page
        print(
            f"  {label:<42} {statistics.median(samples) * 1000:9.1f} ms "
            f"({max(samples) * 1000:.1f}){once}"
        )


def note(began: float, line: str) -> None:
    print(f"[{time.perf_counter() - began:5.0f} s] {line}", flush=True)


def fill_both(
    stores: dict[str, Engine], args: argparse.Namespace, log: Callable[[str], None]
) -> None:
    """Both stores filled at the same time: SQLite's statements in a thread of this process
    (the sqlite3 module lets go of the GIL while a statement runs), PostgreSQL's in its server;
    on two cores the two take about as long as the slower one. Each store is checked to have
    the indexes, constraints and triggers its migration made."""
    made = {name: schema(engine) for name, engine in stores.items()}
    failures: list[BaseException] = []

    def one(name: str, engine: Engine) -> None:
        started = time.perf_counter()
        try:
            if engine.dialect.name == "sqlite":
                engine.dispose()  # the load needs the only connection to the file
                assert engine.url.database is not None
                fill_sqlite(
                    engine.url.database, args.leads, args.audit, log, history=args.stage_history
                )
            else:
                fill_postgres(engine, args.leads, args.audit, log, history=args.stage_history)
        except BaseException as exc:  # re-raised below, in the main thread
            failures.append(exc)
        log(f"{name}: filled in {time.perf_counter() - started:.0f} s")

    threads = [threading.Thread(target=one, args=item) for item in stores.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    for name, engine in stores.items():
        assert schema(engine) == made[name], f"{name}: the store lost an index or constraint"


def postgres_store(base: str, prefix: str) -> tuple[Engine, Engine, str, str]:
    """The admin engine, a store engine on a schema of its own, the schema and the version."""
    admin = create_engine(base)
    schema_name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema_name}"'))
        version = connection.execute(text("SHOW server_version")).scalar_one()
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema_name}"})
    engine = create_store_engine(url.render_as_string(hide_password=False), statement_timeout=3600)
    return admin, engine, schema_name, str(version).split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--audit", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("LEADFLOW_TEST_PG_URL", "postgresql://postgres@127.0.0.1/test"),
    )
    parser.add_argument("--schema-prefix", default="lf_dashboard_bench")
    parser.add_argument(
        "--stage-history",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a stage_changes row per lead (its entry into its stage), as a real store has",
    )
    args = parser.parse_args()
    began = time.perf_counter()

    def log(line: str) -> None:
        note(began, line)

    print(
        f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{args.leads:,} leads, {args.audit:,} audit rows", flush=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as temporary:
        folder = Path(temporary)
        stores: dict[str, Engine] = {}
        urls: dict[str, str] = {}
        postgres: tuple[Engine, Engine, str, str] | None = None
        try:
            if not args.skip_sqlite:
                urls["sqlite"] = f"sqlite:///{folder / 'bench.db'}"
                stores["sqlite"] = create_store_engine(urls["sqlite"])
            if not args.skip_postgres:
                postgres = postgres_store(args.postgres, args.schema_prefix)
                name = f"postgresql {postgres[3]}"
                stores[name] = postgres[1]
                urls[name] = postgres[1].url.render_as_string(hide_password=False)
            for engine in stores.values():  # alembic's context is process-wide: one at a time
                migrate(engine)
            fill_both(stores, args, log)
            filled = time.perf_counter() - began
            log(
                f"both stores migrated and filled in {filled:.0f} s; load average "
                f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
            )
            for name, engine in stores.items():
                app, snapshots = application(engine, urls[name], folder)
                report(name, asyncio.run(measure(app, snapshots, args.rounds)))
        finally:
            for engine in stores.values():
                engine.dispose()
            if postgres is not None:
                admin, _, schema_name, _ = postgres
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))
                admin.dispose()
    print(
        f"\nwhole run {time.perf_counter() - began:.0f} s; load average after: "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
