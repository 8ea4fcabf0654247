"""A dry run of 10 realistic rules over 1,000,000 leads, about 1% matching each.

The rules are of the kind marketing ops write: score thresholds, stage lists, the industry and
country attributes (``attributes.indexed: [industry, country]``, so they have expression
indexes; employees has none), ages (``days_since_activity``, ``days_in_stage``,
``older_than``), and ``any``/``all``/``not``. Measured on SQLite and PostgreSQL, in rounds:

- the in-process pass ``run --once --dry-run`` makes (each match and its evidence read and
  handed to a sink, one by one), and the floor beside it: the same WHEREs run alone, reading
  back only the ids;
- the whole ``leadflow run --once --dry-run --all`` process, its output read through a pipe;
- the naive baselines, in the same rounds on the same data, on a sample extrapolated to all
  leads: each lead loaded once as an ORM object and all ten rules tested in Python; and a loop
  per rule loading every lead for that rule.

    .venv/bin/python bench/evaluation_bench.py [--leads 1000000] [--rounds 3] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from machine import describe
from scratch import Timings
from sqlalchemy import Engine, and_, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.engine.evaluation import PlannedFiring, rule_scope
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.logs import configure_logging
from leadflow.rule_language.conditions import EvaluationContext
from leadflow.rule_language.model import RuleSet
from leadflow.rule_language.to_python import matches
from leadflow.rule_language.to_sql import to_where
from leadflow.settings import Settings
from leadflow.store.database import create_store_engine, ensure_attribute_indexes, migrate
from leadflow.store.models import Lead
from leadflow.store.tables import LEADS

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STAGES = (
    ["lead"] * 60
    + ["subscriber"] * 20
    + ["nurture"] * 10
    + ["mql"] * 5
    + ["sql"] * 3
    + ["customer"] * 2
)
REGIONS = ["EMEA", "NA", "LATAM", "APAC", "ANZ"]
INDUSTRIES = [
    "software",
    "saas",
    "manufacturing",
    "healthcare",
    "finance",
    *[f"industry-{n}" for n in range(15)],
]
COUNTRIES = (
    ["US"] * 20
    + ["DE"] * 8
    + ["GB"] * 8
    + ["FR"] * 6
    + ["CA"] * 5
    + ["AT", "CH", "IE"] * 2
    + [f"C{n}" for n in range(47)]
)
RULES = """
rules:
  - id: r01-hot-inbound
    when: {all: [{field: score, at_least: 99}, {field: stage, in: [lead, subscriber, nurture]}]}
    actions: [{set_stage: mql}]
  - id: r02-enterprise-software
    when:
      all:
        - {field: attributes.industry, in: [software, saas]}
        - {field: attributes.employees, at_least: 5000}
        - {field: score, at_least: 80}
    actions: [{adjust_score: 10}]
  - id: r03-dach-manufacturing
    when: {all: [{field: attributes.country, in: [DE, AT, CH]}, {field: attributes.industry, equals: manufacturing}]}
    actions: [{adjust_score: 5}]
  - id: r04-unowned-mql-quiet
    when: {all: [{field: stage, equals: mql}, {field: owner_id, is_set: false}, {field: days_since_activity, more_than: 14}]}
    actions: [{adjust_score: 1}]
  - id: r05-gone-quiet
    when: {all: [{field: stage, in: [nurture, subscriber]}, {field: last_activity_at, older_than: 120d}, {field: score, at_least: 90}]}
    actions: [{set_stage: recycled}]
  - id: r06-north-america-not-yet-sales
    when:
      all:
        - {not: {field: stage, in: [customer, mql, sql]}}
        - {field: score, at_least: 96}
        - {field: attributes.country, in: [US, CA]}
    actions: [{set_stage: mql}]
  - id: r07-priority-accounts
    when:
      all:
        - {field: score, at_least: 30}
        - any:
            - {all: [{field: attributes.industry, equals: healthcare}, {field: attributes.country, equals: US}]}
            - {all: [{field: attributes.industry, equals: finance}, {field: attributes.country, in: [GB, IE]}]}
    actions: [{adjust_score: 3}]
  - id: r08-new-and-silent
    when: {all: [{field: days_in_stage, less_than: 30}, {field: last_activity_at, is_set: false}]}
    actions: [{adjust_score: -1}]
  - id: r09-quiet-pipeline
    when: {all: [{field: stage, in: [sql, mql]}, {field: days_since_activity, more_than: 160}]}
    actions: [{set_stage: nurture}]
  - id: r10-big-and-disengaged
    when:
      all:
        - {not: {any: [{field: unsubscribed, equals: true}, {field: do_not_email, equals: true}]}}
        - {field: attributes.employees, at_least: 9000}
        - {field: days_since_activity, more_than: 120}
        - {field: score, at_least: 70}
    actions: [{adjust_score: -5}]
