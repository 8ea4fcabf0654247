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

Exactness: a computation reads the clock (the runtime's, injected), then runs the report with
that instant as its ``now``: a snapshot is ``leadflow report --from --to`` run at its as-of time.

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
from leadflow.engine.runtime import Runtime
from leadflow.logs import error_text, log_failure

log = structlog.get_logger("leadflow.dashboard")

KEPT = 32
"""Periods kept: the default one and the few others people are looking at."""
AT_ONCE = 2
"""Computations running at the same time (the machine's cores are the daemon's too)."""

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
    ) -> None:
        self.compute = compute
        self.clock = clock
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
        outcomes = [entry.snapshot.as_of] if entry.snapshot is not None else []
        outcomes += [entry.failure.at] if entry.failure is not None else []
        if outcomes and self.clock.now() - max(outcomes) < self.refresh:
            return False
        done = entry.running = threading.Event()
        name = f"{THREAD_NAME}{key[0]}-{key[1]}"
        threading.Thread(target=self._run, args=(key, entry, done), name=name, daemon=True).start()
        return True

    def _look(self, entry: _Entry) -> Look:
        snapshot, failure = entry.snapshot, entry.failure
        if failure is not None and snapshot is not None and failure.at < snapshot.as_of:
            failure = None
        fresh = snapshot is not None and self.clock.now() - snapshot.as_of < self.refresh
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
                as_of = self.clock.now()
                started = time.perf_counter()
                try:
                    figures = self.compute(first, last, as_of)
                except Exception as exc:  # shown on the page and logged, never lost in a thread
                    took = time.perf_counter() - started
                    log_failure(log, "funnel_report_failed", exc, first=str(first), last=str(last))
                    with self._lock:
                        entry.failure = Failure(error_text(exc), as_of, took)
                    return
                took = time.perf_counter() - started
                log.info(
                    "funnel_report_computed",
                    first=str(first),
                    last=str(last),
                    took_s=round(took, 3),
                )
                with self._lock:
                    entry.snapshot = Snapshot(figures, as_of, took)
        finally:
            with self._lock:
                entry.running = None
            done.set()


def funnel_snapshots(runtime: Runtime) -> FunnelSnapshots:
    """The snapshots of ``runtime``'s store, renewed after ``dashboard.funnel_refresh``."""
    settings = runtime.settings
    return FunnelSnapshots(
        partial(period_figures, runtime.engine, settings),
        runtime.clock,
        settings.dashboard.funnel_refresh,
    )
