"""Whether a delivery in hand has reached its destination yet, for a sender cancelled at a stop.

A stopping sender gives its claims back at once when it knows no byte of them left: those still
in its queue, and those a worker holds while the channel waits for room (a free connection, the
rate limit) before it starts. Only the channel knows when it starts, and only the delivery loop
hands claims back, so the channel says so through the task it runs in: the loop opens an
:class:`AttemptStart` around each delivery, the channel marks the wait it is in. A channel that
marks nothing counts as started, so nothing is handed back that might have gone out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class AttemptStart:
    """One delivery's state: ``waiting`` while the channel has sent nothing of it yet."""

    waiting: bool = False


_CURRENT: ContextVar[AttemptStart | None] = ContextVar("leadflow_attempt_start", default=None)


@contextmanager
def attempt_watched() -> Iterator[AttemptStart]:
    """Around one delivery, in the task that runs it: what the channel marks of its start."""
    start = AttemptStart()
    token = _CURRENT.set(start)
    try:
        yield start
    finally:
        _CURRENT.reset(token)


@contextmanager
def waiting_to_start() -> Iterator[None]:
    """Around a channel's wait before it sends anything of the delivery in hand."""
    start = _CURRENT.get()
    if start is not None:
        start.waiting = True
    yield  # an error (the cancellation) leaves it waiting: it never started
    if start is not None:
        start.waiting = False
