"""The examples' columns, computed in the database in a handful of set-based queries.

- a **fit criterion** is 1 when the lead meets its condition, else 0 (one ``CASE`` per
  criterion, in one ``SELECT`` over the leads);
- a **new engagement criterion** is the lead's decayed count of its activities as of ``now``
  (``criterion_points``' sum before cap and rounding, with points 1): the model's points for
  it are then points per fresh activity;
- a **current engagement criterion** is its points as the current model computes them (decay,
  window and cap, per period too) before the rounding, divided by its points: the value in
  units of "one activity's points", so new points keep its cap's meaning, and the proposal's
  score rounds its new points times that value, as the deployed model will (the old model's
  whole points, divided, would be coarser: 1 point per view made 1.4 views 1);
- the **raw columns** the baseline regression reads: each lead's attributes as stored, and its
  activities counted per type (people's, up to ``now``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, func, literal, select, union_all

from leadflow.rule_language.conditions import EvaluationContext
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.rule_language.to_sql import to_where
from leadflow.scoring.learning_candidates import Candidate
from leadflow.scoring.sql import criterion_points
from leadflow.store.tables import ACTIVITIES, LEADS
from leadflow.store.types import UTCDateTime


@dataclass(frozen=True)
class LeadFacts:
    """What every lead holds that a fit reads beside the criteria."""

    attributes: Mapping[int, Mapping[str, Any]]
    stored_scores: Mapping[int, int]
    activity_counts: Mapping[int, Mapping[str, int]]
    """Per lead, per activity type: people's activities up to ``now``."""


def read_lead_facts(connection: Connection, now: datetime) -> LeadFacts:
    attributes: dict[int, Mapping[str, Any]] = {}
    scores: dict[int, int] = {}
    for lead_id, stored, score in connection.execute(
        select(LEADS.c.id, LEADS.c.attributes, LEADS.c.score)
    ):
        attributes[lead_id] = stored if isinstance(stored, dict) else {}
        scores[lead_id] = score
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    query = (
        select(ACTIVITIES.c.lead_id, ACTIVITIES.c.type, func.count())
        .where(
            ACTIVITIES.c.lead_id.is_not(None),
            ACTIVITIES.c.machine.is_(False),
            ACTIVITIES.c.occurred_at <= literal(now, UTCDateTime()),
        )
        .group_by(ACTIVITIES.c.lead_id, ACTIVITIES.c.type)
    )
    for lead_id, kind, count in connection.execute(query):
        counts[lead_id][kind] = int(count)
    return LeadFacts(attributes, scores, dict(counts))


def stored_activity_types(connection: Connection) -> set[str]:
    """Every activity type the store holds (any lead, any time): what ``--exclude`` may name."""
    return set(connection.scalars(select(ACTIVITIES.c.type).distinct()))


def activity_leads(facts: LeadFacts, lead_ids: Sequence[int]) -> dict[str, int]:
    """Per activity type, how many examples' leads did it (an example per deal counts each)."""
    found: dict[str, int] = defaultdict(int)
    for lead_id in lead_ids:
        for kind in facts.activity_counts.get(lead_id, {}):
            found[kind] += 1
    return dict(found)


def criterion_values(
    connection: Connection,
    model: ScoringModel,
    candidates: Sequence[Candidate],
    now: datetime,
) -> tuple[dict[int, list[float]], dict[int, int]]:
    """Per lead, one value per criterion of ``model`` (its fit criteria, then its engagement
    criteria, in order); ``candidates`` says which are the current model's. Also per lead, the
    current model's engagement: its criteria's whole points as a pass stores them."""
    current = {item.id: item.current_points for item in candidates}
    context = EvaluationContext(now, {})
    indicators = [
        case((to_where(item.condition, LEADS, context), 1), else_=0).label(f"c{index}")
        for index, item in enumerate(model.fit)
    ]
    width = len(model.fit) + len(model.engagement)
    values: dict[int, list[float]] = {}
    current_engagement: dict[int, int] = defaultdict(int)
    for row in connection.execute(select(LEADS.c.id, *indicators)):
        values[row[0]] = [float(flag) for flag in row[1:]] + [0.0] * len(model.engagement)
    if not model.engagement:
        return values, dict(current_engagement)
    dialect = connection.dialect.name
    position = {item.id: len(model.fit) + index for index, item in enumerate(model.engagement)}
    parts = union_all(*(criterion_points(item, now, dialect) for item in model.engagement))
    for lead_id, criterion, points, raw, capped in connection.execute(parts):
        entry = values.setdefault(lead_id, [0.0] * width)
        unit = current.get(criterion)
        if unit:
            entry[position[criterion]] = float(capped) / unit
            current_engagement[lead_id] += int(points)
        else:
            entry[position[criterion]] = float(raw)
    return values, dict(current_engagement)
