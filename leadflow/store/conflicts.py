"""Running a transaction again when PostgreSQL aborted it for colliding with another one.

A deadlock (SQLSTATE 40P01) or a serialization failure (40001) says nothing about the work or
the database: the transaction lost a race and, as PostgreSQL's manual advises, may simply be run
again. Writers lock rows in key order so that overlapping writes queue rather than deadlock;
this is what is left for collisions that ordering does not prevent (rows locked by what follows
a write, another process's writers). The attempts are few and the pauses short and jittered,
so that the colliding transactions do not meet again in step; the last failure is raised as it
came, for the caller to report the database as unavailable.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

import structlog
from sqlalchemy.exc import DBAPIError

log = structlog.get_logger("leadflow.store")

T = TypeVar("T")

CONFLICT_STATES = frozenset({"40P01", "40001"})
"""deadlock_detected, serialization_failure."""
ATTEMPTS = 5
FIRST_PAUSE = 0.02
"""Seconds before the second attempt; each later pause doubles (about 0.6 s in all at most)."""


def is_conflict(exc: BaseException) -> bool:
    """Whether ``exc`` is a transaction aborted for colliding with another (worth a retry)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    return getattr(orig, "sqlstate", None) in CONFLICT_STATES


def retrying_conflicts(
    work: Callable[[], T],
    *,
    attempts: int = ATTEMPTS,
    pause: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> T:
    """``work()`` (one whole transaction), run again up to ``attempts`` times in all while it
    fails with a conflict (:func:`is_conflict`); any other error, or the last conflict, is
    raised."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except DBAPIError as exc:
            if attempt == attempts or not is_conflict(exc):
                raise
            delay = FIRST_PAUSE * 2 ** (attempt - 1) * (0.5 + jitter())
            log.info(
                "transaction_conflict_retried",
                attempt=attempt,
                pause=round(delay, 3),
                error=str(exc.orig).splitlines()[0],
            )
            pause(delay)
    raise AssertionError("unreachable")  # the loop returns or raises
