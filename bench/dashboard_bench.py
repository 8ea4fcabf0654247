"""Server time of each dashboard page on a large store, on SQLite and PostgreSQL.

The store: ``--leads`` leads (bench/evaluation_bench.py's generator; one in ten with a running
SLA timer), ``--audit`` audit rows spread over the leads (set-based, as
bench/retention_bench.py makes them; indexes built once afterwards), 100,000 outbox rows (sent,
failed, pending) and one score change per ten leads; then ANALYZE. Each page is requested
through the daemon's ASGI application in-process (httpx's ASGI transport: no network, so the
time is the server's: routing, the session check, the queries, the template), signed in as an
operator, ``--rounds`` times; the median and the slowest are reported. Then the Funnel page's
chart images, twice each: the first request draws the chart, the second is served kept.

    .venv/bin/python bench/dashboard_bench.py [--leads 1000000] [--audit 10000000] [--rounds 5]
        [--skip-postgres] [--skip-sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher
from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).parent))
from evaluation_bench import NOW, fill_postgres, fill_sqlite
from retention_bench import analyze, postgres_engine

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.engine.runtime import Runtime
from leadflow.http import create_app
from leadflow.rule_language.model import RuleSet
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.store.database import create_store_engine, migrate
from leadflow.store.tables import AUDIT, OUTBOX, SCORE_CHANGES, SLA_TIMERS

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
STAMP = "'%Y-%m-%d %H:%M:%S.000000'"
START = int(NOW.timestamp()) - 700 * 86400


def sqlite_fill(engine: Engine, leads: int, audit: int) -> None:
    fill_sqlite(engine, leads)
    with _without_indexes(engine), engine.begin() as connection:
        gen = "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?) "
        connection.exec_driver_sql(
            gen + "INSERT INTO audit_log (at, source, rule_id, rule_version, lead_id, action, "
            f"params, evidence) SELECT strftime({STAMP}, ? + n * 5, 'unixepoch'), 'rule', "
            "'r08-score-42', 'v1', n % ? + 1, 'adjust_score', '{\"by\": 1}', "
            "'{\"score\": 42}' FROM g",
            (audit, START, leads),
        )
        connection.exec_driver_sql(
            gen + "INSERT INTO sla_timers (lead_id, name, rule_id, rule_version, owner_id, "
            "started_at, due_at, calendar, ladder, met_by, level, next_escalation_at, status) "
            f"SELECT n * 10, 'first_touch', 'r', 'v1', 1, strftime({STAMP}, ? - n, 'unixepoch'), "
            f"strftime({STAMP}, ? + n, 'unixepoch'), 'default', '[]', '{{}}', n % 3, "
            f"strftime({STAMP}, ? + n, 'unixepoch'), CASE WHEN n % 5 = 0 THEN 'breached' "
            "ELSE 'running' END FROM g",
            (leads // 10, int(NOW.timestamp()), int(NOW.timestamp()), int(NOW.timestamp())),
        )
        connection.exec_driver_sql(
            gen + "INSERT INTO outbox (idempotency_key, message_id, channel, category, lead_id, "
            "recipient, subject, body_text, headers, status, attempts, next_attempt_at, "
            "created_at, last_error) SELECT 'k' || n, '<m' || n || '@b>', 'email', 'marketing', "
            "n * 7 % ? + 1, 'lead' || n || '@example.com', 'Hello', 'Hi', '{}', "
            "CASE n % 10 WHEN 0 THEN 'failed' WHEN 1 THEN 'pending' ELSE 'sent' END, 1, "
            f"strftime({STAMP}, ? - n, 'unixepoch'), strftime({STAMP}, ? - n, 'unixepoch'), "
            "'550 no such user' FROM g",
            (100_000, leads, int(NOW.timestamp()), int(NOW.timestamp())),
        )
        connection.exec_driver_sql(
            gen + "INSERT INTO score_changes (lead_id, at, old_score, new_score, cause) "
            f"SELECT n * 10 - 3, strftime({STAMP}, ? - n, 'unixepoch'), 1, 2, 'activity' FROM g",
            (leads // 10, int(NOW.timestamp())),
        )
    analyze(engine)


def postgres_fill(engine: Engine, leads: int, audit: int) -> None:
    fill_postgres(engine, leads)
    with _without_indexes(engine), engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        params: dict[str, Any] = {"audit": audit, "leads": leads, "now": NOW}
        connection.exec_driver_sql(
            "INSERT INTO audit_log (at, source, rule_id, rule_version, lead_id, action, params, "
            "evidence) SELECT %(now)s - interval '700 days' + n * interval '5 seconds', 'rule', "
            "'r08-score-42', 'v1', mod(n, %(leads)s) + 1, 'adjust_score', '{\"by\": 1}', "
            "'{\"score\": 42}' FROM generate_series(1, %(audit)s) AS n",
            params,
        )
        connection.exec_driver_sql(
            "INSERT INTO sla_timers (lead_id, name, rule_id, rule_version, owner_id, started_at, "
            "due_at, calendar, ladder, met_by, level, next_escalation_at, status) SELECT n * 10, "
            "'first_touch', 'r', 'v1', 1, %(now)s - n * interval '1 second', %(now)s + n * "
            "interval '1 second', 'default', '[]', '{}', mod(n, 3), %(now)s + n * interval "
            "'1 second', CASE WHEN mod(n, 5) = 0 THEN 'breached' ELSE 'running' END "
            "FROM generate_series(1, %(leads)s / 10) AS n",
            params,
        )
        connection.exec_driver_sql(
            "INSERT INTO outbox (idempotency_key, message_id, channel, category, lead_id, "
            "recipient, subject, body_text, headers, status, attempts, next_attempt_at, "
            "created_at, last_error) SELECT 'k' || n, '<m' || n || '@b>', 'email', 'marketing', "
            "mod(n * 7, %(leads)s) + 1, 'lead' || n || '@example.com', 'Hello', 'Hi', '{}', "
            "CASE mod(n, 10) WHEN 0 THEN 'failed' WHEN 1 THEN 'pending' ELSE 'sent' END, 1, "
            "%(now)s - n * interval '1 second', %(now)s - n * interval '1 second', "
            "'550 no such user' FROM generate_series(1, 100000) AS n",
            params,
        )
        connection.exec_driver_sql(
            "INSERT INTO score_changes (lead_id, at, old_score, new_score, cause) SELECT "
            "n * 10 - 3, %(now)s - n * interval '1 second', 1, 2, 'activity' "
            "FROM generate_series(1, %(leads)s / 10) AS n",
            params,
        )
    analyze(engine)


class _without_indexes:  # noqa: N801 (a context manager)
    """Bulk rows first, then each secondary index built once (one sort, not 10M inserts)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.indexes = [
            *AUDIT.indexes,
            *SLA_TIMERS.indexes,
            *OUTBOX.indexes,
            *SCORE_CHANGES.indexes,
        ]

    def __enter__(self) -> None:
        with self.engine.begin() as connection:
            for index in self.indexes:
                index.drop(connection)

    def __exit__(self, *exc: object) -> None:
        with self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
                connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
            for index in self.indexes:
                index.create(connection)


