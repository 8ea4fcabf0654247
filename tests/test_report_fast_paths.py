"""The report's fast paths equal the definitions they replaced, on generated histories.

The cohort conversions are one grouped pass per lead over the period's entries (the times of
each lead's first and last entries, the ids read at ties), and the percentiles group only the
ranks they read; the previous queries (one pair at a time, with two window sorts; every ranked
value grouped) are kept below as the reference. Each seed writes a random stage history to
SQLite and PostgreSQL, with what makes the definitions delicate: entries at the same instant
(ordered by id), rows recorded out of time order, owner changes that are not entries,
re-entries, and times before, in and after the period.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    Connection,
    Engine,
    Float,
    Select,
    Subquery,
    and_,
    case,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
)

from leadflow.funnel import sql, stages
from leadflow.funnel.history import is_entry, stays
from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.sql import instant, quantiles
from leadflow.funnel.stages import (
    Conversion,
    _group,
    _within,
    conversions,
    conversions_and_requalified,
    entries_by_stage,
    requalified,
)
from leadflow.store.stage_history import change_row
from leadflow.store.tables import LEADS, REPS, STAGE_CHANGES
from leadflow.store.types import days_between

START = datetime(2026, 3, 2, tzinfo=UTC)
END = START + timedelta(days=14)
STAGES = ("lead", "mql", "sql", "opportunity", "customer", "recycled", "disqualified")
PAIRS = list(itertools.pairwise(STAGES[:5]))
# Few distinct instants, so that entries of one lead often share one (then id decides).
INSTANTS = [START + timedelta(days=d) for d in (-6, -1, 0, 0.5, 3, 3, 7, 13.9, 14, 20)]


def seed(engine: Engine, rnd: random.Random, leads: int) -> None:
    rows: list[dict[str, Any]] = []
    for lead_id in range(1, leads + 1):
        stage: str | None = None
        for _ in range(rnd.randint(1, 7)):
            owner = rnd.choice((None, 1, 2))
            # Now and then an owner change (same stage): not an entry.
            new = stage if stage is not None and rnd.random() < 0.2 else rnd.choice(STAGES)
            rows.append(
                change_row(
                    lead_id=lead_id, at=rnd.choice(INSTANTS), from_stage=stage, to_stage=new,
                    cause="rule", to_owner_id=owner,
                )
            )  # fmt: skip
            stage = new
    rnd.shuffle(rows)  # ids out of time order, as an import of old history records them
    moment = START - timedelta(days=30)
    rep = {"timezone": "UTC", "active": True, "created_at": moment, "updated_at": moment}
    with engine.begin() as connection:
        connection.execute(
            insert(REPS),
            [
                {**rep, "id": n, "external_id": f"r{n}", "name": f"Rep {n}",
                 "email": f"r{n}@x.test", "pools": ["east"]}
                for n in (1, 2)
            ],
        )  # fmt: skip
        connection.execute(
            insert(LEADS),
            [
                {"id": n, "external_id": f"L{n}", "stage": "lead", "score": 0,
                 "attributes": {"source": rnd.choice(("ads", "seo"))} if n % 3 else {},
                 "created_at": moment, "updated_at": moment, "stage_entered_at": moment}
                for n in range(1, leads + 1)
            ],
        )  # fmt: skip
        connection.execute(insert(STAGE_CHANGES), rows)


def previous_cohort(
    connection: Connection, period: Period, low: str, high: str
) -> list[Conversion]:
    """The cohort conversion as it was computed before the one-pass version: one pair at a
    time, the first entry into ``low`` and the last into ``high`` each by a window."""
    changes = STAGE_CHANGES.c
    first = (
        select(
            changes.lead_id.label("subject_id"),
            changes.id,
            changes.at.label("entered"),
            changes.to_owner_id.label("owner_id"),
            func.row_number()
            .over(partition_by=changes.lead_id, order_by=(changes.at, changes.id))
            .label("nth"),
        )
        .where(
            changes.lead_id.is_not(None),
            changes.to_stage == low,
            is_entry(),
            _within(changes.at, period),
        )
        .subquery("cohort")
    )
    # The latest entry into ``high`` before the end, per lead: one pass over the (to_stage, at)
    # index joined to the cohort, where a correlated EXISTS made SQLite scan every ``high``
    # entry for each lead. The latest entry is after the cohort's entry if any one is.
    last = (
        select(
            changes.lead_id,
            changes.id,
            changes.at,
            func.row_number()
            .over(partition_by=changes.lead_id, order_by=(changes.at.desc(), changes.id.desc()))
            .label("nth"),
        )
        .where(
            changes.lead_id.is_not(None),
            changes.to_stage == high,
            is_entry(),
            changes.at < instant(period.end),
        )
        .subquery("reached")
    )
    # One row per lead by aggregation (a sort), where a join of the two let SQLite scan one
    # side for each row of the other.
    rows = union_all(
        select(
            first.c.subject_id.label("lead_id"),
            first.c.entered.label("at"),
            first.c.id,
            first.c.owner_id,
            literal(0).label("side"),
        ).where(first.c.nth == 1),
        select(last.c.lead_id, last.c.at, last.c.id, literal(None), literal(1)).where(
            last.c.nth == 1
        ),
    ).subquery("sides")

    def on(side: int, column: Any) -> Any:
        return func.max(case((rows.c.side == side, column), else_=None))

    per_lead = (
        select(
            rows.c.lead_id.label("subject_id"),
            on(0, rows.c.at).label("entered"),
            on(0, rows.c.id).label("id"),
            on(0, rows.c.owner_id).label("owner_id"),
            on(1, rows.c.at).label("last_at"),
            on(1, rows.c.id).label("last_id"),
        )
        .group_by(rows.c.lead_id)
        .subquery("per_lead")
    )
    reached = or_(
        per_lead.c.last_at > per_lead.c.entered,
        and_(per_lead.c.last_at == per_lead.c.entered, per_lead.c.last_id > per_lead.c.id),
    )
    grp = _group(connection, period, per_lead, per_lead.c.entered)
    query = (
        select(grp, func.count(), func.sum(case((reached, 1), else_=0)))
        .where(per_lead.c.entered.is_not(None))
        .group_by(grp)
    )
    return [
        Conversion(row[0], "cohort", low, high, int(row[1]), int(row[2] or 0))
        for row in connection.execute(query)
    ]


def previous_quantiles(
    values: Subquery,
    groups: Sequence[str],
    value: str,
    percents: Sequence[int],
    sums: Sequence[str],
) -> Select[Any]:
    """The percentiles as they were computed before: every ranked value grouped."""
    keys = [values.c[name] for name in groups]
    ranked = select(
        *keys,
        *(values.c[name] for name in sums),
        values.c[value].label("v"),
        func.row_number().over(partition_by=keys, order_by=values.c[value]).label("rn"),
        func.count().over(partition_by=keys).label("n"),
    ).subquery()
    columns: list[Any] = [ranked.c[name] for name in groups]
    columns.append(func.count().label("size"))
    for percent in percents:
        steps = (ranked.c.n - 1) * percent
        low = steps // 100 + 1
        fraction = cast(steps % 100, Float) / 100.0
        # percentile_cont's interpolation as PostgreSQL writes it: low + (high - low) x frac.
        lower = func.max(case((ranked.c.rn == low, ranked.c.v)))
        upper = func.coalesce(func.max(case((ranked.c.rn == low + 1, ranked.c.v))), lower)
        columns.append((lower + func.max(fraction) * (upper - lower)).label(f"q{percent}"))
    columns += [func.sum(ranked.c[name]).label(name) for name in sums]
    return select(*columns).group_by(*(ranked.c[name] for name in groups))


def _sorted(found: list[Conversion]) -> list[Conversion]:
    return sorted(found, key=lambda c: (c.from_stage, c.to_stage, c.group))


@pytest.mark.parametrize("seed_value", [1, 2, 3, 4])
@pytest.mark.slow
def test_cohorts_equal_the_previous_definition(engine: Engine, seed_value: int) -> None:
    """Every pair's cohort conversion and the re-qualified, by each grouping that reads the
    cohort's entry (none, source, rep: its owner, week: its time), equal the previous query's,
    on a random history of 80 leads."""
    seed(engine, random.Random(seed_value), 80)
    with engine.connect() as connection:
        for by in (Grouping.none, Grouping.source, Grouping.rep, Grouping.week):
            period = Period(START, END, by)
            fast = [c for c in conversions(connection, period, PAIRS) if c.kind == "cohort"]
            reference = [
                c for low, high in PAIRS for c in previous_cohort(connection, period, low, high)
            ]
            assert _sorted(fast) == _sorted(reference)
            assert sum(c.base for c in fast) > 0
            again = requalified(connection, period, "recycled", "mql")
            assert _sorted(again) == _sorted(previous_cohort(connection, period, "recycled", "mql"))
            counts = entries_by_stage(connection, period)
            together = conversions_and_requalified(
                connection, period, PAIRS, ("recycled", "mql"), counts
            )
            assert together == (conversions(connection, period, PAIRS, counts=counts), again)


LAYOUTS = {
    # The groups, which of them are numbered (SQLite folds those into its sort key), and the
    # instant the days are counted to (before the middle of the history: some are negative).
    "text groups": (["stage", "part"], {}, END),
    "one numbered": (["stage", "part"], {"part": 3}, END),
    "all numbered, negative days": (["code", "part"], {"code": len(STAGES), "part": 3}, START),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("buckets", [0.01, 1, 24, 1000])
@pytest.mark.parametrize("seed_value", [1, 2])
def test_percentiles_equal_the_previous_definition(
    engine: Engine, seed_value: int, buckets: float, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The median, p90 and sums of flags per group, read from the ranks around them in the
    buckets that hold those ranks, equal those of every ranked value grouped, over the stays of
    a random history (ties in days included), whether every value shares one bucket (0.01 per
    day), a few share one, or most have their own; with text groups, or some or all numbered
    (on SQLite one whole number with the bucket and the flags, negative with a negative day)."""
    monkeypatch.setattr(sql, "BUCKETS_PER_UNIT", buckets)
    groups, numbered, origin = LAYOUTS[layout]
    seed(engine, random.Random(seed_value), 80)
    with engine.connect() as connection:
        dialect = connection.dialect.name
        every = stays("lead", END, dialect)
        values = select(
            every.c.stage,
            case({name: number for number, name in enumerate(STAGES)}, value=every.c.stage).label(
                "code"
            ),
            (every.c.subject_id % 3).label("part"),
            days_between(dialect, instant(origin), every.c.entered).label("days"),
            case((every.c.left_at.is_(None), 1), else_=0).label("still"),
            case((every.c.entered >= instant(START), 1), else_=0).label("late"),
        ).subquery("values")
        sums = ["still", "late"]
        fast = quantiles(
            values, groups, "days", [50, 90], sums=sums, dialect=dialect, numbered=numbered
        )
        reference = previous_quantiles(values, groups, "days", [50, 90], sums)
        found = sorted(tuple(row) for row in connection.execute(fast))
        expected = sorted(tuple(row) for row in connection.execute(reference))
    assert found == expected
    assert len(found) > 10
    if origin == START:
        assert min(row[3] for row in found) < 0 < max(row[4] for row in found)  # q50, q90


