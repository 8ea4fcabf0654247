"""Making SLA timers: due time in business hours, the ladder as started, when each level is due.

Used where a timer starts (a rule's ``start_sla``) and where it restarts (reassignment by its
ladder), so both compute due times and levels the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from leadflow.engine.business_hours import BusinessCalendar, add_business_time, calendar_named
from leadflow.rule_language.actions import StartSla
from leadflow.settings import Settings
from leadflow.store.json_values import jsonable


@dataclass
class NewSlaTimer:
    """A timer about to start: the values of its ``sla_timers`` row (no ORM object, so a
    batch of firings can start thousands of them cheaply)."""

    lead_id: int
    name: str
    rule_id: str
    rule_version: str
    owner_id: int | None
    started_at: datetime
    due_at: datetime
    calendar: str
    ladder: list[dict[str, Any]]
    met_by: dict[str, Any]
    next_escalation_at: datetime | None
    level: int = 0
    status: str = "running"

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _ROW_COLUMNS}


_ROW_COLUMNS = tuple(field.name for field in fields(NewSlaTimer))


_business_time_after = lru_cache(maxsize=1024)(add_business_time)
""":func:`add_business_time`, a pure function, remembered: a batch's timers start at the same
``now`` and most are due at the same time."""


def ladder_of(start: StartSla) -> list[dict[str, Any]]:
    """The escalation levels as stored in the timer (seconds after the due time)."""
    return [
        {
            "after": level.after.total_seconds(),
            "notify": level.notify,
            "template": level.template,
            "reassign": level.reassign,
        }
        for level in start.escalate
    ]


def level_due(
    calendar: BusinessCalendar, due: datetime, ladder: list[dict[str, Any]], index: int
) -> datetime | None:
    """When level ``index`` fires: business time after the due time; none past the ladder.

    A level 0h after the due time fires at the due time, even when that is the closing time.
    """
    if index >= len(ladder):
        return None
    after = ladder[index]["after"]
    return _business_time_after(calendar, due, timedelta(seconds=after)) if after else due


def new_sla_timer(
    settings: Settings,
    start: StartSla,
    *,
    lead_id: int,
    owner_id: int | None,
    rule_id: str,
    rule_version: str,
    now: datetime,
    stage_entered_at: datetime | None = None,
) -> NewSlaTimer:
    """A running timer for ``start``, due ``start.within`` business time after it starts.

    It starts ``now``, or with ``from: stage_entered_at`` when the lead entered its stage (never
    later than ``now``): an MQL moved in from a CRM keeps the clock it had there.
    """
    calendar = calendar_named(settings, start.calendar)
    started = now
    if start.counted_from == "stage_entered_at" and stage_entered_at is not None:
        started = min(stage_entered_at, now)
    due = _business_time_after(calendar, started, start.within)
    ladder, met_by = _stored_parts(start)
    return NewSlaTimer(
        lead_id=lead_id,
        name=start.name,
        rule_id=rule_id,
        rule_version=rule_version,
        owner_id=owner_id,
        started_at=started,
        due_at=due,
        calendar=start.calendar,
        ladder=ladder,
        met_by=met_by,
        next_escalation_at=level_due(calendar, due, ladder, 0),
    )


_PARTS: dict[int, tuple[StartSla, list[dict[str, Any]], dict[str, Any]]] = {}


def _stored_parts(start: StartSla) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The ladder and ``met_by`` as a timer of ``start`` stores them, made once per action (a
    batch starts a timer per firing) and shared by its timers: read, never changed in place."""
    known = _PARTS.get(id(start))
    if known is not None and known[0] is start:
        return known[1], known[2]
    if len(_PARTS) > 1024:  # rule sets reloaded many times: start afresh
        _PARTS.clear()
    ladder, met_by = ladder_of(start), jsonable(start.met_by.model_dump())
    _PARTS[id(start)] = (start, ladder, met_by)
    return ladder, met_by
