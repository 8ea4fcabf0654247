"""A rescoring of 1,000,000 leads by the shipped scoring model, timed beside a naive loop.

The data: 1,000,000 leads with declared attributes (industry, employees, region) and about
4.5 activities each (4.5M rows: page views with URLs, downloads, webinars, email opens and
clicks, form fills, a few unsubscribes and machine opens; most leads have a handful, some have
forty), over the year before ``NOW``. It is generated in the database, set-based, from a hash
of the ids, so both stores hold the same rows. Measured on SQLite and PostgreSQL:

- (a) the first full pass at ``NOW``: every lead gets its score, parts and grade;
- (b) a steady pass an hour later, after an hour's worth of new activities (512: a year's
  4.5M / 8,760 hours): incremental, it recomputes only the leads due (decay, arrivals);
- (c) a pass with nothing changed (the same ``now`` again): incremental, nothing due;
- (c') a full pass at that same instant (``full=True``): what every steady pass cost before
  passes were incremental, measured in the same run;
- (d) the naive baseline in the same run: a per-lead Python loop loading each lead and its
  activities and computing the same score in Python, on a sample extrapolated to all leads.
  Its results are also the correctness check: they must equal the stored scores exactly;
- (e) the budget: one evaluation pass of the shipped MQL rule's WHERE over the same leads;
- (f) the model changed: the shipped model plus a fit criterion that reads the clock (``-5`` for
  a lead in its stage for over a year, which every generated lead is), a pass that moves every
  score; its engagement criteria are the shipped ones, so it recomputes every lead's fit and
  the engagement of the leads due only (before ``scoring_runs.engagement_version``, every
  engagement); then (g) a pass an hour later, after an hour's new activities: with a criterion
  reading the clock every pass reads every lead (the engagement of the leads due only).
  Checked against the naive loop like (d);
- (h) the floor: the rows (f) wrote, written again by plain SQL with no leadflow machinery: the
  scores, parts, grades and next changes every lead had before (f), kept in a table before it,
  put back by one ``UPDATE leads ... FROM`` that table and one ``INSERT INTO score_changes``
  of a history row per lead it moves, in one transaction (the same tables, indexes, triggers
  and foreign keys; the values precomputed, so no scoring). What a pass that writes a million
  scores cannot beat; (a) and (f) are printed as multiples of it.

    .venv/bin/python bench/scoring_bench.py [--leads 1000000] [--sample 5000] [--rounds 1] [--skip-postgres] [--skip-sqlite]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from machine import describe
from scratch import Timings
from sqlalchemy import Engine, and_, bindparam, create_engine, select, text
from sqlalchemy.engine import make_url

from leadflow.engine.evaluation import rule_scope
from leadflow.logs import configure_logging
from leadflow.rule_language.conditions import EvaluationContext
from leadflow.rule_language.loader import load_rule_set
from leadflow.rule_language.model import RuleSet
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.rule_language.to_python import matches
from leadflow.rule_language.to_sql import to_where
from leadflow.scoring.rescoring import rescore
from leadflow.settings import Settings
from leadflow.store.database import create_store_engine, migrate
from leadflow.store.score_marks import POSTGRES_CREATE, POSTGRES_DROP, SQLITE_CREATE, SQLITE_DROP
from leadflow.store.tables import ACTIVITIES, LEADS
from leadflow.store.types import UTCDateTime

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parent.parent
YEAR_SECONDS = 365 * 86400
ARRIVALS_PER_HOUR = 512
"""New activities before each steady pass: the year's 4.5M spread over its 8,760 hours."""


def mix(expression: str, salt: int) -> str:
    """A pseudo-random 0..999,999 from an integer SQL expression, the same on both stores
    (64-bit integer arithmetic only)."""
    first = f"((CAST({expression} AS BIGINT) * 2654435761 + {salt * 97531}) % 1000003)"
    second = f"((CAST({expression} AS BIGINT) * 40503 + {salt * 7919}) % 999983 + {salt})"
    return f"({first} * {second} % 1000003 % 1000000)"


