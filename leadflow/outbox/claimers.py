"""Who holds a claim, and whether that sender is known to be gone.

A sender's id, written into a claimed row's ``claimed_by``, is ``HOST:PID:ID:PIDNS``: its host,
its process id, a random id of the drain and the pid namespace it runs in (the inode of
``/proc/self/ns/pid``; empty where there is none). A claim is known dead only when its sender
ran on this host, in this pid namespace, and its process id no longer runs, or is this very
process with a drain id it never started (an earlier process that had the same id, a container's
restarted daemon). Anything else counts as alive: a claim of another host or namespace, one
written before leadflow recorded the namespace, and a process id reused since by another
process (its claims then wait out their lease, as before).
"""

from __future__ import annotations

import functools
import os
import uuid
from dataclasses import dataclass

from leadflow.store.run_processes import process_gone, this_host

_STARTED_HERE: set[str] = set()
"""Every sender id this process made: a claim of this pid not among them is an earlier one's."""


# Read once: ``outbox`` and ``status`` ask for every sending row, and a process keeps both.
@functools.cache
def _host() -> str:
    """This host's name as a sender id holds it (``:`` separates the id's parts)."""
    return this_host().replace(":", "-")[:120]


@functools.cache
def _pid_namespace() -> str:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return ""
    return link.removeprefix("pid:[").removesuffix("]")


@dataclass(frozen=True)
class Claimer:
    host: str
    pid: int
    drain: str
    namespace: str | None
    """None: written by a leadflow that did not record it."""


def new_sender_id() -> str:
    """A new drain's ``claimed_by``, remembered as started by this process."""
    worker = f"{_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{_pid_namespace()}"
    _STARTED_HERE.add(worker)
    return worker


def parse_claimer(claimed_by: str | None) -> Claimer | None:
    parts = (claimed_by or "").split(":")
    if len(parts) not in (3, 4) or not parts[1].isdigit():
        return None
    return Claimer(parts[0], int(parts[1]), parts[2], parts[3] if len(parts) == 4 else None)


def claimer_gone(claimed_by: str | None) -> Claimer | None:
    """The claimer of a ``sending`` row when it is known to be gone, else None."""
    claimer = parse_claimer(claimed_by)
    if (
        claimer is None
        or claimer.namespace is None
        or claimer.namespace != _pid_namespace()
        or claimer.host != _host()
    ):
        return None
    if claimer.pid == os.getpid():
        return claimer if claimed_by not in _STARTED_HERE else None
    return claimer if process_gone(this_host(), claimer.pid) else None
