"""The daemon's ticks: run one at a time, in a worker thread, each on one rule set snapshot.

The daemon runs a funnel tick (:mod:`leadflow.engine.tick`) as its two halves on jobs of their
own: each rule's job scores the leads due, then evaluates that rule when it is due; the
funnel-tick job runs the scoring step, then the funnel steps. Every such job comes through :class:`Evaluator`. It takes the snapshot once at the
start of an evaluation, so a hot reload meanwhile never mixes two rule sets in one evaluation;
it runs the blocking database work with :func:`asyncio.to_thread`; and it keeps the per-rule
and per-step error boundary: a failure is logged with the rule id, counted, and the next job
runs. Evaluations are serialised by one lock: on SQLite there is one writer anyway, and
shutdown has exactly one evaluation in flight to wait for. A job runs only while the daemon is
not stopping and this replica holds the leadership; losing either stops the evaluation in
flight between two batches. Each evaluation and funnel tick holds its instant as in flight
(:mod:`leadflow.engine.in_flight`) until its rows are committed, and one that changed
something calls ``on_written`` then (the daemon renews the Funnel page's figures).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from leadflow import metrics
from leadflow.engine.evaluation import RuleOutcome, run_rule
from leadflow.engine.retention import PruneReport, prune
from leadflow.engine.runtime import Runtime, StopSignal
from leadflow.engine.tick import FUNNEL_STEPS, FunnelStep, run_funnel_steps
from leadflow.logs import error_text, log_failure
from leadflow.rule_language.model import Rule, RuleSet
from leadflow.service.leadership import Leadership
from leadflow.service.rule_reload import SnapshotHolder

log = structlog.get_logger("leadflow.service")


@dataclass
class DaemonCounters:
    """What the daemon did since it started, for its daemon_stopped log (/metrics: leadflow.metrics)."""

    evaluations: Counter[str] = field(default_factory=Counter)
    """Finished evaluations per rule id, failed ones included."""
    rule_failures: Counter[str] = field(default_factory=Counter)
    """Evaluations per rule id that raised (the rule's error boundary caught it)."""
    funnel_ticks: int = 0
    funnel_failures: Counter[str] = field(default_factory=Counter)
    """Funnel tick steps (``sla``, ``nurture``) that raised, by step."""
    retention_runs: int = 0
    """Retention runs that finished (see :meth:`Evaluator.retention`)."""
    last_tick_at: datetime | None = None
    """The ``now`` of the last evaluation or funnel tick that finished."""


class Evaluator:
    """Runs rule evaluations and funnel ticks one at a time until :meth:`stop`."""

    def __init__(
        self,
        runtime: Runtime,
        holder: SnapshotHolder[RuleSet],
        *,
        counters: DaemonCounters | None = None,
        steps: Sequence[tuple[str, FunnelStep]] | None = None,
        leadership: Leadership | None = None,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        """``on_written`` is called (in the event loop) after an evaluation that fired or a
        funnel tick that handled something has committed it: the daemon renews the Funnel
        page's figures then."""
        self.runtime = runtime
        self.holder = holder
        self.counters = counters or DaemonCounters()
        self._lock = asyncio.Lock()
        self._stop = threading.Event()
        self.leadership = leadership
        self._on_written = on_written
        self._halt = _EitherSet(self._stop, leadership.fence if leadership else None)
        self._model_was_absent = False
        """A rule set without an enabled scoring model was in force since the last pass."""
        if steps is None:
            steps = (("scoring", self._scoring), *FUNNEL_STEPS)
            holder.on_swap(self._saw)
        self._steps = steps

    def _saw(self, rule_set: RuleSet) -> None:
        if rule_set.active_scoring is None:
            self._model_was_absent = True

    def _scoring(
        self, runtime: Runtime, rule_set: RuleSet, now: datetime, *, stop: StopSignal | None = None
    ) -> int:
        """The scoring step: a pass when ``scheduler.scoring_every`` has passed or the model
        changed, and at once when the model comes back after a rule set without one.

        While no model was live, scores posted to the API were kept as posted and not
        rescored; the model coming back has the version of the last pass, so the cadence alone
        left them (an MQL made of a posted 95) until the next periodic pass. Their writes
        marked those leads due, so the pass recomputes them and no other lead."""
        from leadflow.engine.scoring_step import run_due_scoring, run_scoring

        if rule_set.active_scoring is None or not self._model_was_absent:
            return run_due_scoring(runtime, rule_set, now, stop=stop)
        self._model_was_absent = False
        try:
            return run_scoring(runtime, rule_set, now, stop=stop)
        except BaseException:
            self._model_was_absent = True  # the next tick tries again
            raise

    def _written(self) -> None:
        if self._on_written is None:
            return
        try:
            self._on_written()
        except Exception as exc:  # renewing figures never stops the evaluations
            log_failure(log, "funnel_renewal_failed", exc)

    def _may_evaluate(self) -> bool:
        """Not stopping, and the leader (on PostgreSQL only one replica evaluates)."""
        return not self._halt.is_set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Start no new evaluation; the one in flight ends after its current batch."""
        self._stop.set()

    async def wait_idle(self, *, grace_s: float) -> bool:
        """Wait up to ``grace_s`` seconds for the evaluation in flight; False if it is still on."""
        try:
            async with asyncio.timeout(grace_s), self._lock:
                return True
        except TimeoutError:
            return False

    async def evaluate(self, rule_id: str) -> RuleOutcome | None:
        """One scheduled evaluation of ``rule_id`` (the rules half of a tick, for one rule);
        None when stopping or the rule is gone."""
        async with self._lock:
            if not self._may_evaluate():
                return None
            rule_set = self.holder.current()  # once: the whole evaluation uses this set
            rule = rule_set.rule(rule_id)
            if rule is None or not rule.enabled:
                # A reload removed or disabled it; the job sync drops its job shortly.
                return None
            # The run's instant stays in flight until its rows are committed.
            with self.runtime.in_flight.writing() as now:
                try:
                    outcome = await asyncio.to_thread(self._scored_run, rule_set, rule, now)
                except Exception as exc:  # run_rule's own boundary held; recording failed
                    log_failure(
                        log,
                        "rule_run_not_recorded",
                        exc,
                        rule_id=rule_id,
                        rule_version=rule_set.version,
                    )
                    outcome = RuleOutcome(rule_id, error=error_text(exc))
            if outcome.fired:
                self._written()
            self.counters.evaluations[rule_id] += 1
            if outcome.error is not None:
                self.counters.rule_failures[rule_id] += 1
            self.counters.last_tick_at = now
            return outcome

    def _scored_run(self, rule_set: RuleSet, rule: Rule, now: datetime) -> RuleOutcome:
        """The leads due scored (:func:`~leadflow.engine.scoring_step.score_due_leads`), then
        the rule run: a rule never reads a score the model has not computed, whether its job
        or the funnel tick's scoring pass comes first. A scoring failure is logged and the
        rule runs on the stored scores, as after a failed pass."""
        model = rule_set.active_scoring
        if model is not None:
            from leadflow.engine.scoring_step import score_due_leads

            try:
                score_due_leads(self.runtime.engine, model, now, stop=self._halt)
            except Exception as exc:  # the rule's boundary: a scoring failure stops no rule
                log_failure(
                    log,
                    "scoring_before_rule_failed",
                    exc,
                    rule_id=rule.id,
                    rule_version=rule_set.version,
                )
        return run_rule(self.runtime, rule_set, rule, now, stop=self._halt)

    async def funnel_tick(self) -> dict[str, int]:
        """The funnel half of a tick: due SLA levels, then due nurture steps; how many each
        step handled (a step that raised is missing)."""
        async with self._lock:
            if not self._may_evaluate():
                return {}
            rule_set = self.holder.current()
            with self.runtime.in_flight.writing() as now:
                handled = await asyncio.to_thread(self._run_steps, rule_set, now)
            if any(handled.values()):
                self._written()
            self.counters.funnel_ticks += 1
            if len(handled) == len(self._steps):  # every step ran without error
                metrics.record_tick()
            self.counters.last_tick_at = now
            return handled

    async def retention(self) -> PruneReport | None:
        """One retention run (:func:`~leadflow.engine.retention.prune`) on the leader; None
        when stopping, not the leader, or the run failed (logged, tried again next time).

        Not under the evaluation lock: it deletes in short transactions of its own, so rule
        evaluations go on between its batches, and it stops between two batches as they do.
        """
        if not self._may_evaluate():
            return None
        now = self.runtime.clock.now()
        try:
            report = await asyncio.to_thread(
                prune, self.runtime.engine, self.runtime.settings, now, stop=self._halt
            )
        except Exception as exc:
            log_failure(log, "retention_failed", exc)
            return None
        self.counters.retention_runs += 1
        return report

    def _run_steps(self, rule_set: RuleSet, now: datetime) -> dict[str, int]:
        def failed(step: str) -> None:  # one failing step never stops the other or the daemon
            self.counters.funnel_failures[step] += 1
            exc = sys.exc_info()[1]  # called while the step's exception is handled
            assert exc is not None
            log_failure(log, "funnel_step_failed", exc, step=step, rule_version=rule_set.version)

        handled = run_funnel_steps(
            self.runtime, rule_set, now, stop=self._halt, on_failure=failed, steps=self._steps
        )
        if any(handled.values()):
            log.info("funnel_ticked", rule_version=rule_set.version, **handled)
        return handled


class _EitherSet:
    """Set when either event is: the daemon stopping, or this replica losing leadership."""

    def __init__(self, first: threading.Event, second: threading.Event | None) -> None:
        self._events = [event for event in (first, second) if event is not None]

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)