def lead_select(leads: int, numbers: str) -> str:
    """The leads as a SELECT over ``numbers`` (a table of n = 1..leads)."""
    industry = mix("n", 1)
    region = mix("n", 2)
    employees = mix("n", 3)
    mail = mix("n", 4)
    company = mix("n", 12)
    return f"""
        SELECT n, 'L' || (10000000 + n),
          CASE WHEN {mail} < 150000 THEN 'lead' || n || '@gmail.com'
               WHEN {mail} < 200000 THEN 'lead' || n || '@yahoo.com'
               WHEN {mail} < 230000 THEN 'lead' || n || '@outlook.com'
               WHEN {mail} < 250000 THEN 'lead' || n || '@campus.edu'
               ELSE 'lead' || n || '@company' || (n % 50000) || '.example' END,
          CASE WHEN {company} < 600000 THEN 'Company ' || (n % 50000) END,
          {{json}}('industry',
            CASE {industry} % 10 WHEN 0 THEN 'software' WHEN 1 THEN 'fintech'
              WHEN 2 THEN 'healthcare' WHEN 3 THEN 'retail' WHEN 4 THEN 'manufacturing'
              WHEN 5 THEN 'education' WHEN 6 THEN 'media' ELSE 'industry-' || ({industry} % 40) END,
            'region', CASE {region} % 5 WHEN 0 THEN 'Central' WHEN 1 THEN 'East'
              WHEN 2 THEN 'West' WHEN 3 THEN 'EMEA' ELSE 'APAC' END,
            'employees', 1 + {employees} * {employees} / 1000000 * {employees} / 100000000),
          CASE {mix("n", 5)} % 10 WHEN 0 THEN 'subscriber' WHEN 1 THEN 'nurture'
            WHEN 2 THEN 'customer' ELSE 'lead' END
        FROM {numbers} WHERE n <= {leads}
    """


def activity_count(lead: str) -> str:
    """Most leads few activities, some many: 0 (30%), 2 (30%), 5 (25%), 12 (12%), 40 (3%)."""
    draw = mix(lead, 6) + " % 100"
    return (
        f"CASE WHEN {draw} < 30 THEN 0 WHEN {draw} < 60 THEN 2 WHEN {draw} < 85 THEN 5 "
        f"WHEN {draw} < 97 THEN 12 ELSE 40 END"
    )


def activity_select(pairs: str, json_function: str, barrier: str) -> str:
    """The activities as a SELECT over ``pairs`` (lead ``id``, its k-th activity ``n``): their
    types, URLs, machine opens and times (``seconds`` before NOW, spread over a year, recent
    ones likelier). Each draw is computed once, in a subquery ``barrier`` keeps apart."""
    key = "(l.id * 64 + k.n)"
    age = f"({mix(key, 9)} * {mix(key, 10)} / 1000000 * {YEAR_SECONDS} / 1000000)"
    return f"""
        SELECT 'A' || (1000000000 + lead * 100 + n) AS a1, lead AS a2,
          CASE WHEN kind < 55 THEN 'page_view' WHEN kind < 78 THEN 'email_open'
               WHEN kind < 83 THEN 'email_click' WHEN kind < 89 THEN 'download'
               WHEN kind < 92 THEN 'webinar' WHEN kind < 95 THEN 'form_fill'
               WHEN kind < 96 THEN 'unsubscribe' ELSE 'call' END AS a3,
          CASE WHEN kind < 55 THEN {json_function}('url',
            CASE WHEN page < 3 THEN '/pricing' WHEN page < 4 THEN '/pricing?plan=team'
                 WHEN page < 10 THEN '/blog/post-' || page
                 WHEN page < 15 THEN '/docs/page-' || page ELSE '/product' END)
            ELSE {json_function}() END AS a4,
          kind >= 55 AND kind < 78 AND machine < 8 AS a5,
          seconds
        FROM (
          SELECT l.id AS lead, k.n AS n, {mix(key, 7)} % 100 AS kind, {mix(key, 8)} % 20 AS page,
            {mix(key, 11)} % 100 AS machine, {age} AS seconds
          FROM {pairs} {barrier}
        ) draws
    """


ACTIVITIES_PER_LEAD = 40
"""The most activities one lead has: ``per_lead`` holds k = 1..40."""


