"""The instants of this process's writes in flight, so a read "as of" an instant misses none.

Why: a rule run, a funnel tick or a posted batch of records stamps its rows with its own
instant (the clock's ``now`` as it starts) and commits them later, ~60 ms later for 28 firings,
minutes for a big catch-up. A report read meanwhile "as of" the clock's instant is after those
stamps but sees none of the rows: the Funnel page showed 0 MQLs "as of 00:36:51.150" while
``leadflow report --now`` that instant, run afterwards, counted the 28 the run stamped
00:36:51.094 (t2report F1).

So a writer takes its instant from :meth:`InFlight.writing`, which reads the clock under the
registry's lock and holds the instant until the writer's rows are committed (the block ends);
a reader takes its as-of from :meth:`InFlight.reading`: the clock's instant, or, with writers in
flight, the instant just before the oldest one's. Every row stamped at or before that as-of is
then committed before the read starts, and a row committed later is stamped after it, so the
read equals ``leadflow report --now AS_OF`` run at any later time. A writer that starts while
the reader reads has an instant at or after the as-of; at it exactly (the same microsecond, or
a clock held still), its rows would count, so the reading is marked :attr:`Reading.overtaken`
and must be done again.

Only this process's writers are known: on PostgreSQL another replica (the leader evaluates the
rules) or a ``leadflow run --once`` next to the daemon is not; see docs/dashboard.md.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from leadflow.clock import Clock

RESOLUTION = timedelta(microseconds=1)
"""The stores keep microseconds: the instant just before a writer's is this much earlier."""


@dataclass(eq=False)
class Reading:
    """A read of the store as of ``as_of``."""

    as_of: datetime
    overtaken: bool = False
    """A writer stamped at or before ``as_of`` started while the read was on: do it again."""


class InFlight:
    """The instants of the writes running in this process, and the reads going on."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._writers: list[datetime] = []
        self._readers: list[Reading] = []

    @contextmanager
    def writing(self) -> Iterator[datetime]:
        """The writer's instant (the clock's), held as in flight until the block ends: end it
        once the rows stamped with it are committed (or given up)."""
        with self._lock:
            now = self.clock.now()
            self._writers.append(now)
            for reading in self._readers:
                if now <= reading.as_of:
                    reading.overtaken = True
        try:
            yield now
        finally:
            with self._lock:
                self._writers.remove(now)

    @contextmanager
    def reading(self) -> Iterator[Reading]:
        """A read's as-of: the clock's instant, or just before the oldest writer's in flight.
        Check :attr:`Reading.overtaken` once the read is done."""
        with self._lock:
            as_of = self.clock.now()
            if self._writers:
                as_of = min(as_of, min(self._writers) - RESOLUTION)
            reading = Reading(as_of)
            self._readers.append(reading)
        try:
            yield reading
        finally:
            with self._lock:
                self._readers.remove(reading)
