"""Expected scores in a rule test: each lead's ``score``, ``fit``, ``engagement`` and ``grade``.

A step may expect scores as well as (or instead of) actions::

    - at: +14d
      scores:
        - {lead: L1, score: 52, fit: 40, engagement: 12, grade: A3}

Only the fields given are compared. With the rule set's scoring model enabled, the scores are
the ones the step's tick stored. With a model shipped ``enabled: false``, the model is still
evaluated, as written, at the step's instant (the rules keep reading the stored score): a
model is tested before it is turned on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from leadflow.rule_language.model import Located, RuleSet
from leadflow.rule_testing.scoring_preview import scored_leads
from leadflow.store.tables import LEADS

SCORE_FIELDS = ("score", "fit", "engagement", "grade")


@dataclass(frozen=True)
class ExpectedScore:
    lead: str
    values: tuple[tuple[str, str | None], ...]
    """(field, value as text) for each field the test gives, in SCORE_FIELDS order."""
    where: Located


LeadScores = Mapping[str, Mapping[str, str | None]]
"""lead external id -> field -> value as text."""


def model_note(rule_set: RuleSet) -> str | None:
    """What a report says when the model under test is not the one the daemon would use."""
    model = rule_set.scoring
    if model is None or model.enabled:
        return None
    return (
        f"scores: evaluates the scoring model of {model.location.file} as written; it has "
        "enabled: false, so the rules still read the stored scores"
    )


def observed_scores(
    engine: Engine, rule_set: RuleSet, now: datetime, leads: list[str]
) -> LeadScores:
    """The scores of ``leads`` at ``now``: as stored (by an enabled model's rescoring in the
    step's tick, or by the CRM without a model), or computed by a disabled model."""
    model = rule_set.scoring
    if model is not None and model.enabled:
        model = None
    scored = scored_leads(model, now, engine.dialect.name).subquery("scored")
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                LEADS.c.external_id,
                scored.c.score,
                scored.c.fit,
                scored.c.engagement,
                scored.c.grade,
            )
            .join_from(LEADS, scored, scored.c.id == LEADS.c.id)
            .where(LEADS.c.external_id.in_(leads))
        ).all()
    return {
        row.external_id: {
            name: None if value is None else str(value)
            for name, value in zip(SCORE_FIELDS, row[1:], strict=True)
        }
        for row in rows
    }


def score_differences(expected: tuple[ExpectedScore, ...], observed: LeadScores) -> list[str]:
    """One line per lead whose expected fields differ: expected vs got."""
    lines = []
    for item in expected:
        got = observed.get(item.lead)
        if got is None:
            lines.append(f"  {item.lead} ({item.where}): no lead with this external id")
            continue
        if all(got[name] == value for name, value in item.values):
            continue
        wanted = ", ".join(f"{name} {_shown(value)}" for name, value in item.values)
        found = ", ".join(f"{name} {_shown(got[name])}" for name, _value in item.values)
        lines.append(f"  {item.lead} ({item.where}): expected {wanted}; got {found}")
    return lines


def _shown(value: str | None) -> str:
    return "null" if value is None else value
