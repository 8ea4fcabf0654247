"""A transaction PostgreSQL aborts as a deadlock is run again, a bounded number of times."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import OperationalError

from leadflow.store.conflicts import retrying_conflicts
from leadflow.store.tables import LEADS
from tests.conftest import T0


def _crossed_updates(engine: Engine, attempts: int) -> list[Any]:
    """Two transactions updating leads A and B in opposite orders, both holding their first
    row when they ask for the second (a certain deadlock on their first attempt); each thread's
    outcome, "done" or the error it raised."""
    both_hold_one = threading.Barrier(2)
    outcomes: list[Any] = [None, None]

    def run(index: int, first: str, second: str) -> None:
        tries = 0

        def work() -> None:
            nonlocal tries
            tries += 1
            with engine.begin() as connection:
                for key in (first, second):
                    connection.execute(
                        update(LEADS)
                        .where(LEADS.c.external_id == key)
                        .values(score=LEADS.c.score + 1)
                    )
                    if key == first and tries == 1:
                        both_hold_one.wait(10)

        try:
            retrying_conflicts(work, attempts=attempts, pause=lambda _s: None)
            outcomes[index] = "done"
        except OperationalError as exc:
            outcomes[index] = type(exc.orig).__name__

    threads = [
        threading.Thread(target=run, args=(0, "A", "B")),
        threading.Thread(target=run, args=(1, "B", "A")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


@pytest.fixture
def store_url(postgres_store_url: str) -> str:
    """PostgreSQL only: SQLite's one writer at a time cannot deadlock (nothing to test there,
    rather than a skip counted in every run)."""
    return postgres_store_url


@pytest.fixture
def leads_a_b(engine: Engine) -> Engine:
    with engine.begin() as connection:
        connection.execute(
            insert(LEADS),
            [
                {
                    "external_id": k,
                    "score": 0,
                    "attributes": {},
                    "stage_entered_at": T0,
                    "created_at": T0,
                    "updated_at": T0,
                }
                for k in "AB"
            ],
        )
    return engine


def test_a_deadlocked_transaction_is_run_again(leads_a_b: Engine) -> None:
    assert _crossed_updates(leads_a_b, attempts=3) == ["done", "done"]
    with leads_a_b.connect() as connection:
        scores = connection.execute(select(LEADS.c.external_id, LEADS.c.score)).all()
    assert sorted(tuple(r) for r in scores) == [("A", 2), ("B", 2)]


def test_the_last_attempt_raises_the_deadlock(leads_a_b: Engine) -> None:
    assert sorted(_crossed_updates(leads_a_b, attempts=1)) == ["DeadlockDetected", "done"]
