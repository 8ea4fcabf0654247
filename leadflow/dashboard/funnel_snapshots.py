"""The Funnel page's period figures, kept per period and computed in the background.

Why: the page's period figures are ``leadflow report`` of the period, which reads the period's
whole stage history: seconds on a store of a million leads, when a page has 300 ms. So the page
does what HubSpot's and Salesforce's dashboards do: it serves figures computed a moment ago and
says when ("Figures as of 2026-03-02 09:14 UTC, computed in 17.2 s").

- A period whose snapshot is younger than ``dashboard.funnel_refresh`` is served from it.
- An older one is served as it is, with a note, while one computation in the background (a
  thread: at most one per period at a time) renews it.
- A period never computed starts its computation and waits ``dashboard.funnel_wait`` for it;
  the page then shows what it has (the stage counts) and reloads itself until it is done.
- A computation that fails is kept as the period's failure (shown on the page, logged) until
  it is as old as a snapshot would be stale; the next request then tries again.

Exactness: a snapshot is ``leadflow report --from --to --now AS_OF``, whenever that is run.
Its as-of is the clock's instant (the runtime's, injected) as the computation starts, or, while
a rule run, a funnel tick or a posted batch is in flight in this process, the instant just
before the oldest one's (:mod:`leadflow.engine.in_flight`): their rows are stamped with their
own instant and committed later, so a snapshot as of the clock read before they were committed
left out what the report counts (t2report F1: 0 MQLs as of 00:36:51.150, the 28 stamped
00:36:51.094 committed 60 ms after the read). A run starting at the as-of itself while the
report is read has the computation done again (at most ``TRIES`` times in all).

Renewal: the daemon marks the snapshots outdated (:meth:`FunnelSnapshots.outdate`) when a rule
run fired or a funnel tick handled something, and warms the default period at once; another
period is computed again at its next request. Freshness (``dashboard.funnel_refresh``) counts
from when a snapshot was computed, not from its as-of (a long run in flight pulls that back).

The store is the process's (each replica computes its own) and bounded: ``KEPT`` periods,
the least recently looked at forgotten first, and at most ``AT_ONCE`` computations running
together (the others wait for a slot: each is a heavy read of the store).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial

import structlog

from leadflow.clock import Clock
from leadflow.dashboard.funnel_page import PeriodFigures, period_figures
from leadflow.engine.in_flight import InFlight
from leadflow.engine.runtime import Runtime
from leadflow.logs import error_text, log_failure

log = structlog.get_logger("leadflow.dashboard")

KEPT = 32
"""Periods kept: the default one and the few others people are looking at."""
AT_ONCE = 2
"""Computations running at the same time (the machine's cores are the daemon's too)."""

TRIES = 3
"""Computations of a period in a row when runs stamped at their as-of keep overtaking them."""

THREAD_NAME = "funnel-report-"
"""The computations' threads are named this and the period."""

Key = tuple[date, date]
Compute = Callable[[date, date, datetime], PeriodFigures]
"""``first``, ``last`` (days, included) and the instant the report is run at."""


@dataclass(frozen=True)
class Snapshot:
    """A period's figures as computed at ``as_of``, and how long computing them took."""

    figures: PeriodFigures
    as_of: datetime
    took: float
    """Seconds."""
    started: datetime
    """The clock's instant as the computation started (its age counts from it): later than
    ``as_of`` when a write was in flight then."""


@dataclass(frozen=True)
class Failure:
    """A computation that raised: its error in one line, when it started, how long it ran."""

    error: str
    at: datetime
    took: float


@dataclass(frozen=True)
class Look:
    """What the store has for a period at the instant of a request."""

    snapshot: Snapshot | None
    fresh: bool
    """The snapshot is younger than the refresh interval."""
    computing: bool
    """A computation of the period is running (or waiting for a slot)."""
    failure: Failure | None
    """The last computation's failure, when it came after the snapshot."""
    took: float | None
    """How long the period's last computation took; None when it has none (another period's
    time said nothing of this one's: 0.1 s while a period from the year 1 took 160 s)."""
    busy: bool = False
    """Every kept period is being computed: this one could not start (try again shortly)."""


@dataclass
class _Entry:
    snapshot: Snapshot | None = None
    failure: Failure | None = None
    running: threading.Event | None = None
    """Set when the running computation is done; None when none runs."""
    outdated: bool = False
    """The store changed since the snapshot was read: compute again whatever its age."""


