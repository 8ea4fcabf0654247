"""One evaluation pass of 10 rules over 1,000,000 leads, about 1% matching each.

Measures ``run_due_rules(..., dry_run=True, force=True)`` (conditions compiled to SQL, the
database returns the matches, evidence computed for each) on SQLite and PostgreSQL, beside a
naive baseline measured in the same run on the same data: each lead loaded as an ORM object
and every rule tested in Python (on a sample, extrapolated to all leads).

    .venv/bin/python bench/evaluation_bench.py [--leads 1000000] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.logs import configure_logging
from leadflow.rule_language.conditions import EvaluationContext
from leadflow.rule_language.to_python import matches
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
INDUSTRIES = ["aerospace", *[f"industry-{n}" for n in range(19)]]
RULES = """
rules:
  - {id: r01-hot-leads, when: {all: [{field: score, at_least: 99}, {field: stage, in: [subscriber, lead, nurture]}]}, actions: [{set_stage: mql}]}
  - {id: r02-mql-queue, when: {all: [{field: stage, equals: mql}, {field: owner_id, is_set: false}]}, actions: [{set_stage: mql}]}
  - {id: r03-stale-nurture, when: {all: [{field: stage, equals: nurture}, {field: days_in_stage, more_than: 328}]}, actions: [{set_stage: recycled}]}
  - {id: r04-quiet-sql, when: {all: [{field: stage, equals: sql}, {field: days_since_activity, more_than: 120}]}, actions: [{set_stage: nurture}]}
  - {id: r05-emea-aero, when: {all: [{field: attributes.industry, equals: aerospace}, {field: attributes.region, equals: EMEA}]}, actions: [{adjust_score: 10}]}
  - {id: r06-big-and-hot, when: {all: [{field: score, at_least: 90}, {field: attributes.employees, at_least: 9001}]}, actions: [{adjust_score: 5}]}
  - {id: r07-cold-customers, when: {all: [{field: stage, equals: customer}, {field: score, less_than: 50}]}, actions: [{adjust_score: 1}]}
  - {id: r08-score-42, when: {any: [{field: score, equals: 42}]}, actions: [{adjust_score: 1}]}
  - {id: r09-lead-at-70, when: {all: [{field: stage, equals: lead}, {field: score, at_least: 70}, {field: score, at_most: 70}]}, actions: [{adjust_score: 1}]}
  - {id: r10-new-subscribers, when: {all: [{field: stage, equals: subscriber}, {field: days_in_stage, less_than: 18}]}, actions: [{adjust_score: 1}]}
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


def measure(
    engine: Engine, folder: Path, leads: int, sample: int
) -> tuple[float, int, float, float]:
    (folder / "rules").mkdir(exist_ok=True)
    (folder / "rules" / "bench.yaml").write_text(RULES, encoding="utf-8")
    (folder / "templates").mkdir(exist_ok=True)
    settings = load_settings(
        None,
        env={},
        overrides={
            "paths.rules": str(folder / "rules"),
            "paths.templates": str(folder / "templates"),
            "attributes.leads": {"region": "string", "industry": "string", "employees": "integer"},
            "attributes.indexed": ["industry", "employees"],
            "scheduler.evaluation_batch": 5000,
        },
    ).settings
    ensure_attribute_indexes(engine, LEADS, settings.attributes.leads, settings.attributes.indexed)
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")
    runtime = Runtime.build(engine, settings, SettableClock(NOW))
    rule_set = runtime.load_rules()
    run_due_rules(
        runtime, rule_set, NOW, dry_run=True, force=True
    )  # warm caches as a running daemon has
    started = time.perf_counter()
    outcomes = run_due_rules(runtime, rule_set, NOW, dry_run=True, force=True)
    sql_seconds = time.perf_counter() - started
    matched = sum(outcome.matched for outcome in outcomes)
    context = EvaluationContext(NOW, {})
    started = time.perf_counter()
    with Session(engine) as session:
        for lead in session.scalars(select(Lead).order_by(Lead.id).limit(sample)):  # type: ignore[arg-type]
            record = {name: getattr(lead, name) for name in Lead.model_fields}
            for rule in rule_set.rules:
                matches(rule.condition, record, context)
    naive_seconds = (time.perf_counter() - started) * leads / sample
    # The wording: each rule's own loop loads every lead and tests that rule.
    started = time.perf_counter()
    per_rule_sample = max(1, sample // 10)
    for rule in rule_set.rules:
        with Session(engine) as session:
            for lead in session.scalars(select(Lead).order_by(Lead.id).limit(per_rule_sample)):  # type: ignore[arg-type]
                matches(
                    rule.condition,
                    {name: getattr(lead, name) for name in Lead.model_fields},
                    context,
                )
    per_rule_seconds = (time.perf_counter() - started) * leads / per_rule_sample
    return sql_seconds, matched, naive_seconds, per_rule_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    configure_logging("warning")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        engine = create_store_engine(f"sqlite:///{folder / 'bench.db'}")
        migrate(engine)
        started = time.perf_counter()
        fill_sqlite(engine, args.leads)
        print(
            f"sqlite: {args.leads:,} leads generated in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        results.append(("SQLite", *measure(engine, folder, args.leads, args.sample)))
        engine.dispose()
        if not args.skip_postgres:
            schema = f"lf_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(args.postgres)
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
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
                results.append(("PostgreSQL", *measure(engine, folder, args.leads, args.sample)))
                engine.dispose()
            finally:
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    print(
        f"\nOne evaluation pass, 10 rules, {args.leads:,} leads. Naive baselines measured in the same run on"
    )
    print(
        f"a sample ({args.sample:,} leads for one loop testing all rules; {args.sample // 10:,} per rule for a loop per rule) and extrapolated.\n"
    )
    print(
        "| store | matches | leadflow (SQL) | naive, one loop for all rules | naive, one loop per rule | target |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, seconds, matched, naive, per_rule in results:
        print(
            f"| {name} | {matched:,} ({matched / args.leads / 10:.2%} per rule) | {seconds:.3f} s | {naive:.1f} s ({naive / seconds:.0f}x) | {per_rule:.1f} s ({per_rule / seconds:.0f}x) | <= 1 s, >= 100x |"
        )


if __name__ == "__main__":
    main()
