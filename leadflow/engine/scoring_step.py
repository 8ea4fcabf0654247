"""Scoring as a step of the funnel tick: the enabled model rescores every lead at ``now``.

``run_tick`` (``run --once``, ``simulate``, rule tests, the demo) runs a pass before the rules,
so a rule reads the scores of the same instant. The daemon runs a pass first in its
funnel-tick job once ``scheduler.scoring_every`` has passed since the last pass (or the model
changed); records posted to the API and leads imported are rescored at once, whatever the
cadence. A steady pass recomputes only the leads due (``leadflow/scoring/due.py``), so the
cadence can be as short as the tick.

Between two passes no rule reads a score the model has not computed: before each rule
evaluation (and each funnel tick that runs no pass) the daemon scores the leads due
(:func:`score_due_leads`): never scored, written since their last scoring, or their next
change come. With nothing due that is one indexed query.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import Engine

from leadflow.engine.runtime import Runtime, StopSignal
from leadflow.rule_language.model import RuleSet
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.scoring.due import due_leads
from leadflow.scoring.rescoring import MOST_DUE, last_pass, rescore

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
    since the last pass, or the model changed since; else the leads due only
    (:func:`score_due_leads`), so the SLA and nurture steps read no unscored lead."""
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
        return score_due_leads(runtime.engine, model, now, stop=stop)
    return run_scoring(runtime, rule_set, now, stop=stop)


def score_due_leads(
    engine: Engine,
    model: ScoringModel,
    now: datetime,
    *,
    stop: StopSignal | None = None,
    logged: bool = True,
) -> int:
    """Score the leads a pass at ``now`` would change, before anything reads their scores;
    how many changed.

    With a pass of ``model`` already run, those are the leads due (``scoring/due.py``: never
    scored, written since, or their next change come), found by one indexed query and
    rescored as the API rescores posted leads: each lead exactly as a full pass at ``now``
    would, and not recorded as a pass (the cadence of ``scheduler.scoring_every`` and what
    the next pass compares with stay as they were). With no pass of this model yet (the
    first start, a changed model), or more leads due than a list is worth, it is a recorded
    pass of every lead, as the next funnel tick would have run. ``logged``: a
    ``leads_rescored`` line when scores changed (a command that prints the count says no)."""
    if stop is not None and stop.is_set():
        return 0
    with engine.connect() as connection:
        previous = last_pass(connection)
        first = previous is None or previous.model_version != model.version
        due = [] if first else due_leads(connection, now)
    if not first and not due:
        return 0
    outcome = rescore(engine, model, now, lead_ids=due if 0 < len(due) <= MOST_DUE else None)
    if outcome.changed and logged:
        log.info(
            "leads_rescored",
            changed=outcome.changed,
            model_version=outcome.model_version,
            due=len(due) if due else None,
        )
    return outcome.changed
