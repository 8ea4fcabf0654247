"""Claiming new mail and an evaluation pass stay flat with 10,000,000 sent and audit rows.

On SQLite and PostgreSQL, two stores with the same ``--leads`` leads, measured in the same run,
round by round in turn (the order swapped every round, so both see the same machine load):

- baseline: an empty history (no settled outbox rows, no audit rows);
- loaded: ``--rows`` sent outbox rows and ``--rows`` audit rows (set-based: a recursive CTE on
  SQLite, ``generate_series`` on PostgreSQL, loaded as a bulk load is), all older
  than ``mail.keep_sent`` and ``audit.keep``, then ANALYZE (VACUUM ANALYZE on PostgreSQL, as
  autovacuum would), as before the baseline.

Each figure is the median of ``--rounds`` rounds, with the spread (min-max):

- claim: ``claim_due`` of 100 new pending mails (queued before the round, settled after it);
- evaluation: one dry-run pass of 10 rules (``run_due_rules`` as bench/evaluation_bench.py);
- audit append: 1,000 audit rows written in one transaction (what a firing batch does).

Then one prune run (``leadflow prune``'s work, batches of 10,000, the audit archived) deletes
the history for ``--prune-seconds`` (10 s) per table and its rate is reported (0: to the end).

Time: the defaults are meant to fit in 5 minutes on 2 idle cores. The two databases' stores are
prepared at the same time (SQLite in this process, PostgreSQL in its server), each history as a
bulk load: one set-based INSERT ... SELECT per table without the secondary indexes, and on
PostgreSQL the foreign keys and unique constraints, put back afterwards in one pass each.

    .venv/bin/python bench/retention_bench.py [--rows 10000000] [--leads 100000] [--rounds 5]
        [--prune-seconds 10] [--skip-postgres] [--skip-sqlite]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, insert, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.schema import CreateIndex

sys.path.insert(0, str(Path(__file__).parent))
from evaluation_bench import NOW, RULES, fill_postgres, fill_sqlite
from machine import cpu_model
from scratch import bulk_load_connection

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.engine.retention import prune
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.logs import configure_logging
from leadflow.outbox.store import claim_due
from leadflow.rule_language.model import RuleSet
from leadflow.settings import Settings
from leadflow.store.audit_trail import audit_row
from leadflow.store.database import (
    create_store_engine,
    ensure_attribute_indexes,
    migrate,
    transaction,
)
from leadflow.store.models import metadata
from leadflow.store.tables import AUDIT, LEADS, OUTBOX

OUTBOX_START = NOW - timedelta(days=400)  # 10M rows 2 s apart: 231 days, all before -90d
AUDIT_START = NOW - timedelta(days=700)  # ... all before -365d
STEP_SECONDS = 2

_OUTBOX_COLUMNS = (
    "idempotency_key, message_id, channel, category, lead_id, rule_id, rule_version, "
    "recipient, subject, body_text, headers, status, attempts, next_attempt_at, created_at, "
    "sent_at"
)
_AUDIT_COLUMNS = "at, source, rule_id, rule_version, lead_id, action, params, evidence"


def sqlite_history(engine: Engine, rows: int, leads: int) -> None:
    """The history in one set-based statement per table (a recursive CTE), written as a bulk
    load is: through a connection of its own with no rollback journal (a WAL would write the
    4 GB twice, once more at its checkpoint), no per-row foreign-key lookup (the lead ids are
    1..``leads`` by construction, checked after) and the secondary indexes built afterwards.
    The store is back in WAL mode with every index and foreign key before anything is measured.
    """
    start_out = int(OUTBOX_START.timestamp())
    start_audit = int(AUDIT_START.timestamp())
    stamp = "'%Y-%m-%d %H:%M:%S.000000'"
    engine.dispose()  # leaving journal_mode=WAL needs the only connection to the file
    path = engine.url.database
    assert path is not None
    connection = bulk_load_connection(path)
    try:
        (present,) = connection.execute(
            "SELECT count(*) FROM leads WHERE id BETWEEN 1 AND ?", (leads,)
        ).fetchone()
        assert present == leads, f"the history refers to leads 1..{leads}; {present} exist"
        indexes = [*OUTBOX.indexes, *AUDIT.indexes]
        connection.execute("BEGIN")
        for index in indexes:
            connection.execute(f"DROP INDEX {index.name}")
        connection.execute(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?) "
            f"INSERT INTO outbox ({_OUTBOX_COLUMNS}) SELECT "
            "printf('bench-old-%010d', n), printf('<bench-old-%010d@bench>', n), 'email', "
            "'marketing', n % ? + 1, 'r08-score-42', 'v1', 'lead' || n || '@example.com', "
            "'Your case study', 'Hello, here is the case study you asked for.', '{}', 'sent', 1, "
            f"strftime({stamp}, ? + n * {STEP_SECONDS}, 'unixepoch'), "
            f"strftime({stamp}, ? + n * {STEP_SECONDS}, 'unixepoch'), "
            f"strftime({stamp}, ? + n * {STEP_SECONDS} + 60, 'unixepoch') FROM g",
            (rows, leads, start_out, start_out, start_out),
        )
        connection.execute(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?) "
            f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) SELECT "
            f"strftime({stamp}, ? + n * {STEP_SECONDS}, 'unixepoch'), 'rule', 'r08-score-42', "
            "'v1', n % ? + 1, 'adjust_score', '{\"by\": 1}', "
            '\'{"score": 42, "stage": "lead"}\' FROM g',
            (rows, start_audit, leads),
        )
        for index in indexes:  # the schema's own DDL, each index built in one sort
            connection.execute(str(CreateIndex(index).compile(dialect=engine.dialect)))
        connection.execute("COMMIT")
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


def postgres_history(engine: Engine, rows: int, leads: int) -> None:
    """The history in one set-based statement per table (``generate_series``), loaded as a
    bulk load is: without the secondary indexes and the foreign keys and unique constraints
    of the two tables, each put back afterwards in one pass (a per-row foreign-key trigger
    made the insert several times slower); the store measured has all of them."""
    with engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
        constraints = connection.exec_driver_sql(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE contype IN ('f', 'u') "
            "AND conrelid IN ('outbox'::regclass, 'audit_log'::regclass) ORDER BY contype, conname"
        ).all()
        for table, name, _ in constraints:
            connection.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        indexes = [*OUTBOX.indexes, *AUDIT.indexes]
        for index in indexes:
            index.drop(connection)
        connection.exec_driver_sql(
            f"INSERT INTO outbox ({_OUTBOX_COLUMNS}) SELECT "
            "'bench-old-' || lpad(n::text, 10, '0'), '<bench-old-' || lpad(n::text, 10, '0') "
            "|| '@bench>', 'email', 'marketing', mod(n, %(leads)s) + 1, 'r08-score-42', 'v1', "
            "'lead' || n || '@example.com', 'Your case study', "
            "'Hello, here is the case study you asked for.', '{}', 'sent', 1, "
            f"%(start)s + n * interval '{STEP_SECONDS} seconds', "
            f"%(start)s + n * interval '{STEP_SECONDS} seconds', "
            f"%(start)s + n * interval '{STEP_SECONDS} seconds' + interval '1 minute' "
            "FROM generate_series(1, %(rows)s) AS n",
            {"rows": rows, "leads": leads, "start": OUTBOX_START},
        )
        connection.exec_driver_sql(
            f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) SELECT "
            f"%(start)s + n * interval '{STEP_SECONDS} seconds', 'rule', 'r08-score-42', 'v1', "
            "mod(n, %(leads)s) + 1, 'adjust_score', '{\"by\": 1}', "
            '\'{"score": 42, "stage": "lead"}\' FROM generate_series(1, %(rows)s) AS n',
            {"rows": rows, "leads": leads, "start": AUDIT_START},
        )
        for index in indexes:
            index.create(connection)
        # Unique constraints first (their indexes), then the foreign keys, each checked in one
        # join over the table rather than a trigger per row.
        for table, name, definition in sorted(constraints, key=lambda c: "FOREIGN" in c[2]):
            connection.exec_driver_sql(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')


def analyze(engine: Engine) -> None:
    """Statistics and, on PostgreSQL, the visibility map, as autovacuum leaves them on a
    running store: without it the first phase ran before autovacuum had visited the new leads
    and the second after, and the baseline looked slower than the loaded store."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("SET statement_timeout = 0")
            for table in metadata.sorted_tables:  # this schema's tables only
                connection.exec_driver_sql(f'VACUUM ANALYZE "{table.name}"')
        return
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
    # Into the database file, as the next checkpoint of a running store would: pages read
    # through a long WAL (the baseline's leads, never checkpointed) cost more per page read.
    raw = engine.raw_connection()  # outside a transaction (sqlite3 in autocommit here)
    try:
        busy, _, _ = raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "checkpoint blocked"
    finally:
        raw.close()


