"""One tick of the funnel: the due rules, then SLA escalations, then nurture steps.

Every way leadflow moves the funnel runs this pass, and this module is the only place its order
and parts are written down, so ``leadflow run --once``, ``leadflow simulate``, the demo, rule
tests and the daemon cannot drift apart. A tick has two halves:

- the rules half, :func:`run_due_rules`: each enabled rule whose next scheduled time has come
  (as ``rule_runs`` says), evaluated inside its own error boundary;
- the funnel half, :func:`run_funnel_steps`: the :data:`FUNNEL_STEPS` in order, each working
  through the rows that are due.

:func:`run_tick` runs a scoring pass, then both halves, one after the other: the scores first,
so no rule reads a score the model has not computed; the rules next, so what they start (an
SLA timer, a nurture enrollment whose first step is due at once) is handled in the same tick.
The daemon runs the halves on schedules of their own: each rule on its own job
(:func:`~leadflow.engine.evaluation.run_rule`, what the rules half does for each due rule,
after scoring the leads due: :func:`~leadflow.engine.scoring_step.score_due_leads`) and the
funnel half on its funnel-tick job, scoring first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from leadflow.engine.evaluation import PlanSink, RuleOutcome, run_rule
from leadflow.engine.nurture import run_nurture_steps
from leadflow.engine.rule_runs import is_due, last_started_times
from leadflow.engine.runtime import Runtime, StopSignal
from leadflow.engine.sla import run_sla_escalations
from leadflow.rule_language.model import RuleSet


class FunnelStep(Protocol):
    """Handles the rows of one kind that are due at ``now``; returns how many it handled."""

    def __call__(
        self, runtime: Runtime, rule_set: RuleSet, now: datetime, *, stop: StopSignal | None = None
    ) -> int: ...


FUNNEL_STEPS: Sequence[tuple[str, FunnelStep]] = (
    ("sla", run_sla_escalations),
    ("nurture", run_nurture_steps),
)
"""The funnel half, in order, by the names its counts are reported (and logged) under."""


@dataclass(frozen=True)
class TickReport:
    """What one tick did."""

    rules: list[RuleOutcome]
    """The outcome of each rule evaluated (with a dry run, what each would do)."""
    funnel: dict[str, int] | None
    """Rows each funnel step handled, by step name; None when the funnel half did not run."""


def run_tick(
    runtime: Runtime,
    rule_set: RuleSet,
    now: datetime,
    *,
    dry_run: bool = False,
    only: Iterable[str] | None = None,
    force: bool = False,
    first_seen: datetime | None = None,
    rounds: int = 1,
    plan_to: PlanSink | None = None,
) -> TickReport:
    """One pass of the funnel as of ``now``: the scoring model's rescoring (when the rule set
    has an enabled one), the due rules, then the funnel steps.

    The funnel half writes, so a ``dry_run`` (which only plans the rules, and reads the stored
    scores) leaves it out; so does a tick of ``only`` some rules, which scores only the leads
    due (never scored, written since, next change come: what a pass would change) and
    evaluates those rules and nothing else. ``force``,
    ``first_seen``, ``plan_to``: see :func:`run_due_rules`; ``rounds``: see
    :func:`run_funnel_steps`.
    """
    if not dry_run:
        from leadflow.engine.scoring_step import run_scoring, score_due_leads

        if only is None:
            run_scoring(runtime, rule_set, now)
        elif rule_set.active_scoring is not None:  # the rules read no lead the model has not scored
            score_due_leads(runtime.engine, rule_set.active_scoring, now)
    rules = run_due_rules(
        runtime,
        rule_set,
        now,
        dry_run=dry_run,
        only=only,
        force=force,
        first_seen=first_seen,
        plan_to=plan_to,
    )
    if dry_run or only is not None:
        return TickReport(rules, None)
    return TickReport(rules, run_funnel_steps(runtime, rule_set, now, rounds=rounds))


def run_due_rules(
    runtime: Runtime,
    rule_set: RuleSet,
    now: datetime,
    *,
    dry_run: bool = False,
    only: Iterable[str] | None = None,
    force: bool = False,
    first_seen: datetime | None = None,
    plan_to: PlanSink | None = None,
) -> list[RuleOutcome]:
    """The rules half: evaluate every enabled rule that is due as of ``now`` (all of them with
    ``force``; of those, only the ids in ``only`` when given).

    ``first_seen``: when the caller started watching the rules (a simulation's start); a cron
    rule that never ran then waits for its first cron time instead of running at once.
    ``plan_to``: a dry run hands each planned firing to it as it is read (see
    :func:`~leadflow.engine.evaluation.evaluate_rule`).
    """
    wanted = set(only) if only is not None else None
    last_runs = last_started_times(runtime.engine)
    outcomes = []
    for rule in rule_set.enabled_rules:
        if wanted is not None and rule.id not in wanted:
            continue
        if not force and not is_due(rule, last_runs.get(rule.id), now, first_seen):
            continue
        outcomes.append(run_rule(runtime, rule_set, rule, now, dry_run=dry_run, plan_to=plan_to))
    return outcomes


def run_funnel_steps(
    runtime: Runtime,
    rule_set: RuleSet,
    now: datetime,
    *,
    stop: StopSignal | None = None,
    rounds: int = 1,
    on_failure: Callable[[str], None] | None = None,
    steps: Sequence[tuple[str, FunnelStep]] = FUNNEL_STEPS,
) -> dict[str, int]:
    """The funnel half: each of ``steps`` in order; how many rows each handled, by name.

    ``stop`` is asked before each step and, inside a step, between its batches. ``rounds``
    repeats each step, while it still handles rows, up to that many times: one pass moves an
    SLA timer one level, so a caller that skipped the ticks in between (a rule test's step)
    catches up on every level due by ``now``. A step that raises propagates, unless
    ``on_failure`` is given: it is then called with the step's name while the exception is
    being handled (so it can log it), and the next step runs.
    """
    handled: dict[str, int] = {}
    for name, step in steps:
        if stop is not None and stop.is_set():
            break
        try:
            handled[name] = _repeated(step, runtime, rule_set, now, stop=stop, rounds=rounds)
        except Exception:  # the caller's boundary: one failing step never stops the next
            if on_failure is None:
                raise
            on_failure(name)
    return handled


def _repeated(
    step: FunnelStep,
    runtime: Runtime,
    rule_set: RuleSet,
    now: datetime,
    *,
    stop: StopSignal | None,
    rounds: int,
) -> int:
    total = 0
    for _ in range(rounds):
        count = step(runtime, rule_set, now, stop=stop)
        total += count
        if not count:
            break
    return total
