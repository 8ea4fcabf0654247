"""Choosing the rep who gets an MQL: pool routing, capacity, round robin kept across restarts.

Reps are few (tens to hundreds), so candidates are filtered in Python; the leads are never
loaded: open MQLs per rep are counted by the database, once per evaluation batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from leadflow.engine.plain_rows import record_of
from leadflow.engine.pool_staffing import unstaffed_reason
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
    value = spec.read(record_of(lead)) if spec is not None else None
    return (
        action.pools.get(str(value), action.default_pool)
        if value is not None
        else action.default_pool
    )


class Roster(Protocol):
    """The reps an assignment chooses from, their open MQLs and where round robin stands.

    :class:`StoredRoster` reads and writes the store at each call (one SLA reassignment);
    a rule's evaluation batch keeps one in memory for the whole batch
    (:class:`leadflow.engine.firing_batch.BatchRoster`).
    """

    def members(self, pool: str) -> list[Member]:
        """The reps of ``pool``, in id order."""
        ...

    def pools(self) -> Mapping[str, list[Member]]:
        """Every pool's reps, by pool name: what a lead routed to an empty pool is told."""
        ...

    def open_mqls(self, rep_ids: list[int]) -> Mapping[int, int]:
        """How many MQLs each of ``rep_ids`` owns now (reps with none may be left out)."""
        ...

    def last_pick(self, pool: str) -> int | None:
        """The rep the pool's round robin gave the last lead to."""
        ...

    def picked(self, pool: str, rep_id: int) -> None:
        """Remember ``rep_id`` as the pool's last pick."""
        ...


def choose_rep(
    roster: Roster,
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
    members = roster.members(pool)
    if not members:
        return AssignmentChoice(None, pool, unstaffed_reason(pool, roster.pools()))
    if exclude:
        members = [member for member in members if member.id not in exclude]
    if not members:
        return AssignmentChoice(None, pool, f"pool {pool!r} has no reps")
    load = roster.open_mqls([member.id for member in members])

    def can_take(member: Member) -> bool:
        return member.can_take(load.get(member.id, 0), now)

    # The members who can take the lead are found as far as the choice needs, in id order,
    # not listed whole for every lead (a batch assigns thousands).
    first = next((member for member in members if can_take(member)), None)
    if first is None:
        return AssignmentChoice(
            None,
            pool,
            f"all {len(members)} reps of pool {pool!r} are inactive, out of office or at capacity",
        )
    if action.prefer_previous_owner and lead.previous_owner_id is not None:
        previous_id = lead.previous_owner_id
        previous = next((m for m in members if m.id == previous_id and can_take(m)), None)
        if previous is not None:
            return AssignmentChoice(previous.rep, pool, "previous owner")
    if action.strategy == "least_loaded":
        available = [member for member in members if can_take(member)]
        chosen = min(available, key=lambda member: (load.get(member.id, 0), member.id))
        return AssignmentChoice(chosen.rep, pool, "least loaded")
    last = roster.last_pick(pool) or 0
    # The first who can take it after the last pick, else (round robin wraps) the first.
    chosen = (
        first
        if first.id > last
        else next((m for m in members if m.id > last and can_take(m)), first)
    )
    roster.picked(pool, chosen.id)
    return AssignmentChoice(chosen.rep, pool, "round robin")


@dataclass(frozen=True, slots=True)
class Member:
    """A rep as assignment sees it, read once from the ORM object (a batch asks thousands of
    times)."""

    rep: Rep
    id: int
    active: bool
    out_of_office_until: datetime | None
    capacity: int | None

    def can_take(self, open_mqls: int, now: datetime) -> bool:
        if not self.active:
            return False
        if self.out_of_office_until is not None and self.out_of_office_until > now:
            return False
        return self.capacity is None or open_mqls < self.capacity


def pool_members(reps: Iterable[Rep]) -> dict[str, list[Member]]:
    """The members of every pool, by pool name, in the order of ``reps``."""
    pools: dict[str, list[Member]] = {}
    for rep in reps:
        member = Member(rep, rep.id or 0, rep.active, rep.out_of_office_until, rep.capacity)
        for pool in rep.pools or []:
            pools.setdefault(pool, []).append(member)
    return pools


def stored_pools(session: Session) -> dict[str, list[Member]]:
    """Every pool's members as the store has them, by pool name (reps are few)."""
    return pool_members(session.scalars(select(Rep).order_by(REPS.c.id)))


def open_mqls(session: Session, rep_ids: list[int] | None, settings: Settings) -> dict[int, int]:
    """The MQLs each rep owns (of ``rep_ids``, or of every rep when None), by rep id."""
    query = (
        select(LEADS.c.owner_id, func.count())
        .where(LEADS.c.stage == settings.stages.mql, LEADS.c.owner_id.is_not(None))
        .group_by(LEADS.c.owner_id)
    )
    if rep_ids is not None:
        query = query.where(LEADS.c.owner_id.in_(rep_ids))
    return {int(owner): int(count) for owner, count in session.execute(query)}


def locked_rotation(session: Session, pool: str) -> AssignmentRotation | None:
    """The pool's round-robin row, locked on PostgreSQL until the transaction ends."""
    query = select(AssignmentRotation).where(ROTATIONS.c.pool == pool)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


class StoredRoster:
    """The roster as the store has it, read at each call: for one assignment at a time."""

    def __init__(self, session: Session, settings: Settings, now: datetime) -> None:
        self.session = session
        self.settings = settings
        self.now = now
        self._rotations: dict[str, AssignmentRotation | None] = {}
        """Each pool's row as :meth:`last_pick` locked it, for :meth:`picked` to update."""

    def members(self, pool: str) -> list[Member]:
        return self.pools().get(pool, [])

    def pools(self) -> Mapping[str, list[Member]]:
        return stored_pools(self.session)

    def open_mqls(self, rep_ids: list[int]) -> Mapping[int, int]:
        return open_mqls(self.session, rep_ids, self.settings)

    def last_pick(self, pool: str) -> int | None:
        rotation = self._rotations[pool] = locked_rotation(self.session, pool)
        return rotation.last_rep_id if rotation is not None else None

    def picked(self, pool: str, rep_id: int) -> None:
        if pool not in self._rotations:
            self.last_pick(pool)
        rotation = self._rotations[pool]
        if rotation is None:
            rotation = AssignmentRotation(pool=pool, last_rep_id=rep_id, updated_at=self.now)
            self._rotations[pool] = rotation
            self.session.add(rotation)
        else:
            rotation.last_rep_id = rep_id
            rotation.updated_at = self.now
        self.session.flush()
