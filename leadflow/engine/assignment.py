"""Choosing the rep who gets an MQL: pool routing, capacity, round robin kept across restarts.

Reps are few (tens to hundreds), so candidates are filtered in Python; the leads are never
loaded: open MQLs per rep are counted by the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from leadflow.rule_language.actions import Assign
from leadflow.rule_language.fields import Subject, field_catalog
from leadflow.settings import Settings
from leadflow.store.models import AssignmentRotation, Lead, Rep
from leadflow.store.tables import LEADS, REPS, ROTATIONS


@dataclass(frozen=True)
class AssignmentChoice:
    """The chosen rep, or ``None`` with the reason the lead has to wait in the queue."""

    rep: Rep | None
    pool: str | None
    how: str


def pool_for(lead: Lead, action: Assign, settings: Settings) -> str | None:
    """The pool named by the action, or the one its ``route_by`` field routes the lead to."""
    if action.pool is not None:
        return action.pool
    assert action.route_by is not None  # the action's validator guarantees one of the two
    spec = field_catalog(Subject.LEAD, settings).get(action.route_by)
    value = spec.read(lead_record(lead)) if spec is not None else None
    return (
        action.pools.get(str(value), action.default_pool)
        if value is not None
        else action.default_pool
    )


def lead_record(lead: Lead) -> dict[str, object]:
    return {column: getattr(lead, column) for column in Lead.model_fields}


def choose_rep(
    session: Session,
    lead: Lead,
    action: Assign,
    settings: Settings,
    now: datetime,
    *,
    exclude: frozenset[int] | set[int] = frozenset(),
) -> AssignmentChoice:
    pool = pool_for(lead, action, settings)
    if pool is None:
        return AssignmentChoice(None, None, "no pool matches the lead")
    members = [
        rep for rep in _all_reps(session) if pool in (rep.pools or []) and rep.id not in exclude
    ]
    if not members:
        return AssignmentChoice(None, pool, f"pool {pool!r} has no reps")
    load = _open_mqls(session, [rep.id for rep in members if rep.id is not None], settings)
    available = [rep for rep in members if _can_take(rep, load.get(rep.id or 0, 0), now)]
    if not available:
        return AssignmentChoice(
            None,
            pool,
            f"all {len(members)} reps of pool {pool!r} are inactive, out of office or at capacity",
        )
    if action.prefer_previous_owner and lead.previous_owner_id is not None:
        previous = next((rep for rep in available if rep.id == lead.previous_owner_id), None)
        if previous is not None:
            return AssignmentChoice(previous, pool, "previous owner")
    if action.strategy == "least_loaded":
        chosen = min(available, key=lambda rep: (load.get(rep.id or 0, 0), rep.id or 0))
        return AssignmentChoice(chosen, pool, "least loaded")
    return AssignmentChoice(_next_in_rotation(session, pool, available, now), pool, "round robin")


def _all_reps(session: Session) -> list[Rep]:
    """Every rep, read once per transaction (an evaluation batch), not once per lead."""
    cached: list[Rep] | None = session.info.get(_REPS_KEY)
    if cached is None:
        cached = list(session.scalars(select(Rep).order_by(REPS.c.id)))
        session.info[_REPS_KEY] = cached
    return cached


_REPS_KEY = "leadflow.assignment.reps"


def _can_take(rep: Rep, open_mqls: int, now: datetime) -> bool:
    if not rep.active:
        return False
    if rep.out_of_office_until is not None and rep.out_of_office_until > now:
        return False
    return rep.capacity is None or open_mqls < rep.capacity


def _open_mqls(session: Session, rep_ids: list[int], settings: Settings) -> dict[int, int]:
    query = (
        select(LEADS.c.owner_id, func.count())
        .where(LEADS.c.stage == settings.stages.mql, LEADS.c.owner_id.in_(rep_ids))
        .group_by(LEADS.c.owner_id)
    )
    return {int(owner): int(count) for owner, count in session.execute(query) if owner is not None}


def _next_in_rotation(session: Session, pool: str, available: list[Rep], now: datetime) -> Rep:
    """The first available rep after the pool's last pick, in id order; the pick is stored."""
    query = select(AssignmentRotation).where(ROTATIONS.c.pool == pool)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    rotation = session.scalars(query).one_or_none()
    last = rotation.last_rep_id if rotation is not None and rotation.last_rep_id is not None else 0
    chosen = next((rep for rep in available if (rep.id or 0) > last), available[0])
    if rotation is None:
        session.add(AssignmentRotation(pool=pool, last_rep_id=chosen.id, updated_at=now))
    else:
        rotation.last_rep_id = chosen.id
        rotation.updated_at = now
    session.flush()
    return chosen