class Workload:
    """The three measured operations on one store."""

    def __init__(self, engine: Engine, folder: Path, leads: int) -> None:
        self.engine = engine
        self.leads = leads
        self.round = 0
        (folder / "rules").mkdir(exist_ok=True)
        (folder / "rules" / "bench.yaml").write_text(RULES, encoding="utf-8")
        (folder / "templates").mkdir(exist_ok=True)
        self.settings: Settings = load_settings(
            None,
            env={},
            overrides={
                "paths.rules": str(folder / "rules"),
                "paths.templates": str(folder / "templates"),
                # What bench/evaluation_bench.py's RULES read, declared and indexed as there.
                "attributes.leads": {
                    "region": "string",
                    "industry": "string",
                    "country": "string",
                    "employees": "integer",
                },
                "attributes.indexed": ["industry", "country"],
                "scheduler.evaluation_batch": 5000,
                "audit.archive": str(folder / "archive"),
            },
        ).settings
        attributes = self.settings.attributes
        ensure_attribute_indexes(engine, LEADS, attributes.leads, attributes.indexed)
        self.runtime = Runtime.build(engine, self.settings, SettableClock(NOW))
        self.rule_set: RuleSet = self.runtime.load_rules()

    def claim(self) -> float:
        self.round += 1
        tag = f"{self.round}-{uuid.uuid4().hex[:8]}"
        with transaction(self.engine) as session:
            session.execute(
                insert(OUTBOX),
                [
                    {
                        "idempotency_key": f"new-{tag}-{n}",
                        "message_id": f"<new-{tag}-{n}@bench>",
                        "channel": "email",
                        "category": "marketing",
                        "lead_id": n + 1,
                        "recipient": f"lead{n}@example.com",
                        "subject": "Your case study",
                        "body_text": "Hello",
                        "headers": {},
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": NOW - timedelta(seconds=n),
                        "created_at": NOW - timedelta(seconds=n),
                    }
                    for n in range(100)
                ],
            )
        started = time.perf_counter()
        claimed = claim_due(self.engine, NOW, timedelta(minutes=5), "bench", 100)
        seconds = time.perf_counter() - started
        assert len(claimed) == 100, len(claimed)
        with transaction(self.engine) as session:  # settled: the next round claims new ones
            session.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id.in_([m.id for m in claimed]))
                .values(status="sent", sent_at=NOW, claimed_until=None)
            )
        return seconds

    def evaluate(self) -> float:
        started = time.perf_counter()
        run_due_rules(self.runtime, self.rule_set, NOW, dry_run=True, force=True)
        return time.perf_counter() - started

    def append_audit(self) -> float:
        rows = [
            audit_row(
                at=NOW,
                source="rule",
                action="adjust_score",
                lead_id=n % self.leads + 1,
                rule_id="r08-score-42",
                rule_version="v1",
                params={"by": 1},
                evidence={"score": 42},
            )
            for n in range(1000)
        ]
        started = time.perf_counter()
        with transaction(self.engine) as session:
            session.execute(insert(AUDIT), rows)
        return time.perf_counter() - started

    def warm(self) -> None:
        self.evaluate()  # warm caches as a running daemon has
        self.claim()