def application(engine: Engine, url: str, folder: Path) -> Any:
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
    return create_app(runtime, holder)


async def measure(app: Any, rounds: int) -> dict[str, list[float]]:
    transport = httpx.ASGITransport(app=app)
    times: dict[str, list[float]] = {page: [] for page in PAGES}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        login = await http.post("/ui/login", data={"username": "ops", "password": PASSWORD})
        assert login.status_code == 303, login.text
        for _ in range(rounds):
            for page in PAGES:
                started = time.perf_counter()
                response = await http.get(page)
                times[page].append(time.perf_counter() - started)
                assert response.status_code == 200, (page, response.status_code)
        times.update(await _charts(http))
    return times


async def _charts(http: httpx.AsyncClient) -> dict[str, list[float]]:
    """The Funnel page's chart images: the first request draws, the next ones are kept."""
    page = (await http.get("/ui/funnel")).text
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
    print(f"\n{store}: page server time, median (slowest) of {len(times[PAGES[0]])} rounds")
    print("  (a chart image: one request each, the first drawing it, the second kept)")
    for page, samples in times.items():
        print(
            f"  {page:<36} {statistics.median(samples) * 1000:7.1f} ms ({max(samples) * 1000:.1f})"
        )


def run(store: str, engine: Engine, url: str, args: argparse.Namespace, folder: Path) -> None:
    started = time.perf_counter()
    migrate(engine)
    (sqlite_fill if store == "sqlite" else postgres_fill)(engine, args.leads, args.audit)
    print(f"{store}: filled in {time.perf_counter() - started:.0f} s", flush=True)
    app = application(engine, url, folder)
    report(store, asyncio.run(measure(app, args.rounds)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--audit", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    with open("/proc/loadavg", encoding="ascii") as load:
        print(f"load average before: {load.read().strip()}; {os.cpu_count()} CPUs")
    print(f"{args.leads:,} leads, {args.audit:,} audit rows")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        if not args.skip_sqlite:
            url = f"sqlite:///{folder / 'bench.db'}"
            engine = create_store_engine(url)
            run("sqlite", engine, url, args, folder)
            engine.dispose()
        if not args.skip_postgres:
            base = os.environ.get("LEADFLOW_TEST_PG_URL", "postgresql://postgres@127.0.0.1/test")
            admin, engine, schema, version = postgres_engine(base)
            try:
                url = engine.url.render_as_string(hide_password=False)
                run(f"postgresql {version}", engine, url, args, folder)
            finally:
                engine.dispose()
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    with open("/proc/loadavg", encoding="ascii") as load:
        print(f"\nload average after: {load.read().strip()}")


if __name__ == "__main__":
    main()
