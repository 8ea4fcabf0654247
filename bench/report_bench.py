"""Report benchmark: ``build_report`` over N leads with their stage history, on SQLite and
PostgreSQL, beside a naive pure-Python loop over the same rows in the same run.

    .venv/bin/python bench/report_bench.py [--leads N] [--stores sqlite,postgresql] [--families]
        [--rounds 3] [--keep FOLDER]

The store gets N leads (default 1,000,000), each with one to four stage entries over 26 weeks
(about 2.2 N ``stage_changes`` rows), a deal for every tenth lead (half of them won, a quarter
lost) and an SLA timer for every fifth (filling is not timed). Then the report of one quarter
is built (every family: entries, cohort and period conversion, time in stage with percentiles,
pipeline, SLA compliance, attribution, weekly conversion), and the naive loop computes a part
of it (entries per stage, median days in stage, win rate and average won cycle per product) by
reading every history and deal row into Python; the two alternate for ``--rounds`` rounds on the
same store, and each is printed as the median of its rounds with their range. Both are printed with the machine's
load average, since the machine may be shared. With ``--families``, each metric family is then
timed on its own too (in one transaction, as the report runs them), with the process's CPU
time beside the wall time: on SQLite the queries run in this process, so the CPU time says what
the work costs when other processes slow the wall clock down.

PostgreSQL is ``LEADFLOW_BENCH_PG_URL`` (default: the local server's ``test`` database), in a
schema of its own, dropped afterwards.

With ``--keep FOLDER`` the stores are filled once and kept for the next run (filling a million
leads takes minutes, longer than the timings): the SQLite file ``FOLDER/report_bench_N.db`` and
the PostgreSQL schema ``lf_bench_keep_N`` are reused when they exist, and left in place.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe
from bench.scratch import scratch_store
from leadflow.config import load_settings
from leadflow.engine.batch_writes import _insert
from leadflow.engine.business_hours import calendar_named
from leadflow.funnel.attribution import attribution
from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.pipeline import open_value_by_stage, pipeline
from leadflow.funnel.report import DEAL_OUTCOMES, RECYCLED, build_report
from leadflow.funnel.sla import sla_compliance
from leadflow.funnel.snapshot import report_read
from leadflow.funnel.stages import conversions, conversions_and_requalified, entries_and_weekly
from leadflow.funnel.time_in_stage import stage_times
from leadflow.store.database import create_store_engine, migrate
from leadflow.store.tables import (
    DEALS,
    LEADS,
    REPS,
    SLA_TIMERS,
    STAGE_CHANGES,
)

PG_URL = os.environ.get(
    "LEADFLOW_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
START = datetime(2026, 1, 5, tzinfo=UTC)
PATH = ("lead", "mql", "sql", "opportunity")
CHUNK = 50_000


def fill(engine: Engine, leads: int) -> int:
    """Write the leads, their history, deals and timers; return the history's row count."""
    rnd = random.Random(15)
    history_rows = 0
    with Session(engine) as session, session.begin():
        _insert(session, REPS, [_rep(n) for n in range(1, 21)])
    for first in range(1, leads + 1, CHUNK):
        ids = range(first, min(first + CHUNK, leads + 1))
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for lead_id in ids:
            _lead(rnd, lead_id, rows)
        with Session(engine) as session, session.begin():
            _insert(session, LEADS, rows["leads"])
            _insert(session, STAGE_CHANGES, rows["history"])
            _insert(session, DEALS, rows["deals"])
            _insert(session, SLA_TIMERS, rows["timers"])
        history_rows += len(rows["history"])
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("ANALYZE leads, stage_changes, deals, sla_timers"))
    return history_rows


def _rep(n: int) -> dict[str, Any]:
    return {
        "id": n,
        "external_id": f"r{n}",
        "name": f"Rep {n}",
        "email": f"r{n}@x.test",
        "pools": ["east" if n % 2 else "west"],
        "timezone": "UTC",
        "active": True,
        "capacity": None,
        "manager_id": None,
        "out_of_office_until": None,
        "source_hash": None,
        "created_at": START,
        "updated_at": START,
    }


