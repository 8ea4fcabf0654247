"""Where a whole-store rescoring pass spends its time: each statement's wall time, CPU time and
rows, summed by statement, for the first pass, a full pass that changes little and a fit-only
model change (every score moves), then the floor of ``scoring_bench.py`` (the model change's
rows written by plain SQL), on a store that bench generates (its data, its models).

The CPU is this process's on SQLite and, on PostgreSQL, the connection's server process's, read
from ``/proc`` (the server must run on this machine): unlike the wall time, it hardly moves with
the other processes' load. On PostgreSQL also the leads updated and how many of them HOT, the
dead rows, the WAL written (with its full-page images) and the checkpoints, server-wide, and
the calls of the mark triggers' functions (``track_functions``); ``--explain`` prints the plan
of every statement over half a second (``auto_explain``, with buffers and WAL).

    cd bench && ../.venv/bin/python scoring_profile.py [--leads 200000] [--store sqlite|postgresql] [--explain]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from scoring_bench import (
    NOW,
    fill_postgres,
    fill_sqlite,
    keep_floor_values,
    load_rules,
    write_floor,
)
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from leadflow.logs import configure_logging
from leadflow.scoring.rescoring import rescore
from leadflow.store.database import create_store_engine, migrate


def process_cpu(conn: Any) -> float:
    """CPU seconds of this process, or on PostgreSQL of the connection's server process (on
    this machine: ``/proc``)."""
    if conn.dialect.name != "postgresql":
        return time.process_time()
    pid = conn.connection.dbapi_connection.info.backend_pid
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Profile:
    """Wall time, calls and rows of each statement the engine runs, keyed by its start."""

    def __init__(self, engine: Engine) -> None:
        self.rows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0, 0.0])
        self.started: dict[int, tuple[float, float]] = {}
        event.listen(engine, "before_cursor_execute", self.before)
        event.listen(engine, "after_cursor_execute", self.after)

    def before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.started[id(cursor)] = (time.perf_counter(), process_cpu(conn))

    def after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        wall, cpu = self.started.pop(id(cursor))
        elapsed = time.perf_counter() - wall
        key = re.sub(r"\s+", " ", statement)[:90]
        row = self.rows[key]
        row[0] += elapsed
        row[1] += 1
        row[2] += max(cursor.rowcount, 0)
        row[3] += process_cpu(conn) - cpu

    def report(self, title: str, wall: float) -> None:
        print(f"\n== {title}: {wall:.2f} s", file=sys.stderr)
        ranked = sorted(self.rows.items(), key=lambda i: -i[1][0])[:8]
        for key, (seconds, calls, rows, cpu) in ranked:
            print(
                f"  {seconds:7.2f} s (CPU {cpu:6.2f} s) {calls:4d}x {rows:9,d} rows  {key}",
                file=sys.stderr,
            )
        self.rows.clear()


def explain_slow(dbapi_connection: Any, _record: Any) -> None:
    """auto_explain (ANALYZE, BUFFERS, WAL, nested statements) of every statement over half a
    second, sent to this client as a notice and printed."""
    dbapi_connection.add_notice_handler(
        lambda notice: print(notice.message_primary, file=sys.stderr)
    )
    with dbapi_connection.cursor() as cursor:
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = '500ms'",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_buffers = on",
            "SET auto_explain.log_wal = on",
            "SET auto_explain.log_nested_statements = on",
            "SET auto_explain.log_level = notice",
        ):
            cursor.execute(setting)
    dbapi_connection.commit()


def postgres_counters(engine: Engine) -> dict[str, float]:
    with engine.connect() as connection:
        counters = dict(
            connection.execute(
                text(
                    "SELECT 'wal_mb', wal_bytes / 1e6 FROM pg_stat_wal UNION ALL "
                    "SELECT 'wal_fpi', wal_fpi FROM pg_stat_wal UNION ALL "
                    "SELECT 'checkpoints', checkpoints_req + checkpoints_timed FROM pg_stat_bgwriter"
                    " UNION ALL SELECT relname || '_upd', n_tup_upd FROM pg_stat_user_tables"
                    " WHERE schemaname = current_schema() AND relname IN ('leads', 'score_changes')"
                    " UNION ALL SELECT relname || '_hot', n_tup_hot_upd FROM pg_stat_user_tables"
                    " WHERE schemaname = current_schema() AND relname = 'leads'"
                    " UNION ALL SELECT relname || '_dead', n_dead_tup FROM pg_stat_user_tables"
                    " WHERE schemaname = current_schema() AND relname = 'leads'"
                    " UNION ALL SELECT funcname || '_calls', calls FROM pg_stat_user_functions"
                    " WHERE schemaname = current_schema()"
                )
            ).all()
        )
    return {name: float(value) for name, value in counters.items()}


def run(engine: Engine, postgres: bool, leads: int) -> None:
    rule_set = load_rules(Path(tempfile.mkdtemp()))
    model = rule_set.active_scoring
    clock_model = load_rules(Path(tempfile.mkdtemp()), clock=True).active_scoring
    assert model is not None
    assert clock_model is not None
    profile = Profile(engine)
    passes = [
        ("first pass", model, NOW, False),
        ("full pass, nothing changed", model, NOW + timedelta(hours=1), True),
        ("fit-only model change", clock_model, NOW + timedelta(hours=2), False),
    ]
    for title, scoring, now, full in passes:
        before = postgres_counters(engine) if postgres else {}
        if scoring is clock_model:
            keep_floor_values(engine)
        profile.rows.clear()
        started, cpu = time.perf_counter(), time.process_time()
        outcome = rescore(engine, scoring, now, full=full)
        wall = time.perf_counter() - started
        profile.report(
            f"{title}, {outcome.changed:,} changed (CPU here {time.process_time() - cpu:.2f} s)",
            wall,
        )
        if postgres:
            time.sleep(0.6)  # the statistics collector's delay
            after = postgres_counters(engine)
            print(
                "  "
                + ", ".join(
                    f"{name} {after[name] - before.get(name, 0):,.0f}"
                    for name in sorted(after)
                    if after[name] != before.get(name, 0)
                ),
                file=sys.stderr,
            )
    started, cpu = time.perf_counter(), time.process_time()
    written = write_floor(engine, NOW + timedelta(hours=2))
    wall = time.perf_counter() - started
    profile.report(f"floor, {written:,} written (CPU here {time.process_time() - cpu:.2f} s)", wall)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--explain", action="store_true", help="auto_explain every statement over 0.5 s"
    )
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    configure_logging("warning")
    if args.store == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            engine = create_store_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
            migrate(engine)
            fill_sqlite(engine, args.leads)
            run(engine, False, args.leads)
            engine.dispose()
        return
    schema = f"lf_profile_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.postgres)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(args.postgres).update_query_dict(
            {"options": f"-csearch_path={schema} -ctrack_functions=all"}
        )
        engine = create_store_engine(url.render_as_string(hide_password=False))
        migrate(engine)
        fill_postgres(engine, args.leads)
        if args.explain:
            event.listen(engine, "connect", explain_slow)
            engine.dispose()
        run(engine, True, args.leads)
        engine.dispose()
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
