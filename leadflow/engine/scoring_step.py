"""Scoring as a step of the funnel tick: the enabled model rescores every lead at ``now``.

``run_tick`` (``run --once``, ``simulate``, rule tests, the demo) runs it before the rules, so
a rule reads the scores of the same instant; the daemon runs it first in its funnel-tick job,
and a rule's own job reads the scores of the last funnel tick.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from leadflow.engine.runtime import Runtime, StopSignal
from leadflow.rule_language.model import RuleSet
from leadflow.scoring.rescoring import rescore

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
