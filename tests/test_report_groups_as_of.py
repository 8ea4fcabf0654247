"""A report read as of now groups each lead and deal by what it was then: a deal by the owner it
had at now (its history's last row at or before now), a lead by the pool of its last
assignment at or before now. An event at now itself has happened, as everywhere in the report.

The fixture, worked by hand: the period is two weeks from Monday 2 March 2026 09:00 UTC (T0);
now is a week in (T0 + 7 days). Reps Rita and Sam.

- Leads: L1 enters lead at +1 and mql at +2, assigned to the pool east at +1 and reassigned to
  west at now exactly; L2 enters lead at +1, assigned to east at +1, to west at +8 (after now).
- Deals, each open at now (``deals.owner_id`` is the owner today, after now):
  D1 engaged -10 by Rita, given to Sam at +3, won by Sam at +10: Sam's at now;
  D2 engaged +1 by Rita, given to Sam at +9: Rita's at now (Sam's today);
  D3 engaged -2 by Sam, given to Rita at now exactly, then to Sam at +12: Rita's at now;
  D4 engaged -3 by Sam, no history at all (stored before it was kept): Sam's, its owner today;
  D5 engaged -4 with no owner, given to Rita at +10: no one's at now (Rita's today).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.report import Report, build_report
from leadflow.store.stage_history import change_row, record_written
from leadflow.store.tables import AUDIT, DEALS, LEADS, REPS, STAGE_CHANGES

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 09:00 UTC
DAY = timedelta(days=1)
END = T0 + 14 * DAY
NOW = T0 + 7 * DAY
OLD = T0 - 100 * DAY
RITA, SAM = 1, 2


def seed(engine: Engine) -> None:
    lead = {"score": 0, "created_at": OLD, "updated_at": OLD, "stage_entered_at": OLD,
            "attributes": {}}  # fmt: skip
    with engine.begin() as connection:
        connection.execute(
            insert(REPS),
            [
                {"id": n, "external_id": f"r{n}", "name": name, "email": f"{name}@x.test",
                 "timezone": "UTC", "active": True, "capacity": None, "manager_id": None,
                 "pools": ["east"], "created_at": OLD, "updated_at": OLD}
                for n, name in ((RITA, "Rita"), (SAM, "Sam"))
            ],
        )  # fmt: skip
        connection.execute(
            insert(LEADS),
            [{**lead, "id": 1, "external_id": "L1", "stage": "mql"},
             {**lead, "id": 2, "external_id": "L2", "stage": "lead"}],
        )  # fmt: skip
        connection.execute(insert(STAGE_CHANGES), _lead_history())
        connection.execute(insert(AUDIT), _assignments())
        connection.execute(insert(DEALS), _deals())
        connection.execute(insert(STAGE_CHANGES), _deal_history())


def _lead_history() -> list[dict[str, Any]]:
    def entry(lead: int, days: int, old: str | None, new: str) -> dict[str, Any]:
        return change_row(
            lead_id=lead, at=T0 + days * DAY, from_stage=old, to_stage=new, cause="import"
        )

    return [entry(1, 1, None, "lead"), entry(1, 2, "lead", "mql"), entry(2, 1, None, "lead")]


def _assignments() -> list[dict[str, Any]]:
    def audit(lead: int, at: datetime, action: str, pool: str) -> dict[str, Any]:
        return {"at": at, "source": "rule", "rule_id": "mql", "rule_version": "v1",
                "lead_id": lead, "deal_id": None, "action": action,
                "params": {"pool": pool}, "evidence": {}}  # fmt: skip

    return [
        audit(1, T0 + DAY, "assigned", "east"),
        audit(1, NOW, "reassigned", "west"),
        audit(2, T0 + DAY, "assigned", "east"),
        audit(2, T0 + 8 * DAY, "reassigned", "west"),
    ]


DEALS_GIVEN = [
    # id, owner today, engaged (days from T0), outcome, closed (days from T0)
    (1, SAM, -10, "won", 10),
    (2, SAM, 1, None, None),
    (3, SAM, -2, None, None),
    (4, SAM, -3, None, None),
    (5, RITA, -4, None, None),
]


def _deals() -> list[dict[str, Any]]:
    return [
        {"id": n, "external_id": f"D{n}", "lead_id": None, "product": "A", "owner_id": owner,
         "stage": "Won" if outcome else "Engaging", "amount": 100.0,
         "engaged_at": T0 + engaged * DAY, "outcome": outcome,
         "closed_at": None if closed is None else T0 + closed * DAY, "attributes": {},
         "created_at": OLD, "updated_at": OLD}
        for n, owner, engaged, outcome, closed in DEALS_GIVEN
    ]  # fmt: skip


def _deal_history() -> list[dict[str, Any]]:
    def row(
        deal: int, at: datetime, stages: tuple[str | None, str], owners: tuple[Any, Any]
    ) -> Any:
        return change_row(
            deal_id=deal,
            at=at,
            from_stage=stages[0],
            to_stage=stages[1],
            from_owner_id=owners[0],
            to_owner_id=owners[1],
            cause="import",
        )

    engaging, kept = (None, "Engaging"), ("Engaging", "Engaging")
    return [
        row(1, T0 - 10 * DAY, engaging, (RITA, RITA)),
        row(1, T0 + 3 * DAY, kept, (RITA, SAM)),
        row(1, T0 + 10 * DAY, ("Engaging", "won"), (SAM, SAM)),
        row(2, T0 + DAY, engaging, (RITA, RITA)),
        row(2, T0 + 9 * DAY, kept, (RITA, SAM)),
        row(3, T0 - 2 * DAY, engaging, (SAM, SAM)),
        row(3, NOW, kept, (SAM, RITA)),
        row(3, T0 + 12 * DAY, kept, (RITA, SAM)),
        row(5, T0 - 4 * DAY, engaging, (None, None)),
        row(5, T0 + 10 * DAY, kept, (None, RITA)),
    ]


@pytest.fixture
def report_now(engine: Engine, make_settings: Any) -> Any:
    settings = make_settings(**{"calendar.timezone": "UTC"})
    seed(engine)

    def build(by: Grouping, now: datetime = NOW, end: datetime = END) -> Report:
        return build_report(engine, settings, Period(T0, end, by), now)

    return build


class TestDealsByTheirOwnerAtNow:
    def test_pipeline(self, report_now: Any) -> None:
        """Open at now: D1 Sam's, D2 and D3 Rita's (D3 given to her at now itself), D4 Sam's
        (no history: its owner today), D5 no one's. By the owners today it was Sam 4, Rita 1."""
        found = {line.group: line.open_opportunities for line in report_now(Grouping.rep).pipeline}
        assert found == {"(none)": 1, "Rita": 2, "Sam": 2}

    def test_deal_entries(self, report_now: Any) -> None:
        """D2's engagement, the one deal entry in the period by now: Rita's then, Sam's today."""
        assert report_now(Grouping.rep).deal_entries == {("Rita", "Engaging"): 1}

    def test_time_in_stage(self, report_now: Any) -> None:
        """The open stays in Engaging at now, by the owner then (D4 has no stay: no history)."""
        found = {(t.group, t.stage): t.open for t in report_now(Grouping.rep).deal_times}
        assert found == {("(none)", "Engaging"): 1, ("Rita", "Engaging"): 2, ("Sam", "Engaging"): 1}

    def test_read_after_the_end_the_owners_are_todays(self, report_now: Any) -> None:
        """Read after every change: D1 won by Sam; open D2 D3 D4 Sam's, D5 Rita's."""
        lines = report_now(Grouping.rep, now=END + DAY).pipeline
        found = {line.group: (line.won, line.open_opportunities) for line in lines}
        assert found == {"Rita": (0, 1), "Sam": (1, 3)}


