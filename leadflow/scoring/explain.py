"""Why a lead has its score: every contribution, computed by the same SQL as the pass.

The fit criteria's terms and each engagement criterion's whole points come from
:mod:`leadflow.scoring.sql` restricted to the one lead, so the explanation's lines add up to
what a rescoring pass at the same instant stores; under each engagement criterion are the
activities that earned it, each with its decayed value, and the ones a machine made (kept, worth
nothing). The rules' adjustment is the third part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, select

from leadflow.durations import format_duration
from leadflow.rule_language.scoring_model import EngagementCriterion, ScoringModel
from leadflow.scoring.first_score import change_reason, is_first_score
from leadflow.scoring.rescoring import last_pass
from leadflow.scoring.sql import (
    STORED_SCORE,
    counted_activities,
    criterion_points,
    decayed_value,
    fit_terms,
)
from leadflow.store.tables import ACTIVITIES, LEADS, SCORE_CHANGES

HISTORY_SHOWN = 10


@dataclass(frozen=True)
class EarningActivity:
    external_id: str
    type: str
    occurred_at: datetime
    value: float
    """What it is worth at the explanation's instant, before the criterion's cap and rounding."""


@dataclass(frozen=True)
class Contribution:
    part: str
    """``fit``, ``engagement`` or ``adjustment``."""
    criterion: str
    points: int
    description: str = ""
    rule: str = ""
    """How the points are counted: the condition's points, the decay, the cap."""
    raw: float | None = None
    """Engagement: the decayed sum before cap and rounding."""
    activities: tuple[EarningActivity, ...] = ()
    machine: tuple[EarningActivity, ...] = ()
    """Activities of the criterion's types that a machine made: recorded, worth nothing."""


@dataclass(frozen=True)
class ScoreExplanation:
    lead: str
    at: datetime
    model_version: str | None
    model_enabled: bool
    model_ran_here: bool
    """The store's last scoring pass ran this model version (the stored scores are its, even
    with ``enabled: false`` in the folder now, or when ``leadflow demo`` turned it on in its
    own store)."""
    stored: Mapping[str, Any]
    """score, fit, engagement, adjustment, grade and scored_at as stored now."""
    contributions: tuple[Contribution, ...]
    history: tuple[Mapping[str, Any], ...]
    """The last score changes, the last written first (``at`` is the pass's clock, which a
    ``--now`` in the past sets before the rows written earlier)."""

    @property
    def fit(self) -> int:
        return sum(item.points for item in self.contributions if item.part == "fit")

    @property
    def engagement(self) -> int:
        return sum(item.points for item in self.contributions if item.part == "engagement")

    @property
    def adjustment(self) -> int:
        """What the rules' adjust_score/set_score actions added: 0 when they added nothing."""
        return sum(item.points for item in self.contributions if item.part == "adjustment")

    @property
    def total(self) -> int:
        return sum(item.points for item in self.contributions)

    @property
    def stored_from(self) -> str:
        """Where the stored score came from: ``scoring_pass`` (a pass stored it, rules'
        adjustments since included) or ``import_or_api`` (the CRM's score, written by an
        import or the API: before any pass scored the lead, or since the last one, while no
        model was live). A pass stores score = fit + engagement + adjustment and records the
        change; a written score moves neither the parts nor the history, whose first row is the
        last written (:func:`_history`)."""
        stored = self.stored
        parts = (stored["fit"], stored["engagement"], stored["adjustment"])
        if any(part is None for part in parts) or sum(parts) != stored["score"]:
            return "import_or_api"
        if self.history and self.history[0]["new_score"] != stored["score"]:
            return "import_or_api"
        return "scoring_pass"

    @property
    def matches_stored(self) -> bool:
        return self.model_version is not None and self.total == self.stored["score"]

    def as_json(self) -> dict[str, Any]:
        return {
            "lead": self.lead,
            "at": self.at.isoformat(),
            "model_version": self.model_version,
            "model_enabled": self.model_enabled,
            "model_ran_here": self.model_ran_here,
            "stored_from": self.stored_from,
            "stored": {
                key: (value.isoformat() if isinstance(value, datetime) else value)
                for key, value in self.stored.items()
            },
            "computed": (
                {
                    "score": self.total,
                    "fit": self.fit,
                    "engagement": self.engagement,
                    "adjustment": self.adjustment,
                }
                if self.model_version is not None
                else None
            ),
            "contributions": [
                {
                    "part": item.part,
                    "criterion": item.criterion,
                    "points": item.points,
                    "description": item.description,
                    "rule": item.rule,
                    "raw": item.raw,
                    "activities": [_activity_json(a) for a in item.activities],
                    "machine_activities": [_activity_json(a) for a in item.machine],
                }
                for item in self.contributions
            ],
            "history": [
                {
                    key: (value.isoformat() if isinstance(value, datetime) else value)
                    for key, value in row.items()
                }
                for row in self.history
            ],
        }


def _activity_json(activity: EarningActivity) -> dict[str, Any]:
    return {
        "external_id": activity.external_id,
        "type": activity.type,
        "occurred_at": activity.occurred_at.isoformat(),
        "value": round(activity.value, 6),
    }