ACTIVITY_INDEXES = (
    "CREATE INDEX ix_activities_lead_time ON activities (lead_id, occurred_at)",
    "CREATE INDEX ix_activities_deal_time ON activities (deal_id, occurred_at)",
)
"""Dropped while the activities are inserted and built after, sorted once: ids and external
ids are inserted in order, so their indexes only ever append."""


def fill_sqlite(engine: Engine, leads: int) -> None:
    raw = engine.raw_connection()
    cursor = raw.cursor()
    cursor.execute("PRAGMA synchronous = OFF")
    cursor.execute("PRAGMA cache_size = -262144")
    for statement in SQLITE_DROP:  # every generated lead is new, hence due: no marks needed
        cursor.execute(statement)
    for index in ACTIVITY_INDEXES:
        cursor.execute(f"DROP INDEX {index.split()[2]}")
    cursor.execute(
        "CREATE TEMP TABLE numbers AS WITH RECURSIVE s(n) AS "
        f"(SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {max(leads, ACTIVITIES_PER_LEAD)}) SELECT n FROM s"
    )
    cursor.execute("CREATE TEMP TABLE per_lead (n INTEGER PRIMARY KEY)")
    cursor.execute(f"INSERT INTO per_lead SELECT n FROM numbers WHERE n <= {ACTIVITIES_PER_LEAD}")
    cursor.execute("BEGIN")
    cursor.execute(
        "INSERT INTO leads (id, external_id, email, company, attributes, stage, score, stage_entered_at,"
        " unsubscribed, do_not_email, hard_bounced, score_adjustment, created_at, updated_at)"
        " SELECT *, 0, '2025-01-01 00:00:00.000000', 0, 0, 0, 0,"
        " '2025-01-01 00:00:00.000000', '2025-01-01 00:00:00.000000' FROM ("
        + lead_select(leads, "numbers").replace("{json}", "json_object")
        + ")"
    )
    stamp = f"strftime('%Y-%m-%d %H:%M:%S.000000', '{NOW.strftime('%Y-%m-%d %H:%M:%S')}', '-' || seconds || ' seconds')"
    cursor.execute(
        "INSERT INTO activities (external_id, lead_id, type, properties, machine, occurred_at,"
        f" created_at) SELECT a1, a2, a3, a4, a5, {stamp}, {stamp} FROM ("
        + activity_select(
            f"leads l JOIN per_lead k ON k.n <= {activity_count('l.id')}",
            "json_object",
            "LIMIT -1 OFFSET 0",
        )
        + ")"
    )
    for index in ACTIVITY_INDEXES:
        cursor.execute(index)
    cursor.execute("COMMIT")
    for statement in SQLITE_CREATE:
        cursor.execute(statement)
    cursor.execute("DROP TABLE numbers")
    cursor.execute("DROP TABLE per_lead")
    cursor.execute("ANALYZE")
    raw.close()


def fill_postgres(engine: Engine, leads: int) -> None:
    raw = engine.raw_connection()
    cursor = raw.cursor()
    cursor.execute("SET statement_timeout = 0")
    cursor.execute("SET synchronous_commit = off")
    cursor.execute("SET maintenance_work_mem = '256MB'")
    for statement in POSTGRES_DROP:  # every generated lead is new, hence due: no marks needed
        cursor.execute(statement)
    for index in ACTIVITY_INDEXES:
        cursor.execute(f"DROP INDEX {index.split()[2]}")
    cursor.execute(
        f"CREATE TEMP TABLE numbers AS SELECT n::bigint AS n FROM generate_series(1, {leads}) n"
    )
    cursor.execute(
        "INSERT INTO leads (id, external_id, email, company, attributes, stage, score, stage_entered_at,"
        " unsubscribed, do_not_email, hard_bounced, score_adjustment, created_at, updated_at)"
        " SELECT *, 0, '2025-01-01T00:00:00Z', false, false, false, 0,"
        " '2025-01-01T00:00:00Z', '2025-01-01T00:00:00Z' FROM ("
        + lead_select(leads, "numbers").replace("{json}", "jsonb_build_object")
        + ") t"
    )
    cursor.execute("ANALYZE leads")
    stamp = f"timestamptz '{NOW.isoformat()}' - make_interval(secs => seconds)"
    cursor.execute(
        "INSERT INTO activities (external_id, lead_id, type, properties, machine, occurred_at,"
        f" created_at) SELECT a1, a2, a3, a4, a5, {stamp}, {stamp} FROM ("
        + activity_select(
            f"leads l CROSS JOIN LATERAL generate_series(1, {activity_count('l.id')}) k(n)",
            "jsonb_build_object",
            "OFFSET 0",
        )
        + ") t"
    )
    for index in ACTIVITY_INDEXES:
        cursor.execute(index)
    for statement in POSTGRES_CREATE:
        cursor.execute(statement)
    cursor.execute("DROP TABLE numbers")
    raw.commit()
    # These two tables only: a bare ANALYZE takes every table of the database, other
    # schemas' too, and deadlocked with another process's DDL there.
    cursor.execute("ANALYZE leads")
    cursor.execute("ANALYZE activities")
    raw.commit()
    raw.close()