class TestLeadsByTheirPoolAtNow:
    def test_an_assignment_at_now_counts(self, report_now: Any) -> None:
        """L1 was given to west at now itself: its entries are west's; L2 is east's at now
        (west's from +8, after it)."""
        report = report_now(Grouping.pool)
        assert report.entries == {("west", "lead"): 1, ("west", "mql"): 1, ("east", "lead"): 1}
        cohorts = {
            (c.group, c.from_stage, c.to_stage): (c.base, c.converted)
            for c in report.conversions
            if c.kind == "cohort"
        }
        assert cohorts == {
            ("west", "lead", "mql"): (1, 1),
            ("west", "mql", "sql"): (1, 0),
            ("east", "lead", "mql"): (1, 0),
        }
        times = {(t.group, t.stage): (t.left, t.open) for t in report.lead_times}
        assert times == {
            ("west", "lead"): (1, 0),
            ("west", "mql"): (0, 1),
            ("east", "lead"): (0, 1),
        }

    def test_an_assignment_at_the_end_of_a_past_period_does_not(self, report_now: Any) -> None:
        """The first week read after it: it ends at the former now, outside it, so L1's move
        to west there counts no more than an entry there would; L1 and L2 are east's."""
        report = report_now(Grouping.pool, now=END, end=NOW)
        assert report.entries == {("east", "lead"): 2, ("east", "mql"): 1}


def test_a_deal_given_to_another_rep_by_an_import_records_when(engine: Engine) -> None:
    """An import or the API writing a deal with another owner and the same stage records an
    owner change at its instant (from the owner the history last held); one that also moves
    the deal records the entry alone, with the new owner; one that changes neither, nothing."""
    seed(engine)
    first, second, third = T0 + 20 * DAY, T0 + 21 * DAY, T0 + 22 * DAY
    with engine.begin() as connection:
        connection.execute(update(DEALS).where(DEALS.c.id == 2).values(owner_id=RITA))
        record_written(connection, "deals", [], [2, 3], cause="import", source="d.csv", now=first)
        connection.execute(
            update(DEALS).where(DEALS.c.id == 2).values(owner_id=SAM, stage="Negotiating")
        )
        record_written(connection, "deals", [], [2], cause="api", source=None, now=second)
        record_written(connection, "deals", [], [2], cause="api", source=None, now=third)
        changes = STAGE_CHANGES.c
        rows = connection.execute(
            select(
                changes.deal_id,
                changes.at,
                changes.from_stage,
                changes.to_stage,
                changes.from_owner_id,
                changes.to_owner_id,
                changes.cause,
                changes.source,
            )
            .where(changes.deal_id.in_([2, 3]), changes.at >= first)
            .order_by(changes.id)
        ).all()
    # D3's owner is the one its history last holds: nothing written for it.
    assert [tuple(row) for row in rows] == [
        (2, first, "Engaging", "Engaging", SAM, RITA, "import", "d.csv"),
        (2, second, "Engaging", "Negotiating", SAM, SAM, "api", None),
    ]
