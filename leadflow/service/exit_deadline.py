"""The process ends within the shutdown grace after a stop, even with a thread still busy.

A thread cannot be cancelled: an HTTP request's database call or an evaluation's query runs on
to its own end. The interpreter waits for every such thread before the process exits, so one
slow request kept a stopped daemon alive for minutes after ``daemon_stopped``. The daemon
command arms this deadline at the stop: if the process is still there a moment after
``scheduler.shutdown_grace``, the threads still running are named in ``daemon_exit_forced``
and the process exits at once. What they were doing is safe to cut: a request or a batch is one
transaction, rolled back with its connection, and the client of a cancelled request had 503.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import structlog

log = structlog.get_logger("leadflow.service")

EXIT_MARGIN_S = 1.0
"""After the grace, the time left for the last steps of a clean stop (log, close the store)."""


class ExitDeadline:
    """:meth:`arm` once the stop is requested; ``exit_code`` is the code of a forced exit."""

    def __init__(self, grace_s: float, *, exit_code: int = 0) -> None:
        self.grace_s = grace_s
        self.exit_code = exit_code
        self._armed = False

    def arm(self) -> None:
        if self._armed:
            return
        self._armed = True
        # A daemon thread: it never holds the process itself, and runs while the main thread
        # waits on the interpreter's join of the busy threads.
        timer = threading.Timer(self.grace_s + EXIT_MARGIN_S, self._force)
        timer.name = "leadflow-exit-deadline"
        timer.daemon = True
        timer.start()

    def _force(self) -> None:
        busy = sorted(
            thread.name
            for thread in threading.enumerate()
            if thread.is_alive() and not thread.daemon and thread is not threading.main_thread()
        )
        log.error(
            "daemon_exit_forced",
            grace_s=self.grace_s,
            busy_threads=busy,
            detail="threads still running after the shutdown grace are abandoned; their "
            "transactions roll back",
        )
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # closed or gone: nobody to tell
                stream.flush()
        os._exit(self.exit_code)
