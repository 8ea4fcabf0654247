"""Ctrl-C during an import: it stops the import where it is, never halfway through a commit.

SIGINT raises :class:`KeyboardInterrupt` wherever the importing thread happens to be. Inside
the statements of a batch that is what is wanted (the batch rolls back whole), but inside a
transaction's begin, commit or rollback, or while the run's row is written, it left the work
half done: a connection still in its write transaction (SQLite's lock held, so the run's row
then waited for it 10 s and failed with "database is locked", the run left ``running``), or
a batch counted that was never committed. :func:`shielded` holds a Ctrl-C back until its
block ends, so those steps finish and the interrupt comes right after them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class _Shield:
    def __init__(self) -> None:
        self.depth = 0
        self.pending = False


_shield = _Shield()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    if _shield.depth:
        _shield.pending = True
        return
    raise KeyboardInterrupt


@contextmanager
def ctrl_c_held_back_when_shielded() -> Iterator[None]:
    """For the block, a Ctrl-C inside :func:`shielded` waits for that block's end.

    Only where Python's own Ctrl-C handler is in place, in the main thread (a signal handler
    can be set nowhere else); elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def shielded() -> Iterator[None]:
    """A Ctrl-C in the block raises :class:`KeyboardInterrupt` once the block is done."""
    _shield.depth += 1
    try:
        yield
    finally:
        _shield.depth -= 1
        if not _shield.depth and _shield.pending:
            _shield.pending = False
            raise KeyboardInterrupt