class FunnelSnapshots:
    """The process's snapshots of the Funnel page's period figures, by period."""

    def __init__(
        self,
        compute: Compute,
        clock: Clock,
        refresh: timedelta,
        *,
        kept: int = KEPT,
        at_once: int = AT_ONCE,
        in_flight: InFlight | None = None,
    ) -> None:
        """``in_flight``: the writes whose instants a snapshot's as-of stays before (the
        runtime's); by default a registry of its own (no writes known: the clock's instant)."""
        self.compute = compute
        self.clock = clock
        self.in_flight = in_flight if in_flight is not None else InFlight(clock)
        self.refresh = refresh
        self.size = kept
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(at_once)
        self._closed = False

    def look(self, first: date, last: date, wait: float = 0.0) -> Look:
        """The period's snapshot, starting a computation when it has none or an old one; with
        no snapshot yet, wait up to ``wait`` seconds for the computation to finish."""
        key = (first, last)
        with self._lock:
            entry = self._entry(key)
            if entry is None:
                return Look(None, False, False, None, None, busy=True)
            self._start_if_due(key, entry)
            running = entry.running if entry.snapshot is None else None
        if running is not None and wait > 0:
            running.wait(wait)
        with self._lock:
            return self._look(entry)

    def kept(self, first: date, last: date) -> Snapshot | None:
        """The period's snapshot as kept, computing nothing."""
        with self._lock:
            entry = self._entries.get((first, last))
            return entry.snapshot if entry is not None else None

    def warm(self, first: date, last: date) -> bool:
        """Start computing the period when it has no snapshot or an old one (and none runs);
        True when a computation started."""
        with self._lock:
            entry = self._entry((first, last))
            return entry is not None and self._start_if_due((first, last), entry)

    def outdate(self) -> None:
        """The store changed (a run fired, a tick handled something): every kept period is
        computed again at its next request or warming, however young its snapshot."""
        with self._lock:
            for entry in self._entries.values():
                entry.outdated = True

    def close(self) -> None:
        """Start no computation from now on (the daemon is stopping)."""
        with self._lock:
            self._closed = True

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every running computation; True when none runs."""
        deadline = time.monotonic() + timeout
        with self._lock:
            running = [entry.running for entry in self._entries.values() if entry.running]
        return all(done.wait(max(0.0, deadline - time.monotonic())) for done in running)

    # --- under the lock -----------------------------------------------------------------

    def _entry(self, key: Key) -> _Entry | None:
        """The period's entry, made room for when new; None when every kept one is running."""
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self.size:
                idle = next((k for k, e in self._entries.items() if e.running is None), None)
                if idle is None:
                    return None
                del self._entries[idle]
            entry = self._entries[key] = _Entry()
        self._entries.move_to_end(key)
        return entry

    def _start_if_due(self, key: Key, entry: _Entry) -> bool:
        if self._closed or entry.running is not None:
            return False
        outcomes = [entry.snapshot.started] if entry.snapshot is not None else []
        outcomes += [entry.failure.at] if entry.failure is not None else []
        if outcomes and not entry.outdated and self.clock.now() - max(outcomes) < self.refresh:
            return False
        entry.outdated = False  # a change from now on outdates this computation too
        done = entry.running = threading.Event()
        name = f"{THREAD_NAME}{key[0]}-{key[1]}"
        threading.Thread(target=self._run, args=(key, entry, done), name=name, daemon=True).start()
        return True

    def _look(self, entry: _Entry) -> Look:
        snapshot, failure = entry.snapshot, entry.failure
        if failure is not None and snapshot is not None and failure.at < snapshot.started:
            failure = None
        fresh = snapshot is not None and self.clock.now() - snapshot.started < self.refresh
        outcome = failure if failure is not None else snapshot
        took = outcome.took if outcome is not None else None
        return Look(snapshot, fresh, entry.running is not None, failure, took)

    # --- in the computation's thread ----------------------------------------------------

    def _run(self, key: Key, entry: _Entry, done: threading.Event) -> None:
        first, last = key
        try:
            with self._slots:
                if self._closed:
                    return
                self._compute(first, last, entry)
        finally:
            with self._lock:
                entry.running = None
            done.set()

    def _compute(self, first: date, last: date, entry: _Entry) -> None:
        """The period's report as of an instant no write in flight is stamped at or before;
        again when a run stamped at that instant started meanwhile."""
        for _ in range(TRIES):
            computed_at = self.clock.now()
            started = time.perf_counter()
            try:
                with self.in_flight.reading() as reading:
                    figures = self.compute(first, last, reading.as_of)
            except Exception as exc:  # shown on the page and logged, never lost in a thread
                took = time.perf_counter() - started
                log_failure(log, "funnel_report_failed", exc, first=str(first), last=str(last))
                with self._lock:
                    entry.failure = Failure(error_text(exc), computed_at, took)
                return
            took = time.perf_counter() - started
            if reading.overtaken:
                log.info("funnel_report_overtaken", first=str(first), as_of=str(reading.as_of))
                continue
            log.info(
                "funnel_report_computed",
                first=str(first),
                last=str(last),
                as_of=reading.as_of.isoformat(),
                took_s=round(took, 3),
            )
            with self._lock:
                entry.snapshot = Snapshot(figures, reading.as_of, took, computed_at)
            return
        with self._lock:  # kept as a failure: tried again once as old as a stale snapshot
            error = (
                f"runs stamped at the figures' instant started while they were read {TRIES} times"
            )
            entry.failure = Failure(error, self.clock.now(), took)


def funnel_snapshots(runtime: Runtime) -> FunnelSnapshots:
    """The snapshots of ``runtime``'s store, renewed after ``dashboard.funnel_refresh``."""
    settings = runtime.settings
    return FunnelSnapshots(
        partial(period_figures, runtime.engine, settings),
        runtime.clock,
        settings.dashboard.funnel_refresh,
        in_flight=runtime.in_flight,
    )
