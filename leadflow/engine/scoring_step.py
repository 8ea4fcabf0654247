"""Scoring as a step of the funnel tick: the enabled model rescores every lead at ``now``.

``run_tick`` (``run --once``, ``simulate``, rule tests, the demo) runs it before the rules, so
a rule reads the scores of the same instant. The daemon runs it first in its funnel-tick job
once ``scheduler.scoring_every`` has passed since the last pass (or the model changed); records
posted to the API are rescored at once, whatever the cadence. A steady pass recomputes only
the leads due (``leadflow/scoring/due.py``), so the cadence can be as short as the tick.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from leadflow.engine.runtime import Runtime, StopSignal
from leadflow.rule_language.model import RuleSet
from leadflow.scoring.rescoring import last_pass, rescore

log = structlog.get_logger("leadflow.scoring")


def run_scoring(
    runtime: Runtime, rule_set: RuleSet, now: datetime, *, stop: StopSignal | None = None
) -> int:
    """Rescore every lead with the rule set's enabled model; how many changed (0 without one)."""
    model = rule_set.active_scoring
    if model is None or (stop is not None and stop.is_set()):
        return 0
    outcome = rescore(runtime.engine, model, now)
    if outcome.changed:
        log.info("leads_rescored", changed=outcome.changed, model_version=outcome.model_version)
    return outcome.changed


def run_due_scoring(
    runtime: Runtime, rule_set: RuleSet, now: datetime, *, stop: StopSignal | None = None
) -> int:
    """The daemon's step: :func:`run_scoring` when ``scheduler.scoring_every`` has passed
    since the last pass, or the model changed since; else nothing (0)."""
    model = rule_set.active_scoring
    if model is None:
        return 0
    with runtime.engine.connect() as connection:
        previous = last_pass(connection)
    every = runtime.settings.scheduler.scoring_every
    if (
        previous is not None
        and previous.model_version == model.version
        and previous.at + every > now
    ):
        return 0
    return run_scoring(runtime, rule_set, now, stop=stop)