OPERATIONS = ("claim", "evaluation", "audit append")


def measure_alternately(
    works: dict[str, Workload], rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Each operation on each store in turn, the order swapped every round: both stores see
    the same machine load, which on a shared machine moves more than the history does."""
    for work in works.values():
        work.warm()
    samples = {name: {op: [] for op in OPERATIONS} for name in works}
    names = list(works)
    for number in range(rounds):
        order = names if number % 2 == 0 else names[::-1]
        for name in order:
            samples[name]["claim"].append(works[name].claim())
        for name in order:
            samples[name]["evaluation"].append(works[name].evaluate())
        for name in order:
            samples[name]["audit append"].append(works[name].append_audit())
    return samples


def timed_prune(work: Workload, seconds: float | None) -> dict[str, tuple[int, float, bool]]:
    """One prune run per table (the other table's retention switched off), each stopped after
    ``seconds`` if it has not finished: rows deleted, seconds, stopped."""
    keep_all_mail = work.settings.mail.model_copy(update={"keep_sent": timedelta(days=36500)})
    only = {
        "outbox": work.settings.model_copy(
            update={"audit": work.settings.audit.model_copy(update={"keep": "forever"})}
        ),
        "audit (archived)": work.settings.model_copy(update={"mail": keep_all_mail}),
    }
    results = {}
    for table, settings in only.items():
        stop = threading.Event()
        timer = threading.Timer(seconds, stop.set) if seconds else None
        if timer is not None:
            timer.start()
        # The history is old; the rows the rounds added (at NOW) are not.
        report = prune(work.engine, settings, NOW, stop=stop)
        if timer is not None:
            timer.cancel()
        deleted = report.outbox_deleted + report.audit_deleted
        results[table] = (deleted, report.seconds, report.stopped)
    return results


def sqlite_copy(source: Engine, target: Engine) -> None:
    """``target`` as a copy of ``source``'s file: the same leads without generating them twice."""
    source.dispose()
    target.dispose()
    assert source.url.database is not None
    assert target.url.database is not None
    for suffix in ("-wal", "-shm"):
        Path(target.url.database + suffix).unlink(missing_ok=True)
    raw = sqlite3.connect(source.url.database)
    try:
        busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "checkpoint blocked"
    finally:
        raw.close()
    shutil.copyfile(source.url.database, target.url.database)


def postgres_copy(source: Engine, target: Engine) -> None:
    """``target``'s reps and leads copied from ``source``'s schema inside the server."""
    schema = source.url.query["options"]
    assert isinstance(schema, str)
    assert schema.startswith("-csearch_path=")
    schema = schema.removeprefix("-csearch_path=")
    with target.begin() as connection:
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        for table in ("reps", "leads"):
            connection.exec_driver_sql(f'INSERT INTO {table} SELECT * FROM "{schema}".{table}')
        connection.exec_driver_sql("ANALYZE leads")


@dataclass
class Store:
    """One database with its two stores: ``baseline`` (empty history) and ``loaded``."""

    name: str
    engines: dict[str, Engine]
    fill: Callable[[Engine, int], None]
    copy: Callable[[Engine, Engine], None]
    history: Callable[[Engine, int, int], None]
    generated: float = 0.0


def prepare(store: Store, args: argparse.Namespace) -> None:
    """The same leads in both (migrated) stores, generated once and copied, then the history
    in ``loaded``."""
    started = time.perf_counter()
    store.fill(store.engines["baseline"], args.leads)
    store.copy(store.engines["baseline"], store.engines["loaded"])
    note(f"{store.name}: {args.leads:,} leads, twice, in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    store.history(store.engines["loaded"], args.rows, args.leads)
    store.generated = time.perf_counter() - started
    note(f"{store.name}: {args.rows:,} sent + {args.rows:,} audit rows in {store.generated:.1f} s")


def prepare_all(stores: list[Store], args: argparse.Namespace) -> None:
    """Each database's stores prepared at the same time, in a thread each: SQLite's work runs
    in this process (the sqlite3 module lets go of the GIL while a statement runs), PostgreSQL's
    in its server, so on two cores preparing both takes about as long as the slower one.
    Nothing is measured until both are done."""
    for store in stores:  # alembic's op and context are process-wide: one migration at a time
        for engine in store.engines.values():
            migrate(engine)
    failures: list[BaseException] = []

    def run(store: Store) -> None:
        try:
            prepare(store, args)
        except BaseException as exc:  # re-raised below, in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def measure_store(store: Store, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Both stores measured alternately, then ``loaded`` pruned."""
    works = {}
    started = time.perf_counter()
    for role, engine in store.engines.items():
        (folder / role).mkdir()
        works[role] = Workload(engine, folder / role, args.leads)  # with the attribute indexes
        analyze(engine)
    note(f"{store.name}: indexes and statistics in {time.perf_counter() - started:.1f} s")
    samples = measure_alternately(works, args.rounds)
    note(f"{store.name}: baseline {summary(samples['baseline'])}")
    note(f"{store.name}: loaded {summary(samples['loaded'])}")
    pruned = timed_prune(works["loaded"], args.prune_seconds)
    note(f"{store.name}: prune {pruned}")
    return {
        "name": store.name,
        "baseline": samples["baseline"],
        "loaded": samples["loaded"],
        "generated": store.generated,
        "prune": pruned,
    }


def summary(samples: dict[str, list[float]]) -> str:
    return ", ".join(f"{k} {statistics.median(v) * 1000:.1f} ms" for k, v in samples.items())


def note(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def ms(values: list[float]) -> str:
    return (
        f"{statistics.median(values) * 1000:.1f} ms "
        f"({min(values) * 1000:.1f}-{max(values) * 1000:.1f})"
    )


def machine(postgres_version: str | None) -> str:
    cpu = cpu_model()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    parts = [
        f"{cpu}, {os.cpu_count()} cores",
        f"Python {platform.python_version()}",
        f"SQLite {sqlite3.sqlite_version}",
    ]
    if postgres_version:
        parts.append(f"PostgreSQL {postgres_version}")
    return "; ".join(parts) + f"; load average at the end {load}"


def postgres_engine(base: str) -> tuple[Engine, Engine, str, str]:
    admin = create_engine(base)
    schema = f"lf_retention_bench_{uuid.uuid4().hex[:8]}"
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        version = connection.execute(text("SHOW server_version")).scalar_one()
    url = (
        make_url(base)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    return admin, create_store_engine(url, statement_timeout=3600), schema, str(version)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--prune-seconds",
        type=float,
        default=10.0,
        help="stop each table's prune run after this long and report its rate (0: to the end)",
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    configure_logging("warning")
    began = time.perf_counter()
    results = []
    pg_version = None
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        stores: list[Store] = []
        made: dict[str, tuple[Engine, Engine, str, str]] = {}
        if not args.skip_sqlite:
            engines = {
                role: create_store_engine(f"sqlite:///{folder / f'{role}.db'}")
                for role in ("baseline", "loaded")
            }
            stores.append(Store("SQLite", engines, fill_sqlite, sqlite_copy, sqlite_history))
        if not args.skip_postgres:
            made = {role: postgres_engine(args.postgres) for role in ("baseline", "loaded")}
            pg_version = made["loaded"][3]
            engines = {role: found[1] for role, found in made.items()}
            stores.append(
                Store("PostgreSQL", engines, fill_postgres, postgres_copy, postgres_history)
            )
        try:
            prepare_all(stores, args)
            for store in stores:
                (folder / store.name).mkdir()
                results.append(measure_store(store, folder / store.name, args))
        finally:
            for store in stores:
                for engine in store.engines.values():
                    engine.dispose()
            for admin, _, schema, _ in made.values():
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    total = time.perf_counter() - began
    print(f"\nMachine: {machine(pg_version)}")
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    print(f"uptime: {uptime.strip()}")
    print(
        f"{args.leads:,} leads; history: {args.rows:,} sent outbox rows and {args.rows:,} audit "
        f"rows; medians of {args.rounds} rounds (min-max); whole run {total:.0f} s\n"
    )
    print("| store | operation | empty history (baseline, same run) | with the history | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for result in results:
        for key in result["baseline"]:
            base, loaded = result["baseline"][key], result["loaded"][key]
            ratio = statistics.median(loaded) / statistics.median(base)
            print(f"| {result['name']} | {key} | {ms(base)} | {ms(loaded)} | {ratio:.2f}x |")
    print()
    for result in results:
        print(f"{result['name']}: history generated in {result['generated']:.0f} s")
        for table, (deleted, seconds, stopped) in result["prune"].items():
            rate = deleted / seconds if seconds else 0.0
            tail = f"stopped after {seconds:.0f} s" if stopped else f"finished in {seconds:.1f} s"
            whole = f", all {args.rows:,} in ~{args.rows / rate / 60:.0f} min" if stopped else ""
            print(
                f"  prune {table}: {deleted:,} rows deleted in batches of 10,000, {tail}: "
                f"{rate:,.0f} rows/s{whole}"
            )


if __name__ == "__main__":
    main()
