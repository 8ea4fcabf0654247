"""The demo's leads as the scoring model sees them: who they are, what they do, and three
leads followed day by day.

The sample leads get the attributes the shipped model reads (industry, size, region, a free-mail
address now and then) and a history of activities over the last 60 days; while the demo runs,
some leads engage every two hours, so scores rise with engagement and fade without it. Three
leads have a story of their own: one engages until it crosses the MQL threshold, one engaged
weeks ago and fades, one only fits.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select

from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.store.tables import ACTIVITIES, AUDIT, LEADS, SCORE_CHANGES

INDUSTRIES = ("software", "fintech", "healthcare", "retail", "education", "manufacturing")
FREE_MAIL = ("gmail.com", "yahoo.com", "hotmail.com")
SOURCES = ("organic search", "paid search", "webinar", "referral", "trade show")
"""Where the sample leads came from (``attributes.source``: the report's first touch)."""
ENGAGEMENT: tuple[tuple[str, dict[str, Any], int], ...] = (
    # (activity type, properties, weight): what a lead does on a visit, most often to the site;
    # a campaign's email, guide and webinar name it (the report's touches for attribution)
    ("page_view", {"url": "/blog"}, 30),
    ("page_view", {"url": "/product"}, 20),
    ("page_view", {"url": "/pricing"}, 8),
    ("email_open", {"campaign": "March newsletter"}, 20),
    ("email_click", {"campaign": "March newsletter"}, 6),
    ("download", {"asset": "buyers-guide.pdf", "campaign": "Buyer's guide"}, 8),
    ("webinar", {"title": "Funnel basics", "campaign": "Funnel basics webinar"}, 3),
    ("form_fill", {"form": "contact"}, 5),
)
RISING, FADING, FITTING = 407, 412, 403
"""The followed leads (no deal of their own, so recycling never moves them)."""
STORY_LEADS = (RISING, FADING, FITTING)
STORY_ATTRIBUTES = {
    RISING: ("lead407@brightsoft.test", {"industry": "software", "employees": 800}),
    FADING: ("lead412@gmail.com", {"industry": "fintech", "employees": 60}),
    FITTING: ("lead403@carewell.test", {"industry": "healthcare", "employees": 350}),
}


def lead_profile(rng: random.Random, index: int, region: str) -> tuple[str, dict[str, Any]]:
    """(email, attributes) of the sample lead ``index`` (1-based)."""
    # From the index, not the generator: the sample's other draws stay what they were.
    source = SOURCES[index * 7 % len(SOURCES)]
    if index in STORY_ATTRIBUTES:
        email, attributes = STORY_ATTRIBUTES[index]
        return email, {**attributes, "region": region, "source": source}
    domain = rng.choice(FREE_MAIL) if rng.random() < 0.12 else f"customer{index % 400}.test"
    employees = max(1, int(rng.lognormvariate(4.6, 1.3)))  # a median near 100 staff
    return f"lead{index}@{domain}", {
        "industry": rng.choice(INDUSTRIES),
        "employees": employees,
        "region": region,
        "source": source,
    }


def _activity(
    lead_id: int, at: datetime, kind: str, properties: dict[str, Any], key: str
) -> dict[str, Any]:
    return {
        "external_id": f"web-{lead_id}-{key}",
        "lead_id": lead_id,
        "type": kind,
        "occurred_at": at,
        "properties": properties,
        "created_at": at,
    }


def _pick(rng: random.Random) -> tuple[str, dict[str, Any]]:
    kind, properties, _weight = rng.choices(ENGAGEMENT, weights=[w for *_x, w in ENGAGEMENT])[0]
    return kind, properties


def history(rng: random.Random, leads: int, start: datetime) -> list[dict[str, Any]]:
    """What the sample leads did over the 60 days before ``start``: most little, a few much."""
    rows = []
    for lead_id in range(1, leads + 1):
        if lead_id in STORY_LEADS:
            continue
        for number in range(min(int(rng.expovariate(1 / 5)), 30)):
            kind, properties = _pick(rng)
            days = min(rng.expovariate(1 / 15), 60.0)  # recent visits are the common ones
            at = start - timedelta(hours=1) - timedelta(days=days)
            rows.append(_activity(lead_id, at, kind, properties, f"h{number}"))
    # The fading lead: a burst three weeks to a few days ago, nothing since.
    for key, (days, kind, properties) in enumerate(
        (
            (20, "form_fill", {"form": "contact"}),
            (25, "download", {"asset": "buyers-guide.pdf"}),
            (25, "webinar", {"title": "Funnel basics"}),
            (4, "page_view", {"url": "/pricing"}),
            (4, "page_view", {"url": "/pricing"}),
        )
    ):
        at = start - timedelta(days=days)
        rows.append(_activity(FADING, at, kind, properties, f"h{key}"))
    return rows


RISING_STORY: tuple[tuple[int, str, dict[str, Any]], ...] = (
    # (hours after the demo starts, activity, properties): the lead warms up to an MQL on
    # the first day, so even a one-day demo shows it
    (2, "email_open", {}),
    (2, "email_click", {}),
    (4, "page_view", {"url": "/product"}),
    (4, "page_view", {"url": "/blog"}),
    (6, "download", {"asset": "buyers-guide.pdf"}),
    (6, "form_fill", {"form": "contact"}),
    (8, "page_view", {"url": "/pricing"}),
)


def engage(rng: random.Random, leads: int, start: datetime, now: datetime) -> list[dict[str, Any]]:
    """The activities of the two hours up to ``now``: twenty leads engage, and the rising lead
    follows its story."""
    rows = []
    others = [
        lead_id for lead_id in rng.sample(range(1, leads + 1), 22) if lead_id not in STORY_LEADS
    ]
    for lead_id in others[:20]:
        for number in range(rng.randint(1, 3)):
            kind, properties = _pick(rng)
            rows.append(_activity(lead_id, now, kind, properties, f"{now:%m%d%H}-{number}"))
    hours = (now - start) / timedelta(hours=1)
    for number, (after, kind, properties) in enumerate(RISING_STORY):
        if after == hours:
            rows.append(_activity(RISING, now, kind, properties, f"story{number}"))
    return rows


@dataclass(frozen=True)
class ScoreDay:
    score: int
    fit: int
    engagement: int
    grade: str


@dataclass(frozen=True)
class FollowedLead:
    external_id: str
    profile: str
    days: tuple[ScoreDay, ...]
    """The lead's score at the end of each simulated day."""


@dataclass(frozen=True)
class Crossing:
    """The moment the rising lead became an MQL: its score then and before, and its owner."""

    external_id: str
    at: datetime
    old_score: int
    new_score: int
    owner: str | None
    steps: tuple[tuple[datetime, int, str], ...]
    """(when, new score, what the lead did then) for each change up to the crossing."""


def followed(
    engine: Engine, model: ScoringModel, day_ends: list[datetime]
) -> tuple[list[FollowedLead], Crossing | None]:
    """The followed leads' scores at each day's end, read back from the score history."""
    with engine.connect() as connection:
        leads = connection.execute(
            select(
                LEADS.c.id,
                LEADS.c.external_id,
                LEADS.c.company,
                LEADS.c.attributes,
                LEADS.c.email,
            )
            .where(LEADS.c.id.in_(STORY_LEADS))
            .order_by(LEADS.c.id)
        ).all()
        changes = connection.execute(
            select(SCORE_CHANGES)
            .where(SCORE_CHANGES.c.lead_id.in_(STORY_LEADS))
            .order_by(SCORE_CHANGES.c.at, SCORE_CHANGES.c.id)
        ).all()
        crossing = _crossing(connection, changes)
    order = {lead_id: position for position, lead_id in enumerate(STORY_LEADS)}
    rows = []
    for lead in sorted(leads, key=lambda row: order[row.id]):
        history_of = [change for change in changes if change.lead_id == lead.id]
        days = []
        for end in day_ends:
            last = [change for change in history_of if change.at <= end]
            if not last:
                continue
            fit, engagement = last[-1].new_fit or 0, last[-1].new_engagement or 0
            grade = model.grades.grade(fit, engagement) if model.grades else ""
            days.append(ScoreDay(last[-1].new_score, fit, engagement, grade))
        attributes = lead.attributes or {}
        # What the shipped model's fit reads: company, region, the address.
        profile = (
            f"{lead.company or 'no company'}, {attributes.get('region')}, "
            f"@{lead.email.split('@', 1)[1]}"
        )
        rows.append(FollowedLead(lead.external_id, profile, tuple(days)))
    return rows, crossing


def _crossing(connection: Any, changes: Sequence[Any]) -> Crossing | None:
    became = connection.execute(
        select(AUDIT.c.at)
        .where(AUDIT.c.lead_id == RISING, AUDIT.c.action == "stage_changed")
        .order_by(AUDIT.c.id)
        .limit(1)
    ).scalar_one_or_none()
    if became is None:
        return None
    moves = [change for change in changes if change.lead_id == RISING and change.at <= became]
    if not moves:
        return None
    assigned = connection.execute(
        select(AUDIT.c.params).where(
            AUDIT.c.lead_id == RISING, AUDIT.c.action == "assigned", AUDIT.c.at == became
        )
    ).scalar_one_or_none()
    owner = (assigned or {}).get("rep", {}).get("name")
    external_id = connection.execute(
        select(LEADS.c.external_id).where(LEADS.c.id == RISING)
    ).scalar_one()
    done = connection.execute(
        select(ACTIVITIES.c.created_at, ACTIVITIES.c.type, ACTIVITIES.c.properties)
        .where(ACTIVITIES.c.lead_id == RISING, ACTIVITIES.c.actor_id.is_(None))  # not reps'
        .order_by(ACTIVITIES.c.id)
    ).all()
    steps = tuple(
        (
            move.at,
            move.new_score,
            ", ".join(
                _described(row.type, row.properties) for row in done if row.created_at == move.at
            )
            or _CAUSES.get(move.cause, move.cause),
        )
        for move in moves
    )
    return Crossing(external_id, became, moves[-1].old_score, moves[-1].new_score, owner, steps)


_CAUSES = {"model": "the model's first pass", "decay": "fading"}


def _described(kind: str, properties: dict[str, Any]) -> str:
    url = (properties or {}).get("url")
    return f"{kind} {url}" if url else kind


def insert_activities(engine: Engine, rows: list[dict[str, Any]]) -> None:
    if rows:
        with engine.begin() as connection:
            connection.execute(insert(ACTIVITIES), rows)
