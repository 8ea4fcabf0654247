"""Choosing the rep for an MQL: who can take it, round robin's turn, the previous owner and the
least loaded, exactly.

Pins :func:`leadflow.engine.assignment.choose_rep` over a roster of four reps in id order (an
inactive one, one out of office, one at capacity): round robin takes the first rep after the
last pick who can take the lead and wraps to the first who can; the previous owner wins while
they can take the lead; least loaded takes the fewest open MQLs, then the lowest id; with nobody
able, the lead waits and round robin's turn is neither read nor moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadflow.config import load_settings
from leadflow.engine.assignment import Member, choose_rep, pool_members
from leadflow.rule_language.actions import Assign
from leadflow.settings import Settings
from leadflow.store.models import Lead, Rep

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class ListedRoster:
    """A roster held in lists: the reps of one pool and their open MQLs, as given."""

    def __init__(self, reps: list[Rep], load: dict[int, int], last: int | None) -> None:
        self._pools = pool_members(reps)
        self._load = load
        self.last = last
        self.reads = 0

    def members(self, pool: str) -> list[Member]:
        return self._pools.get(pool, [])

    def pools(self) -> Mapping[str, list[Member]]:
        return self._pools

    def open_mqls(self, rep_ids: list[int]) -> Mapping[int, int]:
        return self._load

    def last_pick(self, pool: str) -> int | None:
        self.reads += 1
        return self.last

    def picked(self, pool: str, rep_id: int) -> None:
        self.last = rep_id


def _rep(rep_id: int, **values: object) -> Rep:
    given: dict[str, object] = {
        "id": rep_id,
        "external_id": f"rep-{rep_id}",
        "name": f"Rep {rep_id}",
        "email": f"rep{rep_id}@example.com",
        "pools": ["inbound"],
        "active": True,
        "capacity": 2,
    }
    given.update(values)
    return Rep(**given)


def _reps() -> list[Rep]:
    """1 and 5 can take leads; 2 is inactive, 3 out of office, 4 at capacity (2 of 2)."""
    return [
        _rep(1),
        _rep(2, active=False),
        _rep(3, out_of_office_until=NOW + timedelta(days=1)),
        _rep(4),
        _rep(5),
    ]


LOAD = {1: 1, 4: 2, 5: 0}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    config = tmp_path / "config.yaml"
    config.write_text("", encoding="utf-8")
    return load_settings(config, env={}, overrides={}).settings


def _choose(
    settings: Settings, roster: ListedRoster, *, previous: int | None = None, **action: object
) -> tuple[int | None, str]:
    lead = Lead(id=7, external_id="L7", previous_owner_id=previous)
    choice = choose_rep(roster, lead, Assign(pool="inbound", **action), settings, NOW)
    return (choice.rep.id if choice.rep is not None else None), choice.how


@pytest.mark.parametrize(
    ("last", "expected"),
    [(None, 1), (1, 5), (2, 5), (4, 5), (5, 1), (9, 1)],
    ids=["no-pick-yet", "after-1", "after-inactive-2", "after-full-4", "wraps-after-5", "wraps"],
)
def test_round_robin_takes_the_next_rep_who_can_take_the_lead(
    settings: Settings, last: int | None, expected: int
) -> None:
    roster = ListedRoster(_reps(), LOAD, last)
    assert _choose(settings, roster, prefer_previous_owner=False) == (expected, "round robin")
    assert roster.last == expected


def test_the_previous_owner_wins_while_they_can_take_the_lead(settings: Settings) -> None:
    roster = ListedRoster(_reps(), LOAD, 1)
    assert _choose(settings, roster, previous=1) == (1, "previous owner")
    assert roster.last == 1  # round robin's turn stays
    # At capacity, out of office or not in the pool: round robin decides.
    for previous in (4, 3, 99):
        assert _choose(settings, ListedRoster(_reps(), LOAD, 1), previous=previous) == (
            5,
            "round robin",
        )


def test_least_loaded_takes_the_fewest_open_mqls_then_the_lowest_id(settings: Settings) -> None:
    roster = ListedRoster(_reps(), LOAD, None)
    assert _choose(settings, roster, strategy="least_loaded") == (5, "least loaded")
    even = ListedRoster(_reps(), {1: 0, 4: 2, 5: 0}, None)
    assert _choose(settings, even, strategy="least_loaded") == (1, "least loaded")
    assert roster.reads == even.reads == 0


def test_with_nobody_able_the_lead_waits_and_the_turn_is_not_read(settings: Settings) -> None:
    roster = ListedRoster(_reps(), {1: 2, 4: 2, 5: 2}, 4)
    assert _choose(settings, roster) == (
        None,
        "all 5 reps of pool 'inbound' are inactive, out of office or at capacity",
    )
    assert (roster.reads, roster.last) == (0, 4)