def _lead(rnd: random.Random, lead_id: int, rows: dict[str, list[dict[str, Any]]]) -> None:
    at = START + timedelta(hours=rnd.uniform(0, 24 * 182))
    owner = rnd.randint(1, 20)
    steps = rnd.choice((1, 1, 2, 2, 3, 4))
    source = rnd.choice(("ads", "seo", "webinar", "referral"))
    rows["leads"].append(
        {
            "id": lead_id,
            "external_id": f"L{lead_id}",
            "stage": PATH[steps - 1],
            "stage_entered_at": at,
            "score": 0,
            "score_adjustment": 0,
            "attributes": {"source": source},
            "first_source": source,  # this bulk write passes no column default
            "owner_id": owner if steps > 1 else None,
            "unsubscribed": False,
            "do_not_email": False,
            "hard_bounced": False,
            "created_at": at,
            "updated_at": at,
        }
    )
    previous: str | None = None
    for stage in PATH[:steps]:
        rows["history"].append(
            {
                "lead_id": lead_id,
                "deal_id": None,
                "at": at,
                "from_stage": previous,
                "to_stage": stage,
                "from_owner_id": None,
                "to_owner_id": owner if stage != "lead" else None,
                "cause": "import",
                "rule_id": None,
                "source": None,
            }
        )
        if stage == "mql" and lead_id % 5 == 0:
            rows["timers"].append(_timer(rnd, lead_id, owner, at))
        previous = stage
        at += timedelta(days=rnd.expovariate(1 / 7))
    if lead_id % 10 == 0:
        rows["deals"].append(_deal(rnd, lead_id, owner, at))


def _timer(rnd: random.Random, lead_id: int, owner: int, at: datetime) -> dict[str, Any]:
    touched = at + timedelta(hours=rnd.expovariate(1 / 5))
    status = "met" if touched < at + timedelta(hours=4) else "met_late"
    return {
        "lead_id": lead_id,
        "name": "first_touch",
        "rule_id": "mql",
        "rule_version": "v1",
        "owner_id": owner,
        "started_at": at,
        "due_at": at + timedelta(hours=4),
        "calendar": "default",
        "ladder": [],
        "met_by": {},
        "level": 0,
        "next_escalation_at": None,
        "status": status,
        "closed_at": touched,
        "close_reason": "the owner acted"
        if status == "met"
        else "the owner acted after the due time",
    }


def _deal(rnd: random.Random, lead_id: int, owner: int, at: datetime) -> dict[str, Any]:
    outcome = rnd.choice(("won", "won", "lost", None))
    return {
        "external_id": f"D{lead_id}",
        "lead_id": lead_id,
        "account": None,
        "product": rnd.choice(("GTX Basic", "GTX Pro", "MG Special")),
        "owner_id": owner,
        "stage": outcome.title() if outcome else "Engaging",
        "outcome": outcome,
        "amount": float(rnd.choice((500, 1200, 4800))),
        "engaged_at": at,
        "closed_at": at + timedelta(days=rnd.uniform(5, 60)) if outcome else None,
        "last_activity_at": None,
        "attributes": {},
        "recycle_reason": None,
        "source_hash": None,
        "created_at": at,
        "updated_at": at,
    }


def naive(engine: Engine, period: Period) -> dict[str, Any]:
    """A part of the report the way a script would: every row into Python, then loops."""
    entries: dict[str, int] = defaultdict(int)
    by_lead: dict[int, list[tuple[datetime, int, str]]] = defaultdict(list)
    with engine.connect() as connection:
        changes = STAGE_CHANGES.c
        for lead_id, change_id, at, stage in connection.execute(
            select(changes.lead_id, changes.id, changes.at, changes.to_stage)
        ):
            by_lead[lead_id].append((at, change_id, stage))
        closed = list(
            connection.execute(
                select(DEALS.c.product, DEALS.c.outcome, DEALS.c.engaged_at, DEALS.c.closed_at)
            )
        )
    stays: dict[str, list[float]] = defaultdict(list)
    for rows in by_lead.values():
        rows.sort()
        for index, (at, _id, stage) in enumerate(rows):
            if period.start <= at < period.end:
                entries[stage] += 1
            if index + 1 < len(rows):
                left = rows[index + 1][0]
                if period.start <= left < period.end:
                    stays[stage].append((left - at).total_seconds() / 86400)
    products: dict[str, list[Any]] = defaultdict(lambda: [0, 0, []])
    for product, outcome, engaged, closed_at in closed:
        if closed_at is None or not period.start <= closed_at < period.end:
            continue
        line = products[product]
        if outcome == "won":
            line[0] += 1
            line[2].append((closed_at - engaged).total_seconds() / 86400)
        elif outcome == "lost":
            line[1] += 1
    return {
        "entries": dict(entries),
        "medians": {stage: statistics.median(days) for stage, days in stays.items()},
        "products": {p: (w / (w + lo), sum(c) / len(c)) for p, (w, lo, c) in products.items()},
    }


