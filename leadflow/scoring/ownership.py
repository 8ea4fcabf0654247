"""Who owns a lead's ``score``: the CRM (an import's or a posted lead's ``score``) or, while the
rules folder's scoring model is enabled, leadflow (docs/scoring.md).

An import's ``score`` under an enabled model stood until the next pass put the model's back,
long enough for the MQL rule to fire on it (owner, email, SLA) for a lead the model scores far
below the threshold. So while the model is on the column is left out, and the import or the
response says so once. A rules folder that cannot be read does not stop an import: the score
is then written as without a model, and the note says it could not be checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

from leadflow.ingest.column_plan import ColumnPlan, Target
from leadflow.rule_language.loader import check_rule_set
from leadflow.rule_language.model import RuleSet
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.settings import Settings

SCORE = "score"


@dataclass(frozen=True)
class ScoreColumn:
    """What becomes of a file's (or a request's) ``score``: the plan to read it with, and the
    sentence saying why the score was not taken or not checked (None: taken as usual)."""

    plan: ColumnPlan
    note: str | None = None


def model_in_folder(settings: Settings) -> tuple[ScoringModel | None, str | None]:
    """The rules folder's scoring model (None: no model, or no folder), or why it could not be
    read (the folder's first problem). Templates are not checked: only the model is wanted."""
    folder = settings.path(settings.paths.rules)
    if not folder.exists():
        return None, None
    rule_set, problems = check_rule_set(folder, settings)
    if rule_set is None or problems:
        first = str(problems[0]) if problems else f"{folder}: cannot be read"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return None, f"{first}{more}"
    return rule_set.scoring, None


def _score_target(plan: ColumnPlan) -> Target | None:
    """The plan's reading of the lead's ``score`` (not an attribute named so), if it has one."""
    return next((t for t in plan.targets if t.field == SCORE and t.group is None), None)


def score_column(
    plan: ColumnPlan,
    model: ScoringModel | None,
    unreadable: str | None = None,
    *,
    noun: str = "column",
    file_shown: Callable[[str], str] = str,
) -> ScoreColumn:
    """``plan`` without its ``score`` column while ``model`` is enabled; ``unreadable`` is why
    the rules folder could not be read (the column is then kept, as without a model).
    ``noun`` names what the client wrote: a file's column, a request's field; ``file_shown``
    how the model's file is named to it."""
    target = _score_target(plan)
    if target is None:
        return ScoreColumn(plan)
    column = plan.column_name(target.index)
    named = f"{noun} {column!r}" + ("" if column == SCORE else " (score)")
    if unreadable is not None:
        note = (
            f"{named} not checked against the scoring model: the rules folder has a problem "
            f"({unreadable}); the scores were written as given, and an enabled model puts its "
            "own back at its next pass"
        )
        return ScoreColumn(plan, note)
    if model is None or not model.enabled:
        return ScoreColumn(plan)
    where = file_shown(model.location.file)
    note = (
        f"{named} ignored: the scoring model ({where}) is enabled, so leadflow computes every "
        "lead's score; keep the CRM's score as a declared attribute (map it to "
        "attributes.NAME), or set enabled: false to take it (docs/scoring.md)"
    )
    kept = tuple(t for t in plan.targets if t is not target)
    return ScoreColumn(dataclasses.replace(plan, targets=kept), note)


def import_score_column(
    settings: Settings,
) -> Callable[[ColumnPlan], tuple[ColumnPlan, str | None]]:
    """``leadflow import``'s decision on a leads file's ``score`` column (the ingest runner's
    ``leads_plan``): the rules folder is read only for a file that has one."""

    def decide(plan: ColumnPlan) -> tuple[ColumnPlan, str | None]:
        if _score_target(plan) is None:
            return plan, None
        decided = score_column(plan, *model_in_folder(settings))
        return decided.plan, decided.note

    return decide


def posted_score(plan: ColumnPlan, rule_set: RuleSet | None) -> ScoreColumn:
    """:func:`score_column` of a posted lead, against the rule set the daemon runs (its last
    valid one: a folder being edited does not change what the passes do)."""
    if rule_set is None:
        return score_column(plan, None, "no valid rule set is loaded", noun="field")
    # A client of the API is told the model file's name, not where the server keeps it.
    return score_column(plan, rule_set.scoring, noun="field", file_shown=_file_name)


def _file_name(path: str) -> str:
    return PurePath(path).name