"""


def lead_rows(count: int) -> Any:
    rng = random.Random(42)
    for index in range(1, count + 1):
        stage = rng.choice(STAGES)
        entered = NOW - timedelta(seconds=rng.randrange(365 * 86400))
        activity = (
            None if rng.random() < 0.1 else NOW - timedelta(seconds=rng.randrange(180 * 86400))
        )
        owner = None if stage != "mql" or rng.random() < 0.2 else 1
        attributes = {
            "region": rng.choice(REGIONS),
            "industry": rng.choice(INDUSTRIES),
            "country": rng.choice(COUNTRIES),
            "employees": rng.randint(1, 10000),
        }
        yield (
            index,
            f"L{index:07d}",
            f"lead{index}@example.com",
            json.dumps(attributes),
            rng.randrange(100),
            stage,
            entered,
            owner,
            activity,
        )


def fill_sqlite(engine: Engine, count: int) -> None:
    raw = engine.raw_connection()
    cursor = raw.cursor()
    cursor.execute("BEGIN")
    cursor.execute(
        "INSERT INTO reps (id, external_id, name, email, pools, active, timezone, created_at, updated_at) VALUES (1, 'r1', 'Rep', 'r@example.com', '[]', 1, 'UTC', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
    )
    stamp = "%Y-%m-%d %H:%M:%S.%f"
    cursor.executemany(
        "INSERT INTO leads (id, external_id, email, attributes, score, stage, stage_entered_at, owner_id, last_activity_at, unsubscribed, do_not_email, hard_bounced, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,0,0,0,'2025-01-01 00:00:00.000000','2025-01-01 00:00:00.000000')",
        (
            (i, e, m, a, s, st, en.strftime(stamp), o, None if act is None else act.strftime(stamp))
            for i, e, m, a, s, st, en, o, act in lead_rows(count)
        ),
    )
    cursor.execute("COMMIT")
    cursor.execute("ANALYZE")
    raw.close()


def fill_postgres(engine: Engine, count: int) -> None:
    raw = engine.raw_connection()
    cursor = raw.cursor()
    cursor.execute("SET statement_timeout = 0")  # a COPY of 1M rows on a busy machine
    cursor.execute(
        "INSERT INTO reps (id, external_id, name, email, pools, active, timezone, created_at, updated_at) VALUES (1, 'r1', 'Rep', 'r@example.com', '[]', true, 'UTC', now(), now())"
    )
    with cursor.copy(
        "COPY leads (id, external_id, email, attributes, score, stage, stage_entered_at, owner_id, last_activity_at, unsubscribed, do_not_email, hard_bounced, created_at, updated_at) FROM STDIN"
    ) as copy:  # type: ignore[attr-defined]
        for row in lead_rows(count):
            copy.write_row((*row, False, False, False, NOW, NOW))
    raw.commit()
    cursor.execute("ANALYZE leads")
    raw.commit()
    raw.close()


def _settings(folder: Path, url: str) -> Settings:
    """The bench's configuration, also written as a config file for the whole-process run."""
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "bench.yaml").write_text(RULES, encoding="utf-8")
    (folder / "templates").mkdir(exist_ok=True)
    overrides: dict[str, Any] = {
        "paths.rules": str(folder / "rules"),
        "paths.templates": str(folder / "templates"),
        "attributes.leads": {
            "region": "string",
            "industry": "string",
            "country": "string",
            "employees": "integer",
        },
        "attributes.indexed": ["industry", "country"],
        "scheduler.evaluation_batch": 5000,
    }
    (folder / "config.yaml").write_text(
        json.dumps(
            {
                "database": {"url": url},
                "paths": {
                    "rules": overrides["paths.rules"],
                    "templates": overrides["paths.templates"],
                },
                "attributes": {
                    "leads": overrides["attributes.leads"],
                    "indexed": overrides["attributes.indexed"],
                },
                "scheduler": {"evaluation_batch": 5000},
                "log": {"level": "warning"},
            }
        ),
        encoding="utf-8",
    )
    return load_settings(None, env={}, overrides=overrides).settings