def explain_score(
    engine: Engine,
    model: ScoringModel | None,
    external_id: str,
    now: datetime,
    *,
    as_stored: bool = False,
) -> ScoreExplanation | None:
    """The explanation of the lead's score at ``now``; None when there is no such lead.

    ``as_stored``: at the instant the enabled model last stored the lead's score
    (``scored_at``) instead, so the lines add up to the stored score exactly however long ago
    that pass ran (a lead never scored is explained at ``now``)."""
    with engine.connect() as connection:
        lead = (
            connection.execute(
                select(*STORED_SCORE, LEADS.c.scored_at).where(LEADS.c.external_id == external_id)
            )
            .mappings()
            .first()
        )
        if lead is None:
            return None
        stored = {
            "score": lead["score"],
            "fit": lead["score_fit"],
            "engagement": lead["score_engagement"],
            "adjustment": lead["score_adjustment"],
            "grade": lead["score_grade"],
            "scored_at": lead["scored_at"],
        }
        last = last_pass(connection)
        ran_here = model is not None and last is not None and last.model_version == model.version
        applied = model is not None and (model.enabled or ran_here)
        if as_stored and applied and lead["scored_at"] is not None:
            now = lead["scored_at"]
        contributions: list[Contribution] = []
        if model is not None:
            contributions += _fit(connection, model, lead["id"], now)
            contributions += _engagement(connection, model, lead["id"], now)
            if lead["score_adjustment"]:
                contributions.append(
                    Contribution(
                        "adjustment",
                        "rules",
                        lead["score_adjustment"],
                        "what adjust_score/set_score actions added (see the history)",
                    )
                )
        history = _history(connection, lead["id"])
    return ScoreExplanation(
        lead=external_id,
        at=now,
        model_version=model.version if model is not None else None,
        model_enabled=model is not None and model.enabled,
        model_ran_here=ran_here,
        stored=stored,
        contributions=tuple(contributions),
        history=history,
    )


def _fit(
    connection: Connection, model: ScoringModel, lead_id: int, now: datetime
) -> list[Contribution]:
    terms = fit_terms(model, now)
    if not terms:
        return []
    row = connection.execute(
        select(*(term.label(f"c{index}") for index, (_id, term) in enumerate(terms))).where(
            LEADS.c.id == lead_id
        )
    ).one()
    return [
        Contribution("fit", item.id, int(points), item.description, f"{item.points:+d} when met")
        for item, points in zip(model.fit, row, strict=True)
        if points
    ]


def _engagement(
    connection: Connection, model: ScoringModel, lead_id: int, now: datetime
) -> list[Contribution]:
    dialect = connection.dialect.name
    found = []
    for item in model.engagement:
        totals = connection.execute(
            criterion_points(item, now, dialect, lambda column: column == lead_id)
        ).first()
        earning = _activities(connection, item, lead_id, now, machine=False)
        machine = _activities(connection, item, lead_id, now, machine=True)
        if totals is None and not machine:
            continue
        found.append(
            Contribution(
                "engagement",
                item.id,
                int(totals.points) if totals is not None else 0,
                item.description,
                _counting(item),
                float(totals.raw) if totals is not None else None,
                earning,
                machine,
            )
        )
    return found


def _counting(item: EngagementCriterion) -> str:
    text = f"{item.points:+d} per {' or '.join(item.activity_types)}, {item.decay_text()}"
    if item.cap is not None:
        period = f" per {format_duration(item.cap_per)}" if item.cap_per is not None else ""
        text += f", at most {item.cap}{period}"
    return text


def _activities(
    connection: Connection,
    item: EngagementCriterion,
    lead_id: int,
    now: datetime,
    *,
    machine: bool,
) -> tuple[EarningActivity, ...]:
    clauses = counted_activities(item, now, machine=machine)
    rows = connection.execute(
        select(
            ACTIVITIES.c.external_id,
            ACTIVITIES.c.type,
            ACTIVITIES.c.occurred_at,
            decayed_value(item, now, connection.dialect.name).label("value"),
        )
        .where(ACTIVITIES.c.lead_id == lead_id, and_(*clauses))
        .order_by(ACTIVITIES.c.occurred_at.desc(), ACTIVITIES.c.id.desc())
    )
    return tuple(
        EarningActivity(
            row.external_id, row.type, row.occurred_at, 0.0 if machine else float(row.value)
        )
        for row in rows
    )


def _history(connection: Connection, lead_id: int) -> tuple[Mapping[str, Any], ...]:
    """The lead's last changes in the order they were written, newest first: by id, not by
    ``at``. ``at`` is the instant the pass computed for (its clock: a ``run --once --now`` in
    the past writes a row dated before the rows above it), and the first row must be the one
    that wrote the stored score (:attr:`ScoreExplanation.stored_from`)."""
    t = SCORE_CHANGES
    rows = connection.execute(
        select(
            t.c.at,
            t.c.old_score,
            t.c.new_score,
            t.c.cause,
            t.c.detail,
            t.c.model_version,
            t.c.new_fit,
            t.c.new_engagement,
            t.c.old_fit,
            t.c.old_engagement,
        )
        .where(t.c.lead_id == lead_id)
        .order_by(t.c.id.desc())
        .limit(HISTORY_SHOWN)
    )
    return tuple(
        {
            "at": row.at,
            "old_score": row.old_score,
            "new_score": row.new_score,
            "cause": row.cause,
            "detail": row.detail,
            "model_version": row.model_version,
            "fit": row.new_fit,
            "engagement": row.new_engagement,
            # The pass's cause reads as a change of the lead's data; this is its first score.
            "first_score": is_first_score(row),
            "why": change_reason(row),
        }
        for row in rows
    )