CLOCK_CRITERION = """\
    - id: a-year-in-stage
      description: In the same stage for over a year (reads the clock).
      when: {field: stage_entered_at, older_than: 365d}
      points: -5
"""


def load_rules(folder: Path, *, clock: bool = False) -> RuleSet:
    """The shipped MQL rule and scoring model (enabled), as a rules folder holds them;
    ``clock``: with :data:`CLOCK_CRITERION` as the last fit criterion."""
    rules = folder / ("rules-clock" if clock else "rules")
    rules.mkdir(exist_ok=True)
    shutil.copy(REPO / "rules" / "mql.yaml", rules / "mql.yaml")
    scoring = (REPO / "rules" / "scoring.yaml").read_text(encoding="utf-8")
    scoring = scoring.replace("enabled: false", "enabled: true")
    if clock:
        scoring = scoring.replace("  engagement:\n", CLOCK_CRITERION + "  engagement:\n", 1)
    (rules / "scoring.yaml").write_text(scoring, encoding="utf-8")
    settings = Settings.model_validate(
        {
            "attributes": {
                "leads": {"industry": "string", "employees": "integer", "region": "string"}
            }
        }
    )
    return load_rule_set(rules, settings)


def half_away_from_zero(value: float) -> int:
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def naive_score(
    model: ScoringModel, lead: dict[str, Any], activities: list[dict[str, Any]], now: datetime
) -> tuple[int, int, int, str | None]:
    """(score, fit, engagement, grade) of one lead at ``now``, in Python, as the model says."""
    context = EvaluationContext(now, {})
    fit = sum(item.points for item in model.fit if matches(item.condition, lead, context))
    engagement = 0
    for criterion in model.engagement:
        periods: dict[int, float] = defaultdict(float)
        for activity in activities:
            at = activity["occurred_at"]
            if activity["machine"] or activity["type"] not in criterion.activity_types:
                continue
            if at > now or (criterion.window is not None and at <= now - criterion.window):
                continue
            if criterion.condition is not None and not matches(
                criterion.condition, activity, context
            ):
                continue
            value = float(criterion.points)
            if criterion.half_life is not None:
                age = (now - at) / timedelta(days=1)
                value *= 0.5 ** (age / (criterion.half_life / timedelta(days=1)))
            period = 0
            if criterion.cap_per is not None:
                days = (at - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(days=1)
                period = math.floor(days / (criterion.cap_per / timedelta(days=1)))
            periods[period] += value
        if not periods:
            continue
        cap = criterion.cap

        def capped(value: float, cap: int | None = cap) -> float:
            if cap is None:
                return value
            return max(value, -cap) if value < 0 else min(value, cap)

        if criterion.cap_per is not None:
            total = sum(capped(value) for value in periods.values())
        else:
            total = capped(periods[0])
        engagement += half_away_from_zero(total)
    grade = None if model.grades is None else model.grades.grade(fit, engagement)
    return fit + engagement + lead["score_adjustment"], fit, engagement, grade


def naive_loop(
    engine: Engine, model: ScoringModel, ids: list[int], now: datetime
) -> dict[int, tuple[int, int, int, str | None]]:
    """The per-lead loop: each lead and its activities loaded by two queries, scored in
    Python; what the stored row should be, by lead id."""
    computed = {}
    with engine.connect() as connection:
        for lead_id in ids:
            lead = dict(
                connection.execute(select(LEADS).where(LEADS.c.id == lead_id)).one()._mapping
            )
            activities = [
                dict(row._mapping)
                for row in connection.execute(
                    select(ACTIVITIES).where(ACTIVITIES.c.lead_id == lead_id)
                )
            ]
            computed[lead_id] = naive_score(model, lead, activities, now)
    return computed


def stored(engine: Engine, ids: list[int]) -> dict[int, tuple[int, int, int, str | None]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                LEADS.c.id,
                LEADS.c.score,
                LEADS.c.score_fit,
                LEADS.c.score_engagement,
                LEADS.c.score_grade,
            ).where(LEADS.c.id.in_(ids))
        )
        return {
            row.id: (row.score, row.score_fit, row.score_engagement, row.score_grade)
            for row in rows
        }


