"""How long the work of one caller may wait for locks other sessions hold, whatever the
transactions it takes, and how a wait that ran out is told apart from other failures.

An HTTP request writing leads (its records, then their scores) takes two transactions; on
SQLite each waits its turn behind the process's other writers, then SQLite's busy timeout for
another process's write lock. Bounded one by one, a request behind a ``sqlite3`` shell left in
``BEGIN IMMEDIATE`` waited 19 s where the documentation said 10. A deadline set once for the
request (:func:`lock_waits_within`) is what each of those waits takes its share of; on
PostgreSQL each transaction gets ``SET LOCAL lock_timeout`` for the time left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from leadflow.errors import LockWaitExpiredError


class _Budget:
    """A caller's seconds of lock waits, counted from its first transaction (not from the
    request's arrival: its body may take a while to come)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline: float | None = None

    def left(self) -> float:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.seconds
        return max(0.0, self.deadline - time.monotonic())


_BUDGET: ContextVar[_Budget | None] = ContextVar("leadflow_lock_budget", default=None)
"""The current caller's bound on lock waits; None: none of its own (the engine's bounds hold:
SQLite's busy timeout, PostgreSQL's statement timeout)."""

LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"
_SQLITE_LOCKED = ("database is locked", "database table is locked")


@contextmanager
def lock_waits_within(seconds: float) -> Iterator[None]:
    """Bound the lock waits of the code run inside (and of the worker threads it starts with
    the context copied, as Starlette's ``run_in_threadpool`` does) to ``seconds`` in all,
    counted from its first transaction."""
    token = _BUDGET.set(_Budget(seconds))
    try:
        yield
    finally:
        _BUDGET.reset(token)


def lock_wait_left() -> float | None:
    """Seconds the current caller may still wait for a lock (0 when none), or None: unbounded
    by the caller."""
    budget = _BUDGET.get()
    return None if budget is None else budget.left()


def lock_wait_ran_out(exc: BaseException) -> bool:
    """Whether ``exc`` (SQLAlchemy's, or leadflow's own) is a wait for a lock that gave up:
    PostgreSQL's ``lock_timeout``, SQLite's busy timeout, or the caller's deadline."""
    if isinstance(exc, LockWaitExpiredError):
        return True
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    return getattr(orig, "sqlstate", None) == LOCK_NOT_AVAILABLE or sqlite_locked(orig)


def statement_timed_out(orig: BaseException) -> bool:
    """Whether a driver's error is PostgreSQL cancelling a statement at ``statement_timeout``."""
    return getattr(orig, "sqlstate", None) == QUERY_CANCELED and "statement timeout" in str(orig)


def sqlite_locked(orig: BaseException) -> bool:
    """Whether a driver's error is SQLite's busy timeout running out."""
    return any(said in str(orig) for said in _SQLITE_LOCKED)