@pytest.mark.parametrize("before", [START, START + timedelta(days=3), END, END + timedelta(days=7)])
@pytest.mark.parametrize("seed_value", [1, 2, 3])
@pytest.mark.parametrize("excluding", [(), ("customer", "recycled")])
def test_looked_up_stays_equal_the_window(
    engine: Engine, seed_value: int, before: datetime, excluding: tuple[str, ...]
) -> None:
    """SQLite's stays, each entry looking the next one up on the history index, are the
    window's (the next entry in the order of time then id, before ``before``), over random
    histories with entries at one instant, ids out of time order and owner changes; with
    stages excluded, their entries are not stays but still end the stays before them."""
    seed(engine, random.Random(seed_value), 80)
    with engine.connect() as connection:
        looked_up = stays("lead", before, "sqlite", excluding=excluding)
        window = stays("lead", before, "postgresql", excluding=excluding)
        found = sorted(tuple(row) for row in connection.execute(select(looked_up)))
        expected = sorted(tuple(row) for row in connection.execute(select(window)))
    assert found == expected
    assert sum(row[-1] is None for row in found) > 3
    assert sum(row[-1] is not None for row in found) > 3
    assert not any(row[2] in excluding for row in found)


def previous_entries_by_week(connection: Connection, period: Period) -> dict[tuple[str, str], int]:
    """The entries by week as counted before: each entry's week from its time, then grouped."""
    changes = STAGE_CHANGES.c
    week = sql.week_of(connection.dialect.name, changes.at)
    query = (
        select(week, changes.to_stage, func.count())
        .where(changes.lead_id.is_not(None), is_entry(), _within(changes.at, period))
        .group_by(week, changes.to_stage)
    )
    return {(row[0], row[1]): int(row[2]) for row in connection.execute(query)}


@pytest.mark.parametrize("seed_value", [1, 2])
def test_entries_by_week_equal_the_previous_definition(
    engine: Engine, seed_value: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entries per week and stage, each week counted over its own range, equal each
    entry's week worked out and grouped: for periods starting and ending mid-week (to the
    microsecond), within one day, empty, and spanning years (a few weeks per statement)."""
    monkeypatch.setattr(stages, "WEEKS_PER_STATEMENT", 3)
    seed(engine, random.Random(seed_value), 80)
    spans = [
        (START, END),
        (START + timedelta(days=2, hours=13, microseconds=5), END + timedelta(days=3)),
        (START - timedelta(days=6, hours=1), START + timedelta(hours=1)),
        (START + timedelta(days=3), START + timedelta(days=3)),
        (START - timedelta(days=400), END + timedelta(days=30)),
    ]
    with engine.connect() as connection:
        for low, high in spans:
            period = Period(low, high, Grouping.week)
            found = entries_by_stage(connection, period)
            assert found == previous_entries_by_week(connection, period)
        assert sum(found.values()) > 50