def arrive(engine: Engine, leads: int, now: datetime, round_number: int) -> None:
    """An hour's new activities (pricing views and email opens) on leads spread over all."""
    rows = [
        {
            "external_id": f"N{round_number}-{index}",
            "lead_id": 1 + (index * 7919 + round_number * 104729) % leads,
            "type": "page_view" if index % 2 else "email_open",
            "properties": {"url": "/pricing"} if index % 2 else {},
            "machine": False,
            "occurred_at": now - timedelta(minutes=index % 60),
            "created_at": now - timedelta(minutes=index % 60),
        }
        for index in range(ARRIVALS_PER_HOUR)
    ]
    with engine.begin() as connection:
        connection.execute(ACTIVITIES.insert(), rows)


def sample_ids(leads: int, sample: int) -> list[int]:
    """``sample`` lead ids spread evenly over all, so every kind of lead is in it."""
    step = max(1, leads // sample)
    return list(range(1, leads + 1, step))[:sample]


def check_sample(engine: Engine, model: ScoringModel, ids: list[int], now: datetime) -> None:
    """The stored scores of the sampled leads equal the naive loop's, or the bench stops."""
    check_computed(engine, ids, naive_loop(engine, model, ids, now))


def check_computed(engine: Engine, ids: list[int], computed: dict[int, Any]) -> None:
    """The stored scores of the sampled leads equal ``computed``, or the bench stops."""
    wrong = {
        lead_id: (value, computed[lead_id])
        for lead_id, value in stored(engine, ids).items()
        if value != computed[lead_id]
    }
    if wrong:
        shown = list(wrong.items())[:10]
        msg = f"{len(wrong)} of {len(ids)} sampled leads differ from the naive loop (stored, naive): {shown}"
        raise SystemExit(msg)


FLOOR_COLUMNS = ("score", "score_fit", "score_engagement", "score_grade", "score_next_change_day")
"""What a pass writes on a lead (and ``scored_at``), kept before the model change for the floor."""


def keep_floor_values(engine: Engine) -> None:
    """Every lead's stored score, parts, grade and next change, in a table of their own (not a
    temporary one: the floor may run on another connection)."""
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS floor_values"))
        connection.execute(
            text(f"CREATE TABLE floor_values AS SELECT id, {', '.join(FLOOR_COLUMNS)} FROM leads")
        )
        if connection.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE floor_values ADD PRIMARY KEY (id)"))
            connection.execute(text("ANALYZE floor_values"))
        else:
            connection.execute(text("CREATE UNIQUE INDEX floor_values_id ON floor_values (id)"))


def write_floor(engine: Engine, now: datetime) -> int:
    """The floor (module docstring, (h)): the kept values put back on every lead whose stored
    ones differ, with a ``score_changes`` row each, by two plain statements in one
    transaction; how many leads it wrote. The table is dropped after."""
    differs = " OR ".join(f"l.{name} IS DISTINCT FROM f.{name}" for name in FLOOR_COLUMNS)
    postgres = engine.dialect.name == "postgresql"
    if not postgres:
        differs = differs.replace("IS DISTINCT FROM", "IS NOT")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO score_changes (lead_id, at, old_score, new_score, old_fit, new_fit,"
                " old_engagement, new_engagement, cause, model_version)"
                " SELECT l.id, :now, l.score, f.score, l.score_fit, f.score_fit,"
                " l.score_engagement, f.score_engagement, 'model', 'floor'"
                f" FROM leads l JOIN floor_values f ON f.id = l.id WHERE {differs}"
            ).bindparams(bindparam("now", now, UTCDateTime()))
        )
        written = connection.execute(
            text(
                "UPDATE leads AS l SET "
                + ", ".join(f"{name} = f.{name}" for name in FLOOR_COLUMNS)
                + f", scored_at = :now FROM floor_values f WHERE f.id = l.id AND ({differs})"
            ).bindparams(bindparam("now", now, UTCDateTime()))
        ).rowcount
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE floor_values"))
    return int(written)