def families(engine: Engine, settings: Any, period: Period) -> str:
    """Each family of the report timed alone, on a connection set as the report's are
    (:func:`~leadflow.funnel.snapshot.report_read`): ``name wall s (cpu s)``. The entries are
    counted with the weekly ones, as the report counts them, and the conversions and weekly
    conversions reuse those counts."""
    stages = settings.stages
    order = stages.progression
    pairs = list(itertools.pairwise(order))
    weekly = Period(period.start, period.end, Grouping.week)
    counted: dict[str, dict[tuple[str, str], int]] = {}

    def entries(c: Connection) -> None:
        counted["period"], counted["weeks"] = entries_and_weekly(c, period)

    steps: dict[str, Callable[[Connection], object]] = {
        "entries (and weekly)": entries,
        "conversion and re-qualified": lambda c: conversions_and_requalified(
            c, period, pairs, (RECYCLED, stages.mql), counted["period"]
        ),
        "time in stage": lambda c: (
            stage_times(c, period, "lead", (order[-1], "disqualified")),
            stage_times(c, period, "deal", DEAL_OUTCOMES),
        ),
        "pipeline": lambda c: (pipeline(c, period), open_value_by_stage(c, period)),
        "SLA": lambda c: sla_compliance(c, period, lambda name: calendar_named(settings, name)),
        "attribution": lambda c: attribution(c, period, stages.mql),
        "weekly": lambda c: conversions(c, weekly, pairs, counts=counted["weeks"], cohorts=False),
    }
    timed = []
    with report_read(engine) as connection:
        for name, step in steps.items():
            began, cpu = time.perf_counter(), time.process_time()
            step(connection)
            wall, used = time.perf_counter() - began, time.process_time() - cpu
            timed.append(f"{name} {wall:.2f} s (cpu {used:.2f} s)")
    return ", ".join(timed)


@contextmanager
def kept_store(kind: str, folder: Path, leads: int) -> Iterator[tuple[Engine, bool]]:
    """The store ``--keep`` names for ``kind`` and ``leads``, migrated, and whether it was there
    already (filled by an earlier run: a run stopped while filling leaves a partial store,
    which is to be removed by hand)."""
    if kind == "sqlite":
        path = folder / f"report_bench_{leads}.db"
        existed = path.exists()
        engine = create_store_engine(f"sqlite:///{path}")
    else:
        schema = f"lf_bench_keep_{leads}"
        url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        engine = create_store_engine(url.render_as_string(hide_password=False))
        with engine.begin() as connection:
            existed = schema in inspect(connection).get_schema_names()
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    try:
        migrate(engine)
        yield engine, existed
    finally:
        engine.dispose()


@contextmanager
def store_for(kind: str, keep: Path | None, leads: int) -> Iterator[tuple[Engine, bool]]:
    """A scratch store, or the kept one with ``keep``; and whether it holds the leads already."""
    if keep is not None:
        with kept_store(kind, keep, leads) as found:
            yield found
        return
    with scratch_store(None if kind == "sqlite" else PG_URL, "lf_bench") as engine:
        yield engine, False


def _history_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(STAGE_CHANGES)).scalar_one())


def _spread(seconds: list[float]) -> str:
    """The median of the rounds, with their range."""
    return f"{statistics.median(seconds):.2f} s ({min(seconds):.2f}-{max(seconds):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--families", action="store_true", help="also time each family alone")
    parser.add_argument("--rounds", type=int, default=3, help="reports and loops, alternating")
    parser.add_argument("--keep", type=Path, help="fill the stores once, keep them in FOLDER")
    args = parser.parse_args()
    settings = load_settings(None, env={}, overrides={}).settings
    period = Period(START + timedelta(weeks=8), START + timedelta(weeks=21))
    print(f"# {describe()}; {args.leads:,} leads")
    for kind in args.stores.split(","):
        with store_for(kind, args.keep, args.leads) as (engine, kept):
            began = time.perf_counter()
            history = _history_rows(engine) if kept else fill(engine, args.leads)
            filled = (
                f"kept, counted in {time.perf_counter() - began:.0f} s"
                if kept
                else (f"filled in {time.perf_counter() - began:.0f} s")
            )
            load = Path("/proc/loadavg").read_text().split()[:3]
            walls: list[float] = []
            cpus: list[float] = []
            loops: list[float] = []
            for _round in range(args.rounds):  # the report and the loop alternate
                began, cpu = time.perf_counter(), time.process_time()
                report = build_report(engine, settings, period, period.end)
                walls.append(time.perf_counter() - began)
                cpus.append(time.process_time() - cpu)
                began = time.perf_counter()
                naive(engine, period)
                loops.append(time.perf_counter() - began)
            load_after = Path("/proc/loadavg").read_text().split()[:3]
            print(
                f"{kind}: {history:,} history rows ({filled}); report "
                f"{_spread(walls)}, cpu {_spread(cpus)} ({len(report.conversions)} conversions, "
                f"{len(report.lead_times)} stage times, {len(report.sla)} SLA lines); naive loop "
                f"(a part of it) {_spread(loops)}; report/loop by round "
                f"{', '.join(f'{w / n:.2f}x' for w, n in zip(walls, loops, strict=True))}; "
                f"load {' '.join(load)} -> {' '.join(load_after)}"
            )
            if args.families:
                load = Path("/proc/loadavg").read_text().split()[:3]
                print(
                    f"  {kind} by family: {families(engine, settings, period)}; load {' '.join(load)}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