def measure(
    engine: Engine, url: str, folder: Path, leads: int, sample: int, rounds: int
) -> dict[str, Any]:
    settings = _settings(folder, url)
    ensure_attribute_indexes(engine, LEADS, settings.attributes.leads, settings.attributes.indexed)
    with engine.begin() as connection:
        # The leads table only: a bare ANALYZE on PostgreSQL takes every table of the database,
        # other people's schemas included, and can deadlock with their DDL.
        connection.exec_driver_sql("ANALYZE leads")
    runtime = Runtime.build(engine, settings, SettableClock(NOW), read_only=True)
    rule_set = runtime.load_rules()
    context = EvaluationContext(NOW, {})
    wheres = [
        and_(to_where(rule.condition, LEADS, context), rule_scope(rule, LEADS, NOW))
        for rule in rule_set.rules
    ]
    command = [
        str(Path(sys.executable).with_name("leadflow")),
        "-c",
        str(folder / "config.yaml"),
        "run",
        "--once",
        "--dry-run",
        "--all",
        "--now",
        NOW.isoformat(),
    ]
    timings: dict[str, Timings] = {
        name: Timings() for name in ("pass", "floor", "process", "single", "per_rule")
    }
    matched = printed = 0
    dry_run_pass(runtime, rule_set)  # warm caches as a running daemon has
    for _ in range(rounds):
        with timings["pass"].measure():
            matched = dry_run_pass(runtime, rule_set)
        # The floor: the same WHEREs, straight through the driver, only the ids read back.
        with timings["floor"].measure(), engine.connect() as connection:
            floor_matched = sum(
                len(connection.execute(select(LEADS.c.id).where(where)).fetchall())
                for where in wheres
            )
        assert floor_matched == matched, (floor_matched, matched)
        # The whole process as a user runs it, its output read through a pipe.
        with timings["process"].measure():
            done = subprocess.run(command, capture_output=True, check=True)
        printed = len(done.stdout)
        # Naive, one pass: each lead loaded once as an ORM object, all ten rules tested.
        with timings["single"].measure(leads / sample), Session(engine) as session:
            for lead in session.scalars(select(Lead).order_by(Lead.id).limit(sample)):  # type: ignore[arg-type]
                record = {name: getattr(lead, name) for name in Lead.model_fields}
                for rule in rule_set.rules:
                    matches(rule.condition, record, context)
        # Naive, a loop per rule: each rule loads every lead and tests that rule.
        per_rule_sample = max(1, sample // 10)
        with timings["per_rule"].measure(leads / per_rule_sample):
            for rule in rule_set.rules:
                with Session(engine) as session:
                    query = select(Lead).order_by(Lead.id).limit(per_rule_sample)  # type: ignore[arg-type]
                    for lead in session.scalars(query):
                        record = {name: getattr(lead, name) for name in Lead.model_fields}
                        matches(rule.condition, record, context)
        print(
            "  round: "
            + ", ".join(
                f"{name} {t.wall[-1]:.3f} s (CPU {t.cpu[-1]:.3f})" for name, t in timings.items()
            )
            + f", load {os.getloadavg()[0]:.2f}",
            file=sys.stderr,
        )
    return {"matched": matched, "printed": printed, **timings}


def dry_run_pass(runtime: Runtime, rule_set: RuleSet) -> int:
    """The pass ``run --once --dry-run`` makes: every rule, each match and its evidence read
    and handed, one by one, to a sink (here one that counts them)."""
    planned = 0

    def count(_firing: PlannedFiring) -> None:
        nonlocal planned
        planned += 1

    outcomes = run_due_rules(runtime, rule_set, NOW, dry_run=True, force=True, plan_to=count)
    assert planned == sum(outcome.matched for outcome in outcomes)
    return planned


def machine(postgres_version: str | None) -> str:
    return f"{describe()}, PostgreSQL {postgres_version or 'not measured'}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    configure_logging("warning")
    results = []
    postgres_version = None
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder / 'bench.db'}"
        engine = create_store_engine(url)
        migrate(engine)
        started = time.perf_counter()
        fill_sqlite(engine, args.leads)
        print(
            f"sqlite: {args.leads:,} leads generated in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        results.append(
            ("SQLite", measure(engine, url, folder, args.leads, args.sample, args.rounds))
        )
        engine.dispose()
        if not args.skip_postgres:
            schema = f"lf_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(args.postgres)
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
                postgres_version = str(connection.execute(text("SHOW server_version")).scalar())
            try:
                url = (
                    make_url(args.postgres)
                    .update_query_dict({"options": f"-csearch_path={schema}"})
                    .render_as_string(hide_password=False)
                )
                engine = create_store_engine(url)
                migrate(engine)
                started = time.perf_counter()
                fill_postgres(engine, args.leads)
                print(
                    f"postgres: {args.leads:,} leads generated in {time.perf_counter() - started:.1f} s",
                    file=sys.stderr,
                )
                results.append(
                    (
                        "PostgreSQL",
                        measure(engine, url, folder, args.leads, args.sample, args.rounds),
                    )
                )
                engine.dispose()
            finally:
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    print(
        f"\n{machine(postgres_version)}; load average {os.getloadavg()[0]:.2f} at the end; "
        f"bench took {time.perf_counter() - started_all:.0f} s"
    )
    print(
        f"One dry run of 10 realistic rules over {args.leads:,} leads: medians of {args.rounds} rounds "
        "(min-max; CPU of this process and its children)."
    )
    print(
        f"The naive baselines are measured in the same rounds on a sample ({args.sample:,} leads for the "
        f"one pass testing all rules, {args.sample // 10:,} per rule for a loop per rule), extrapolated.\n"
    )
    print(
        "| store | matches | in-process pass | floor: the same WHEREs, ids only | whole "
        "`run --once --dry-run` process | naive, one pass testing all rules | naive, one loop per rule |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results:
        seconds, floor, process = r["pass"].median, r["floor"].median, r["process"].median
        single, per_rule = r["single"].median, r["per_rule"].median
        print(
            f"| {name} | {r['matched']:,} | {r['pass']} = {seconds / floor:.2f}x the floor | {r['floor']} "
            f"| {r['process']}, {r['printed']:,} bytes printed "
            f"| {r['single']}: {single / seconds:.0f}x the pass, {single / process:.0f}x the process "
            f"| {r['per_rule']}: {per_rule / seconds:.0f}x the pass, {per_rule / process:.0f}x the process |"
        )


if __name__ == "__main__":
    main()
