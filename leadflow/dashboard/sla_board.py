"""The SLA board: running timers soonest due first, breached ones latest due first, per rep or
pool, one page at a time.

Both lists are read in the order of ``ix_sla_status_due`` (status, due_at), so a page costs its
own rows whatever the table's size; the lead and the owner are joined by primary key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from leadflow.engine.business_hours import BusinessCalendar, business_time_between, calendar_named
from leadflow.errors import UnknownCalendarError
from leadflow.settings import Settings
from leadflow.store.tables import LEADS, REPS, SLA_TIMERS

PAGE = 50


@dataclass(frozen=True)
class TimerLine:
    id: int
    name: str
    lead: str
    lead_name: str | None
    owner: str | None
    rule_id: str
    started_at: datetime
    due_at: datetime
    level: int
    next_escalation_at: datetime | None
    status: str
    closed_at: datetime | None
    close_reason: str | None
    calendar: str = "default"
    """The business calendar its due time was counted in."""

    def overdue(self, now: datetime) -> bool:
        return self.status == "running" and self.due_at <= now


@dataclass(frozen=True)
class RepChoice:
    external_id: str
    name: str
    pools: tuple[str, ...]


def sla_board(
    engine: Engine,
    status: str,
    *,
    rep: str | None = None,
    pool: str | None = None,
    page: int = 0,
) -> tuple[list[TimerLine], bool]:
    """One page of the timers in ``status`` (``running`` soonest due first, others latest due
    first), optionally only those owned by ``rep`` or by a rep of ``pool``; and whether there
    is a next page."""
    t = SLA_TIMERS
    order = (t.c.due_at, t.c.id) if status == "running" else (t.c.due_at.desc(), t.c.id.desc())
    query: Any = (
        select(
            t,
            LEADS.c.external_id.label("lead"),
            LEADS.c.name.label("lead_name"),
            REPS.c.name.label("owner"),
        )
        .join(LEADS, LEADS.c.id == t.c.lead_id)
        .outerjoin(REPS, REPS.c.id == t.c.owner_id)
        .where(t.c.status == status)
        .order_by(*order)
        .limit(PAGE + 1)
        .offset(page * PAGE)
    )
    with engine.connect() as connection:
        if rep is not None or pool is not None:
            owners = _owner_ids(connection, rep, pool)
            query = query.where(t.c.owner_id.in_(owners))
        rows = connection.execute(query).all()
    lines = [
        TimerLine(
            id=row.id,
            name=row.name,
            lead=row.lead,
            lead_name=row.lead_name,
            owner=row.owner,
            rule_id=row.rule_id,
            started_at=row.started_at,
            due_at=row.due_at,
            level=row.level,
            next_escalation_at=row.next_escalation_at,
            status=row.status,
            closed_at=row.closed_at,
            close_reason=row.close_reason,
            calendar=row.calendar,
        )
        for row in rows[:PAGE]
    ]
    return lines, len(rows) > PAGE


def business_time_left(
    timers: list[TimerLine], settings: Settings, now: datetime
) -> dict[int, timedelta]:
    """Each running timer's business time from ``now`` to its due time (negative: overdue by
    that much), in its own calendar, counted as the SLA engine counts it; a timer whose calendar
    is no longer configured is left out."""
    calendars: dict[str, BusinessCalendar | None] = {}
    left: dict[int, timedelta] = {}
    for timer in timers:
        if timer.status != "running":
            continue
        if timer.calendar not in calendars:
            try:
                calendars[timer.calendar] = calendar_named(settings, timer.calendar)
            except UnknownCalendarError:
                calendars[timer.calendar] = None
        calendar = calendars[timer.calendar]
        if calendar is not None:
            left[timer.id] = business_time_between(calendar, now, timer.due_at)
    return left


def _owner_ids(connection: Any, rep: str | None, pool: str | None) -> list[int]:
    # The reps table is the sales team (hundreds of rows): filtering pools in Python keeps the
    # JSON column out of SQL, where SQLite and PostgreSQL would need two spellings.
    query = select(REPS.c.id, REPS.c.external_id, REPS.c.pools)
    if rep is not None:
        query = query.where(REPS.c.external_id == rep)
    return [
        row.id for row in connection.execute(query) if pool is None or pool in (row.pools or [])
    ]


def rep_choices(engine: Engine) -> list[RepChoice]:
    """Every rep for the board's filter, by name (the sales team: a bounded table)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(REPS.c.external_id, REPS.c.name, REPS.c.pools).order_by(REPS.c.name).limit(2000)
        )
        return [RepChoice(r.external_id, r.name, tuple(r.pools or ())) for r in rows]
