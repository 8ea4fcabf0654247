"""A second process reads and prepares a large file's rows while this one writes them.

Reading a CRM export's cells into typed, checked values costs about as much CPU as writing them
(see docs/import.md, Benchmark); in one process the two take turns. :func:`fed` forks a child
that runs the reading side and sends each of its results through a pipe, so the reading of
batch N+1 overlaps the writing of batch N on a second core. A thread would not do: the reading
is Python, and SQLite's ``executemany`` beside a busy Python thread waits for the GIL at every
row.

Only the writing process touches the database: the child is forked from it (so the compiled
column plan and the writer need no pickling), closes every inherited descriptor but the file's
and its pipe's (not the connections: closing a descriptor sends nothing), and ends with
``os._exit``, which runs no finaliser. It ignores SIGINT (a terminal's Ctrl-C reaches the
whole process group): the writer stops it. The pipe holds at most one
result beyond the one being read: memory stays that of two batches. Killed, the writer leaves
the child a broken pipe at its next send, and the child ends; an error in the child is raised
in the writer.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

Send = Callable[[Any], None]
_ITEM, _DONE, _FAILED = "item", "done", "failed"


def can_fork() -> bool:
    """Whether a reading process helps here: a platform that forks, a second CPU."""
    return "fork" in multiprocessing.get_all_start_methods() and (os.cpu_count() or 1) > 1


@contextmanager
def fed(produce: Callable[[Send], None], keep: int) -> Iterator[Iterator[Any]]:
    """What ``produce(send)`` sends, in order, as it is made in a forked child process that
    keeps no file descriptor open but the standard ones, the pipe's and ``keep`` (the file)."""
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_produce, args=(produce, sending, keep), daemon=True)
    try:
        # Blocked across the fork, a Ctrl-C reaches this process once the child ignores it.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            child.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            sending.close()
        yield _received(receiving, child)
    finally:
        receiving.close()
        if child.pid is not None:  # started
            if child.is_alive():
                child.kill()
            child.join()


def _produce(produce: Callable[[Send], None], sending: Connection, keep: int) -> None:
    # A terminal's Ctrl-C goes to the whole process group: the writer stops this process
    # (killed as ``fed`` ends), which would otherwise die of it with a traceback on stderr.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # Close what came with the fork: the pipe's reading end (held here, a dead writer would not
    # break the pipe) and the writer's database connections (held here, a killed writer's
    # PostgreSQL session would live on, in its transaction, holding its locks).
    _close_all_but(sending.fileno(), keep)
    try:
        produce(lambda item: sending.send((_ITEM, item)))
        sending.send((_DONE, None))
    except (BrokenPipeError, ConnectionResetError):
        return  # the writer is gone: nothing to read for
    except BaseException as exc:
        try:
            sending.send((_FAILED, exc))
        except Exception:
            sending.send((_FAILED, RuntimeError(f"{type(exc).__name__}: {exc}")))


def _close_all_but(*kept: int) -> None:
    low = 3  # stdin, stdout, stderr stay
    for fd in sorted(set(kept)):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _received(receiving: Connection, child: Any) -> Iterator[Any]:
    while True:
        try:
            tag, item = receiving.recv()
        except EOFError:
            child.join()
            msg = f"the process reading the file ended unexpectedly (exit code {child.exitcode})"
            raise RuntimeError(msg) from None
        if tag == _DONE:
            return
        if tag == _FAILED:
            raise item
        yield item