def measure(
    engine: Engine,
    rule_set: RuleSet,
    clock_model: ScoringModel,
    leads: int,
    sample: int,
    rounds: int,
) -> dict[str, Any]:
    model = rule_set.active_scoring
    assert model is not None
    rule = next(rule for rule in rule_set.rules if rule.id == "mql-assignment")
    timings = {
        name: Timings(digits=2)
        for name in ("first", "steady", "unchanged", "full", "naive", "evaluation")
    }
    clock_timings = {name: Timings(digits=2) for name in ("changed", "clock")}
    changed: dict[str, list[int]] = defaultdict(list)
    due: dict[str, list[int]] = defaultdict(list)
    with timings["first"].measure():
        changed["first"].append(rescore(engine, model, NOW).changed)
    ids = sample_ids(leads, sample)
    mql = 0
    for round_number in range(1, rounds + 1):
        now = NOW + timedelta(hours=round_number)
        arrive(engine, leads, now, round_number)
        for name in ("steady", "unchanged"):
            with timings[name].measure():
                outcome = rescore(engine, model, now)
            changed[name].append(outcome.changed)
            if outcome.due is None:
                raise SystemExit(f"the {name} pass read every lead instead of those due")
            due[name].append(outcome.due)
        with timings["full"].measure():
            changed["full"].append(rescore(engine, model, now, full=True).changed)
        with timings["naive"].measure(leads / len(ids)):
            computed = naive_loop(engine, model, ids, now)
        check_computed(engine, ids, computed)
        where = and_(
            to_where(rule.condition, LEADS, EvaluationContext(now, {})),
            rule_scope(rule, LEADS, now),
        )
        with timings["evaluation"].measure(), engine.connect() as connection:
            mql = len(connection.execute(select(LEADS.c.id).where(where)).fetchall())
        print(
            "  round: "
            + ", ".join(f"{name} {t.wall[-1]:.2f} s" for name, t in timings.items())
            + f", changed {changed['steady'][-1]:,}/{changed['unchanged'][-1]:,}"
            + f"/{changed['full'][-1]:,}, due {due['steady'][-1]:,}/{due['unchanged'][-1]:,}"
            + f", load {os.getloadavg()[0]:.2f}",
            file=sys.stderr,
        )
    now = NOW + timedelta(hours=rounds + 1)
    keep_floor_values(engine)
    with clock_timings["changed"].measure():
        changed["changed"].append(rescore(engine, clock_model, now).changed)
    check_sample(engine, clock_model, ids, now)
    now += timedelta(hours=1)
    arrive(engine, leads, now, rounds + 1)
    with clock_timings["clock"].measure():
        changed["clock"].append(rescore(engine, clock_model, now).changed)
    check_sample(engine, clock_model, ids, now)
    print(
        "  clock model: "
        + ", ".join(f"{name} {t.wall[-1]:.2f} s" for name, t in clock_timings.items())
        + f", changed {changed['changed'][-1]:,}/{changed['clock'][-1]:,}"
        + f", load {os.getloadavg()[0]:.2f}",
        file=sys.stderr,
    )
    floor = Timings(digits=2)
    with floor.measure():
        changed["floor"].append(write_floor(engine, now))
    print(f"  floor: {floor}, {changed['floor'][-1]:,} written", file=sys.stderr)
    with engine.connect() as connection:
        activities = connection.execute(
            select(text("count(*)")).select_from(ACTIVITIES)
        ).scalar_one()
    return {
        "clock_timings": clock_timings,
        "floor": floor,
        "timings": timings,
        "changed": changed,
        "due": due,
        "mql": mql,
        "activities": activities,
        "sample": len(ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    configure_logging("warning")
    results = []
    postgres_version = None
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rule_set = load_rules(folder)
        clock_model = load_rules(folder, clock=True).active_scoring
        assert clock_model is not None
        if not args.skip_sqlite:
            url = f"sqlite:///{folder / 'bench.db'}"
            engine = create_store_engine(url, statement_timeout=3600)
            migrate(engine)
            started = time.perf_counter()
            fill_sqlite(engine, args.leads)
            print(f"sqlite: generated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            results.append(
                (
                    "SQLite",
                    measure(engine, rule_set, clock_model, args.leads, args.sample, args.rounds),
                )
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
                engine = create_store_engine(url, statement_timeout=3600)
                migrate(engine)
                started = time.perf_counter()
                fill_postgres(engine, args.leads)
                print(
                    f"postgres: generated in {time.perf_counter() - started:.1f} s", file=sys.stderr
                )
                results.append(
                    (
                        "PostgreSQL",
                        measure(
                            engine, rule_set, clock_model, args.leads, args.sample, args.rounds
                        ),
                    )
                )
                engine.dispose()
            finally:
                with admin.begin() as connection:
                    connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    print(
        f"\n{describe()}, PostgreSQL {postgres_version or 'not measured'}; load average "
        f"{os.getloadavg()[0]:.2f} at the end; bench took {time.perf_counter() - started_all:.0f} s"
    )
    print(
        f"Rescoring {args.leads:,} leads by rules/scoring.yaml (enabled): the first pass once, then "
        f"medians of {args.rounds} rounds an hour apart (min-max; CPU of this process)."
    )
    print(
        f"The naive loop (each lead and its activities loaded by two queries, scored in Python) "
        f"runs on {results[0][1]['sample']:,} leads spread over all, extrapolated to all leads; "
        "its results equal the stored scores exactly (checked every round).\n"
    )
    print(
        "| store | activities | first pass (all change) | steady pass an hour later (incremental) "
        "| pass with nothing changed (incremental) | full pass at that instant (as steady passes "
        "were) | naive per-lead loop (extrapolated) | evaluation of the MQL rule's WHERE "
        "| model changed (a fit criterion reading the clock added; the engagement criteria as "
        "they were) | with it, a pass an hour later | floor: the model change's rows written "
        "by plain SQL (one UPDATE, one INSERT) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results:
        t, changed, due = r["timings"], r["changed"], r["due"]
        naive, evaluation = t["naive"].median, t["evaluation"].median
        steady, first, unchanged = t["steady"].median, t["first"].median, t["unchanged"].median
        full, floor = t["full"].median, r["floor"].median
        print(
            f"| {name} | {r['activities']:,} "
            f"| {t['first']}, {changed['first'][0]:,} changed: {naive / first:.0f}x faster than naive, "
            f"{first / floor:.2f}x the floor "
            f"| {t['steady']}, {statistics.median(due['steady']):,.0f} due, "
            f"{statistics.median(changed['steady']):,.0f} changed: "
            f"{naive / steady:.0f}x faster than naive, {full / steady:.1f}x faster than the full "
            f"pass, {steady / evaluation:.2f}x the evaluation "
            f"| {t['unchanged']}, {max(due['unchanged']):,} due, {max(changed['unchanged']):,} "
            f"changed: {unchanged / evaluation:.2f}x the evaluation "
            f"| {t['full']}, {max(changed['full']):,} changed "
            f"| {t['naive']} "
            f"| {t['evaluation']}, {r['mql']:,} match "
            f"| {r['clock_timings']['changed']}, {changed['changed'][0]:,} changed: "
            f"{r['clock_timings']['changed'].median / floor:.2f}x the floor "
            f"| {r['clock_timings']['clock']}, {changed['clock'][0]:,} changed: "
            f"{r['clock_timings']['clock'].median / evaluation:.2f}x the evaluation "
            f"| {r['floor']}, {changed['floor'][0]:,} leads and history rows |"
        )


if __name__ == "__main__":
    main()
