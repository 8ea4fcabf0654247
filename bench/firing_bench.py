"""Firing throughput: the shipped MQL rule and the shipped nurture enrolment, at 10k and 100k.

For each store, N leads are made to qualify at once and the rule runs the way
``leadflow run --once --rule ID`` runs it (``run_rule``: batches, one transaction each, audit,
outbox, SLA timers). Beside it, in the same run and on the same data, the floor: the same rows
(lead updates, stage history, audit rows, outbox rows with pre-rendered bodies, SLA timers,
enrollments) written by plain SQL statements with no rule machinery.

    .venv/bin/python bench/firing_bench.py                 # 10,000 firings, 3 rounds (~3 min)
    .venv/bin/python bench/firing_bench.py --only mql --firings 10000 100000 --rounds 1
                                  # linear from 10k to 100k? (one scenario: ~3-4 min)
    options: --skip-postgres, --postgres URL
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from machine import describe
from scratch import scratch_store
from sqlalchemy import Engine, create_engine, func, select, text

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.engine.evaluation import run_rule
from leadflow.engine.nurture import run_nurture_steps
from leadflow.engine.runtime import Runtime
from leadflow.logs import configure_logging
from leadflow.store.tables import AUDIT, LEADS, NURTURE, OUTBOX, SLA_TIMERS

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)  # a Monday inside business hours
REGIONS = ["Central", "East", "West", "North"]
REP_COUNT = 40


@dataclass(frozen=True)
class Scenario:
    name: str
    rule_id: str
    stage: str
    score: int
    floor: Callable[[Engine, int], None]
    step: bool = False
    """Time the nurture stream's first step (its email) after the enrolment, not the firing."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--firings", type=int, nargs="+", default=[10_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--only", choices=["mql", "enrolment", "email"])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    configure_logging("warning")
    scenarios = [
        Scenario("MQL assignment (rule)", "mql-assignment", "lead", 75, mql_floor),
        Scenario("nurture enrolment (rule)", "nurture-new-leads", "lead", 20, enrolment_floor),
        Scenario(
            "nurture first email (step)", "nurture-new-leads", "lead", 20, step_floor, step=True
        ),
    ]
    if args.only:
        scenarios = [s for s in scenarios if args.only in s.name.lower()]
    stores = ["SQLite"] if args.skip_postgres else ["SQLite", "PostgreSQL"]
    rows: list[str] = []
    for store in stores:
        for scenario in scenarios:
            for count in args.firings:
                leadflow_runs, floor_runs = [], []
                for _ in range(args.rounds):
                    with scratch_store(
                        None if store == "SQLite" else args.postgres, "lf_fire"
                    ) as engine:
                        seed(engine, count, scenario)
                        leadflow_runs.append(run_leadflow(engine, scenario, count))
                    with scratch_store(
                        None if store == "SQLite" else args.postgres, "lf_fire"
                    ) as engine:
                        seed(engine, count, scenario)
                        if scenario.step:
                            enrolment_floor(engine, count)
                        started = time.perf_counter()
                        scenario.floor(engine, count)
                        floor_runs.append(time.perf_counter() - started)
                    print(
                        f"{store} {scenario.name} {count:,}: leadflow {leadflow_runs[-1]:.2f} s,"
                        f" floor {floor_runs[-1]:.2f} s",
                        file=sys.stderr,
                    )
                rows.append(table_row(store, scenario.name, count, leadflow_runs, floor_runs))
    print()
    print(machine(None if args.skip_postgres else args.postgres))
    print(f"Load average at the end: {os.getloadavg()}")
    print()
    print(
        "| store | firing | firings | leadflow firings/s (rounds) | plain-SQL floor | leadflow / floor |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)


def table_row(store: str, name: str, count: int, runs: list[float], floors: list[float]) -> str:
    median, floor = statistics.median(runs), statistics.median(floors)
    spread = ", ".join(f"{count / run:,.0f}" for run in runs)
    return (
        f"| {store} | {name} | {count:,} | **{count / median:,.0f}/s** ({spread}) |"
        f" {count / floor:,.0f}/s | {median / floor:.1f}x |"
    )


def machine(postgres: str | None) -> str:
    server = ""
    if postgres is not None:
        admin = create_engine(postgres)
        with admin.connect() as connection:
            server = ", PostgreSQL " + str(
                connection.exec_driver_sql("SHOW server_version").scalar()
            )
        admin.dispose()
    return f"Machine: {describe()}{server}"


def seed(engine: Engine, count: int, scenario: Scenario) -> None:
    """Reps in four region pools (with managers) and ``count`` leads qualifying at once, plus
    as many leads again that do not qualify (the rule must find the right ones)."""
    postgres = engine.dialect.name == "postgresql"
    yes = "true" if postgres else "1"
    no = "false" if postgres else "0"
    with engine.begin() as connection:
        for index in range(1, REP_COUNT + 1):
            pool = REGIONS[index % len(REGIONS)].lower()
            connection.execute(
                text(
                    "INSERT INTO reps (id, external_id, name, email, manager_id, pools, capacity,"
                    f" active, timezone, created_at, updated_at) VALUES (:id, :ext, :name, :email,"
                    f" NULL, :pools, NULL, {yes}, 'Europe/Berlin', :now, :now)"
                ),
                {
                    "id": index,
                    "ext": f"rep-{index}",
                    "name": f"Rep {index}",
                    "email": f"rep{index}@example.com",
                    "pools": json.dumps([pool, "inbound"]),
                    "now": NOW,
                },
            )
        leads = [
            {
                "id": index,
                "ext": f"L{index:07d}",
                "email": f"lead{index}@example.com",
                "name": f"Lead {index}",
                "company": f"Company {index % 997}",
                "attributes": json.dumps(
                    {"region": REGIONS[index % len(REGIONS)], "industry": "software"}
                ),
                # every other lead qualifies
                "score": scenario.score if index % 2 else 10,
                "stage": scenario.stage if index % 2 else "customer",
                "entered": NOW - timedelta(days=2),
                "now": NOW,
            }
            for index in range(1, 2 * count + 1)
        ]
        connection.execute(
            text(
                "INSERT INTO leads (id, external_id, email, name, company, attributes, score,"
                " stage, stage_entered_at, unsubscribed, do_not_email, hard_bounced, timezone,"
                f" created_at, updated_at) VALUES (:id, :ext, :email, :name, :company,"
                f" :attributes, :score, :stage, :entered, {no}, {no}, {no}, 'Europe/Berlin',"
                " :now, :now)"
            ),
            leads,
        )
        # Only the tables seeded here: a bare ANALYZE on PostgreSQL reads every schema of the
        # shared database (other people's too) and ran into the statement timeout.
        for table in ("leads", "reps"):
            connection.execute(text(f"ANALYZE {table}"))


def run_leadflow(engine: Engine, scenario: Scenario, count: int) -> float:
    settings = load_settings(
        REPO / "config.yaml",
        env={},
        overrides={
            "database.url": engine.url.render_as_string(hide_password=False),
            "paths.rules": str(REPO / "rules"),
            "paths.templates": str(REPO / "templates"),
        },
    ).settings
    runtime = Runtime.build(engine, settings, SettableClock(NOW))
    rule_set = runtime.load_rules()
    rule = next(rule for rule in rule_set.rules if rule.id == scenario.rule_id)
    started = time.perf_counter()
    outcome = run_rule(runtime, rule_set, rule, NOW)
    seconds = time.perf_counter() - started
    assert outcome.fired == count, (outcome.fired, count, outcome.error)
    if scenario.step:
        started = time.perf_counter()
        stepped = run_nurture_steps(runtime, rule_set, NOW)
        seconds = time.perf_counter() - started
        assert stepped == count, (stepped, count)
    check_written(engine, scenario, count)
    return seconds


def check_written(engine: Engine, scenario: Scenario, count: int) -> None:
    with engine.connect() as connection:
        outbox = connection.execute(select(func.count()).select_from(OUTBOX)).scalar_one()
        audit = connection.execute(select(func.count()).select_from(AUDIT)).scalar_one()
        if scenario.rule_id == "mql-assignment":
            mqls = connection.execute(
                select(func.count()).select_from(LEADS).where(LEADS.c.stage == "mql")
            ).scalar_one()
            timers = connection.execute(select(func.count()).select_from(SLA_TIMERS)).scalar_one()
            assert (mqls, timers, outbox) == (count, count, count), (mqls, timers, outbox)
        else:
            enrolled = connection.execute(select(func.count()).select_from(NURTURE)).scalar_one()
            emails = count if scenario.step else 0
            assert (enrolled, outbox) == (count, emails), (enrolled, outbox)
        assert audit >= count


# The floors: the rows leadflow writes, written by plain SQL in one transaction per 1,000, the
# fastest way each store takes them: on SQLite an executemany per table (one prepared statement,
# in-process); on PostgreSQL COPY per table and one UPDATE ... FROM unnest(...) for the leads.

_BODY = "Hi Rep,\n\nA new marketing-qualified lead is yours: Lead N at Company N (score 75).\n" * 3


@dataclass(frozen=True)
class Plain:
    """A raw DB-API cursor, the store it talks to and the time as the driver takes it."""

    cursor: Any
    postgres: bool
    stamp: Any

    def insert(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        if self.postgres:
            with self.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" * len(rows[0]))
        self.cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)

    def update(self, table: str, columns: list[str], kinds: list[str], rows: list[Any]) -> None:
        """Set ``columns`` of the rows whose id is each row's last value."""
        if self.postgres:
            arrays = [list(values) for values in zip(*rows, strict=True)]
            unnest = ", ".join(f"%s::{kind}[]" for kind in [*kinds, "int"])
            names = ", ".join([*columns, "id"])
            sets = ", ".join(f"{name} = v.{name}" for name in columns)
            self.cursor.execute(
                f"UPDATE {table} AS t SET {sets} FROM unnest({unnest}) AS v({names})"
                " WHERE t.id = v.id",
                arrays,
            )
            return
        sets = ", ".join(f"{name} = ?" for name in columns)
        self.cursor.executemany(f"UPDATE {table} SET {sets} WHERE id = ?", rows)


def _in_chunks(engine: Engine, query: str, write: Callable[[Plain, list[Any]], None]) -> None:
    """``write`` the rows ``query`` selects, 1,000 per transaction, straight through the driver."""
    postgres = engine.dialect.name == "postgresql"
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(query)
        rows = list(cursor.fetchall())
        stamp: Any = NOW if postgres else NOW.strftime("%Y-%m-%d %H:%M:%S.%f")
        plain = Plain(cursor, postgres, stamp)
        for start in range(0, len(rows), 1000):
            if not postgres:
                cursor.execute("BEGIN IMMEDIATE")
            write(plain, rows[start : start + 1000])
            raw.commit()
    finally:
        raw.close()


def mql_floor(engine: Engine, count: int) -> None:
    def write(plain: Plain, rows: list[Any]) -> None:
        stamp = plain.stamp
        leads = [lead for (lead,) in rows]
        plain.update(
            "leads",
            ["stage", "stage_entered_at", "owner_id"],
            ["text", "timestamptz", "int"],
            [("mql", stamp, 1 + lead % REP_COUNT, lead) for lead in leads],
        )
        # The stage history row each firing writes (leadflow writes it; a floor without it
        # would hold leadflow to less work than it must do).
        plain.insert(
            "stage_changes",
            "lead_id, at, from_stage, to_stage, from_owner_id, to_owner_id, cause, rule_id, source",
            [
                (lead, stamp, "lead", "mql", None, 1 + lead % REP_COUNT, "rule", "mql", "v1")
                for lead in leads
            ],
        )
        mql = ["stage_changed", "assigned", "email_queued", "sla_started"]
        _audit(plain, leads, "mql-assignment", mql)
        _outbox(plain, leads, "operational")
        plain.insert(
            "sla_timers",
            "lead_id, name, rule_id, rule_version, owner_id, started_at, due_at, calendar,"
            " ladder, met_by, level, next_escalation_at, status",
            [
                (
                    lead,
                    "first_touch",
                    "mql-assignment",
                    "v1",
                    1 + lead % REP_COUNT,
                    stamp,
                    stamp,
                    "default",
                    "[]",
                    "{}",
                    0,
                    stamp,
                    "running",
                )
                for lead in leads
            ],
        )

    _in_chunks(
        engine, "SELECT id FROM leads WHERE score >= 60 AND stage = 'lead' ORDER BY id", write
    )


def enrolment_floor(engine: Engine, count: int) -> None:
    def write(plain: Plain, rows: list[Any]) -> None:
        stamp = plain.stamp
        leads = [lead for (lead,) in rows]
        plain.insert(
            "rule_firings",
            "rule_id, rule_version, subject_kind, subject_id, fired_at",
            [("nurture-new-leads", "v1", "lead", lead, stamp) for lead in leads],
        )
        plain.insert(
            "nurture_enrollments",
            "lead_id, stream, rule_id, enrolled_at, next_step, next_step_at, status",
            [(lead, "welcome", "nurture-new-leads", stamp, 0, stamp, "active") for lead in leads],
        )
        _audit(plain, leads, "nurture-new-leads", ["enrolled"])

    _in_chunks(
        engine, "SELECT id FROM leads WHERE score < 60 AND stage = 'lead' ORDER BY id", write
    )


def step_floor(engine: Engine, count: int) -> None:
    def write(plain: Plain, rows: list[Any]) -> None:
        plain.update(
            "nurture_enrollments",
            ["next_step", "next_step_at"],
            ["int", "timestamptz"],
            [(1, plain.stamp, enrolment) for enrolment, _ in rows],
        )
        leads = [lead for _, lead in rows]
        _audit(plain, leads, "nurture-new-leads", ["nurture_step"])
        _outbox(plain, leads, "marketing")

    _in_chunks(engine, "SELECT id, lead_id FROM nurture_enrollments ORDER BY id", write)


def _audit(plain: Plain, leads: list[int], rule: str, actions: list[str]) -> None:
    plain.insert(
        "audit_log",
        "at, source, rule_id, rule_version, lead_id, action, params, evidence",
        [
            (
                plain.stamp,
                "rule",
                rule,
                "v1",
                lead,
                action,
                json.dumps({"stream": "welcome", "rep": "r1"}),
                '{"score": 20}',
            )
            for lead in leads
            for action in actions
        ],
    )


def _outbox(plain: Plain, leads: list[int], category: str) -> None:
    stamp = plain.stamp
    plain.insert(
        "outbox",
        "idempotency_key, message_id, channel, category, lead_id, rule_id, rule_version,"
        " recipient, subject, body_text, body_html, headers, status, attempts,"
        " next_attempt_at, created_at",
        [
            (
                f"rule:x/lead:{lead}/once/notify0",
                f"<{uuid.uuid4().hex}@leadflow.local>",
                "email",
                category,
                lead,
                "rule",
                "v1",
                f"rep{lead % REP_COUNT}@example.com",
                f"New MQL: Lead {lead} (score 75)",
                _BODY,
                f"<p>{_BODY}</p>",
                "{}",
                "pending",
                0,
                stamp,
                stamp,
            )
            for lead in leads
        ],
    )


if __name__ == "__main__":
    main()
