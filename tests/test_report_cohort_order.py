"""Cohort conversions where the order of a lead's entries is delicate, against hand counts.

The cohort pass compares the times of a lead's first entry into A and last into B, and looks
the entries' ids up only when the two share an instant; it reads only the period's entries,
and nothing for a stage without an entry in the period. So each case below is one of those:
two entries at the same instant (the one recorded first is first), a history imported with
past times after newer rows (time decides, not id), an entry into B before the period, a B
entered only after the period's end, a first stage nobody entered. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select

from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.stages import (
    _cohorts,
    conversions,
    conversions_and_requalified,
    entries_by_stage,
    requalified,
)
from leadflow.store.stage_history import change_row
from leadflow.store.tables import LEADS, REPS, STAGE_CHANGES

T = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
END = T + timedelta(days=14)
OLD = T - timedelta(days=30)
DAY = timedelta(days=1)
PAIRS = list(itertools.pairwise(("subscriber", "lead", "mql", "sql", "opportunity", "customer")))
RITA, RAJ = 1, 2

# Each lead's rows in the order they are recorded (ids increase down the list):
# (to_stage, from_stage, at, owner on entry).
HISTORIES: dict[int, list[tuple[str, str | None, datetime, int | None]]] = {
    # lead, then mql, at the same instant: the mql entry is recorded after, so it is after.
    1: [("lead", None, T, None), ("mql", "lead", T, None)],
    # mql recorded before lead at the same instant: no mql entry after the lead entry.
    2: [("mql", None, T, None), ("lead", "mql", T, None)],
    # Imported history, past times recorded after newer ones: mql (day 2) before lead (day 1)
    # by id, after it by time; sql day 3, opportunity day 5, customer after the period's end.
    3: [
        ("mql", "lead", T + 2 * DAY, RITA),
        ("lead", None, T + DAY, RITA),
        ("sql", "mql", T + 3 * DAY, RITA),
        ("opportunity", "sql", T + 5 * DAY, RITA),
        ("customer", "opportunity", END + DAY, RITA),
    ],
    # An mql entry before the period only: not after the lead entry of day 1.
    4: [("mql", None, T - 3 * DAY, None), ("lead", "mql", T + DAY, None)],
    # Three entries at one instant: lead (Raj), mql, lead again (Rita). The first lead entry
    # is Raj's, and the mql entry was recorded after it (before the second lead entry).
    5: [
        ("lead", None, T + 4 * DAY, RAJ),
        ("mql", "lead", T + 4 * DAY, RAJ),
        ("lead", "mql", T + 4 * DAY, RITA),
    ],
    # Recycled recorded after the mql entry at the same instant: not re-qualified.
    6: [("mql", None, T + 6 * DAY, None), ("recycled", "mql", T + 6 * DAY, None)],
    # Recycled on day 7, an MQL again on day 8 (the period's second week): re-qualified.
    7: [("recycled", None, T + 7 * DAY, None), ("mql", "recycled", T + 8 * DAY, None)],
}


def seed(engine: Engine) -> None:
    rep = {"timezone": "UTC", "active": True, "created_at": OLD, "updated_at": OLD}
    with engine.begin() as connection:
        connection.execute(
            insert(REPS),
            [
                {**rep, "id": RITA, "external_id": "r1", "name": "Rita", "email": "r@x.test",
                 "pools": ["east"]},
                {**rep, "id": RAJ, "external_id": "r2", "name": "Raj", "email": "j@x.test",
                 "pools": ["west"]},
            ],
        )  # fmt: skip
        connection.execute(
            insert(LEADS),
            [
                {"id": n, "external_id": f"L{n}", "stage": "lead", "score": 0,
                 "attributes": {"source": "ads" if n % 2 else "seo"}, "created_at": OLD,
                 "updated_at": OLD, "stage_entered_at": OLD}
                for n in HISTORIES
            ],
        )  # fmt: skip
        for lead_id, rows in HISTORIES.items():
            for to_stage, from_stage, at, owner in rows:  # one by one: ids in this order
                connection.execute(
                    insert(STAGE_CHANGES),
                    change_row(
                        lead_id=lead_id, at=at, from_stage=from_stage, to_stage=to_stage,
                        cause="import", to_owner_id=owner,
                    ),
                )  # fmt: skip


def _cohort(found: list[Any]) -> dict[tuple[str, str, str], tuple[int, int]]:
    return {
        (c.group, c.from_stage, c.to_stage): (c.base, c.converted)
        for c in found
        if c.kind == "cohort"
    }


def test_ids_decide_only_at_the_same_instant(engine: Engine) -> None:
    """lead -> mql: of L1-L5, L1 (mql recorded after, same instant), L3 (later by time,
    earlier by id) and L5 (mql recorded after its first lead entry) converted; L2 (mql
    recorded before) and L4 (mql before the period) did not. mql -> sql: of L1 L2 L3 L5 L6
    L7, L3. sql -> opportunity: L3. opportunity -> customer: L3, not converted (its customer
    entry is after the end; nobody entered customer in the period). subscriber -> lead: no
    line (nobody entered subscriber). Re-qualified: of L6 L7, L7."""
    seed(engine)
    with engine.connect() as connection:
        # The ids are in the order the rows were listed (L3's mql before its lead entry).
        by_id = select(STAGE_CHANGES.c.to_stage).order_by(STAGE_CHANGES.c.id)
        found_order = connection.execute(by_id.where(STAGE_CHANGES.c.lead_id == 3)).scalars()
        assert list(found_order) == ["mql", "lead", "sql", "opportunity", "customer"]
        period = Period(T, END)
        expected = {
            ("all", "lead", "mql"): (5, 3),
            ("all", "mql", "sql"): (6, 1),
            ("all", "sql", "opportunity"): (1, 1),
            ("all", "opportunity", "customer"): (1, 0),
        }
        assert _cohort(conversions(connection, period, PAIRS)) == expected
        again = requalified(connection, period, "recycled", "mql")
        assert [(c.group, c.base, c.converted) for c in again] == [("all", 2, 1)]
        counts = entries_by_stage(connection, period)
        found, together = conversions_and_requalified(
            connection, period, PAIRS, ("recycled", "mql"), counts
        )
        assert (_cohort(found), together) == (expected, again)
        # Not knowing which stages were entered (every pair read) gives the same lines.
        assert _cohorts(connection, period, PAIRS) == _cohorts(
            connection, period, PAIRS, {stage for _group, stage in counts}
        )


def test_the_first_entrys_owner_and_week(engine: Engine) -> None:
    """By rep, a cohort goes to the owner of the first entry: L5's first lead entry is Raj's
    (the second, at the same instant, Rita's); L3's is Rita's; L1 L2 L4 had no owner. By week,
    to the week of the first entry: L7's mql and recycled entries are in the second week."""
    seed(engine)
    with engine.connect() as connection:
        by_rep = conversions(connection, Period(T, END, Grouping.rep), PAIRS)
        assert _cohort(by_rep) == {
            ("(none)", "lead", "mql"): (3, 1),
            ("Rita", "lead", "mql"): (1, 1),
            ("Raj", "lead", "mql"): (1, 1),
            ("(none)", "mql", "sql"): (4, 0),
            ("Rita", "mql", "sql"): (1, 1),
            ("Raj", "mql", "sql"): (1, 0),
            ("Rita", "sql", "opportunity"): (1, 1),
            ("Rita", "opportunity", "customer"): (1, 0),
        }
        by_week = Period(T, END, Grouping.week)
        assert _cohort(conversions(connection, by_week, PAIRS)) == {
            ("2026-03-02", "lead", "mql"): (5, 3),
            ("2026-03-02", "mql", "sql"): (5, 1),
            ("2026-03-09", "mql", "sql"): (1, 0),
            ("2026-03-02", "sql", "opportunity"): (1, 1),
            ("2026-03-02", "opportunity", "customer"): (1, 0),
        }
        again = requalified(connection, by_week, "recycled", "mql")
        assert [(c.group, c.base, c.converted) for c in again] == [
            ("2026-03-02", 1, 0),
            ("2026-03-09", 1, 1),
        ]


def test_a_period_without_entries(engine: Engine) -> None:
    """A period nobody entered a stage in has no cohort line (and reads no history for it)."""
    seed(engine)
    with engine.connect() as connection:
        later = Period(END + 10 * DAY, END + 20 * DAY)
        assert _cohort(conversions(connection, later, PAIRS)) == {}
        assert requalified(connection, later, "recycled", "mql") == []


def test_a_stage_name_with_quotes(engine: Engine) -> None:
    """Stage names are written into the cohort pass's statement (not bound): one with a quote
    and a backslash is still that stage. L8 entered it, then mql: converted; L9 entered it
    only."""
    odd = "it's \\ 'odd'"
    seed(engine)
    with engine.begin() as connection:
        leads = [{"id": n, "external_id": f"L{n}", "stage": odd, "score": 0, "attributes": {},
                  "created_at": OLD, "updated_at": OLD, "stage_entered_at": OLD} for n in (8, 9)]  # fmt: skip
        connection.execute(insert(LEADS), leads)
        for lead_id in (8, 9):
            connection.execute(
                insert(STAGE_CHANGES),
                change_row(lead_id=lead_id, at=T + DAY, from_stage=None, to_stage=odd, cause="api"),
            )
        connection.execute(
            insert(STAGE_CHANGES),
            change_row(lead_id=8, at=T + 2 * DAY, from_stage=odd, to_stage="mql", cause="api"),
        )
    with engine.connect() as connection:
        found = conversions(connection, Period(T, END), [(odd, "mql")])
        assert _cohort(found) == {("all", odd, "mql"): (2, 1)}
