"""Whether the process a run recorded (host and process id) is gone: a killed import's row.

A process on this host is looked up by its id; one on another host cannot be, and counts as
alive. A process id reused since by another process also counts as alive: the run then shows
``running`` until that process ends (docs/import.md).
"""

from __future__ import annotations

import os
import socket


def this_host() -> str:
    return socket.gethostname()[:255]


def process_gone(host: str | None, pid: int | None) -> bool:
    """True only when ``pid`` is known not to run on this host (any more)."""
    if host is None or pid is None or host != this_host():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's
        return False
    return False
