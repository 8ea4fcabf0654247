"""A lead's timeline: every audit row, score change, email, activity, SLA event and nurture
exit, in order.

Each source is read by the lead's own index (``audit_log``, ``score_changes`` and
``activities`` by (lead_id, time), ``outbox`` by lead_id, ``sla_timers`` and
``nurture_enrollments`` by (lead_id, status)), at most a page plus one row from each, from the
cursor on; the merge in Python keeps the first page's worth. A lead's leaving a nurture stream
is read from its enrollment, which every exit ends with its reason (it became an MQL,
unsubscribed, the stream was removed, all steps sent ...): the exits a rule's stage change or
an enrollment in another stream makes write no audit row, and those that do
(``nurture_exited``, ``nurture_completed``) would say it twice, so they are left out. A lead's
first score from the scoring model reads as that, not as a change with the cause of the pass
that computed it. The cursor is (time, source, id), so rows at the same instant are never skipped
nor repeated across pages. Owner changes are the audit's ``assign`` rows; an import or an API
push writes no audit row, so the page's header shows when the record was created and last
changed by one.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Engine, Table, and_, or_, select, true

from leadflow.scoring.first_score import change_reason, first_score_text, is_first_score
from leadflow.store.json_values import jsonable
from leadflow.store.tables import (
    ACTIVITIES,
    AUDIT,
    LEADS,
    NURTURE,
    OUTBOX,
    REPS,
    SCORE_CHANGES,
    SLA_TIMERS,
)

PAGE = 100
SOURCES = ("audit", "score", "email", "activity", "sla", "nurture")
"""Order of sources at the same instant (and their rank in the cursor: new ones go last, so a
cursor in a link keeps its meaning)."""
NURTURE_ENDINGS = ("nurture_exited", "nurture_completed")
"""The audit actions of an enrollment's end: the ``nurture`` source says each, with its reason."""


@dataclass(frozen=True)
class Event:
    """One row of the timeline as a person reads it."""

    at: datetime
    source: str
    id: int
    kind: str
    summary: str
    detail: dict[str, Any]

    @property
    def cursor(self) -> str:
        return f"{self.at.isoformat()}~{SOURCES.index(self.source)}~{self.id}"


@dataclass(frozen=True)
class Cursor:
    at: datetime
    rank: int
    id: int

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        try:
            at, rank, ident = text.split("~")
            parsed = datetime.fromisoformat(at)
            return cls(parsed, int(rank), int(ident)) if parsed.tzinfo else None
        except ValueError:
            return None


@dataclass(frozen=True)
class LeadHeader:
    id: int
    external_id: str
    name: str | None
    email: str | None
    company: str | None
    stage: str
    score: int
    owner: str | None
    created_at: datetime
    updated_at: datetime
    attributes: dict[str, Any]

    def attribute_rows(self, declared: Iterable[str]) -> list[tuple[str, Any]]:
        """The lead's attributes as the page lists them: the ``declared`` ones in config order
        (None where the lead has no value), then any others it holds, by name."""
        names = list(declared)
        others = sorted(set(self.attributes) - set(names))
        return [(key, self.attributes.get(key)) for key in names + others]


def lead_header(engine: Engine, external_id: str) -> LeadHeader | None:
    query = (
        select(LEADS, REPS.c.name.label("owner"))
        .outerjoin(REPS, REPS.c.id == LEADS.c.owner_id)
        .where(LEADS.c.external_id == external_id)
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    return LeadHeader(
        row.id,
        row.external_id,
        row.name,
        row.email,
        row.company,
        row.stage,
        row.score,
        row.owner,
        row.created_at,
        row.updated_at,
        dict(row.attributes or {}),
    )


def timeline(
    engine: Engine, lead: LeadHeader, after: Cursor | None = None, limit: int = PAGE
) -> tuple[list[Event], bool]:
    """The lead's events after ``after`` (from the start when None), oldest first, at most
    ``limit``; and whether more follow."""
    with engine.connect() as connection:
        streams = [
            list(_audit(connection, lead.id, after, limit)),
            list(_scores(connection, lead.id, after, limit)),
            list(_emails(connection, lead.id, after, limit)),
            list(_activities(connection, lead.id, after, limit)),
            list(_slas(connection, lead.id, after, limit)),
            list(_nurture_exits(connection, lead.id, after, limit)),
        ]
    merged = list(heapq.merge(*streams, key=lambda e: (e.at, SOURCES.index(e.source), e.id)))
    return merged[:limit], len(merged) > limit


def _after(source: str, at: Column[Any], ident: Column[Any], after: Cursor | None) -> Any:
    """``(at, rank, id) > after`` for rows of ``source``, where rank is a constant."""
    if after is None:
        return true()
    rank = SOURCES.index(source)
    if rank > after.rank:
        return at >= after.at
    if rank < after.rank:
        return at > after.at
    return or_(at > after.at, and_(at == after.at, ident > after.id))


def _page(
    connection: Connection, table: Table, time: str, lead_id: int, after: Any, limit: int
) -> Any:
    at = table.c[time]
    query = (
        select(table)
        .where(table.c.lead_id == lead_id, after)
        .order_by(at, table.c.id)
        .limit(limit + 1)
    )
    return connection.execute(query).all()


def _audit(
    connection: Connection, lead_id: int, after: Cursor | None, limit: int
) -> Iterator[Event]:
    after_clause = and_(
        _after("audit", AUDIT.c.at, AUDIT.c.id, after), AUDIT.c.action.not_in(NURTURE_ENDINGS)
    )
    rows = _page(connection, AUDIT, "at", lead_id, after_clause, limit)
    for row in rows:
        rule = f" by rule {row.rule_id} ({row.rule_version})" if row.rule_id else ""
        yield Event(
            row.at,
            "audit",
            row.id,
            row.action,
            f"{row.action}{rule}",
            {"source": row.source, "params": row.params, "evidence": row.evidence},
        )


def _scores(
    connection: Connection, lead_id: int, after: Cursor | None, limit: int
) -> Iterator[Event]:
    t = SCORE_CHANGES
    for row in _page(connection, t, "at", lead_id, _after("score", t.c.at, t.c.id, after), limit):
        first = is_first_score(row)
        yield Event(
            row.at,
            "score",
            row.id,
            "score_first" if first else "score_change",
            _score_summary(row, first=first),
            {
                "fit": f"{_shown(row.old_fit)} → {_shown(row.new_fit)}",
                "engagement": f"{_shown(row.old_engagement)} → {_shown(row.new_engagement)}",
                "model_version": row.model_version,
            },
        )


def _score_summary(row: Any, *, first: bool) -> str:
    """``score 10 → 40 (activity: pricing_visit)``; a first scoring as
    :func:`~leadflow.scoring.first_score.first_score_text` says it."""
    if first:
        return first_score_text(row)
    return f"score {_shown(row.old_score)} → {_shown(row.new_score)} ({change_reason(row)})"


def _shown(value: object) -> str:
    """A part score as the dashboard writes it: ``-`` when there was none (a score the CRM
    set before any model ran has no fit or engagement), never Python's ``None``."""
    return "-" if value is None else str(value)


def _emails(
    connection: Connection, lead_id: int, after: Cursor | None, limit: int
) -> Iterator[Event]:
    t = OUTBOX
    columns = (t.c.id, t.c.created_at, t.c.status, t.c.subject, t.c.recipient, t.c.rule_id)
    query = (
        select(*columns, t.c.attempts, t.c.sent_at, t.c.last_error, t.c.status_reason)
        .where(t.c.lead_id == lead_id, _after("email", t.c.created_at, t.c.id, after))
        .order_by(t.c.created_at, t.c.id)
        .limit(limit + 1)
    )
    for row in connection.execute(query):
        yield Event(
            row.created_at,
            "email",
            row.id,
            f"email_{row.status}",
            f"email “{row.subject}” to {row.recipient}: {row.status}",
            {
                "outbox_id": row.id,
                "rule": row.rule_id,
                "attempts": row.attempts,
                "sent_at": jsonable(row.sent_at),
                "relay": row.last_error or row.status_reason,
            },
        )


def _activities(
    connection: Connection, lead_id: int, after: Cursor | None, limit: int
) -> Iterator[Event]:
    t = ACTIVITIES
    for row in _page(
        connection,
        t,
        "occurred_at",
        lead_id,
        _after("activity", t.c.occurred_at, t.c.id, after),
        limit,
    ):
        machine = " (machine, no points)" if row.machine else ""
        yield Event(
            row.occurred_at,
            "activity",
            row.id,
            row.type,
            f"activity {row.type}{machine}",
            {"external_id": row.external_id, "properties": row.properties},
        )


def _slas(
    connection: Connection, lead_id: int, after: Cursor | None, limit: int
) -> Iterator[Event]:
    """A timer's start; its end is the audit's ``sla_met``/``sla_breached`` row."""
    t = SLA_TIMERS
    for row in _page(
        connection, t, "started_at", lead_id, _after("sla", t.c.started_at, t.c.id, after), limit
    ):
        yield Event(
            row.started_at,
            "sla",
            row.id,
            "sla_started",
            f"SLA {row.name} started, due {row.due_at:%Y-%m-%d %H:%M} UTC ({row.status})",
            {"rule": row.rule_id, "level": row.level, "closed": row.close_reason},
        )


def _nurture_exits(
    connection: Connection, lead_id: int, after: Cursor | None, limit: int
) -> Iterator[Event]:
    """The lead's enrollments that ended, at their end: ``left nurture stream welcome: became
    mql`` (exited), ``completed nurture stream welcome: all steps sent`` (completed)."""
    t = NURTURE
    query = (
        select(
            t.c.id,
            t.c.stream,
            t.c.status,
            t.c.exit_reason,
            t.c.exited_at,
            t.c.rule_id,
            t.c.enrolled_at,
            t.c.next_step,
        )
        .where(
            t.c.lead_id == lead_id,
            t.c.status.in_(("exited", "completed")),
            t.c.exited_at.is_not(None),
            _after("nurture", t.c.exited_at, t.c.id, after),
        )
        .order_by(t.c.exited_at, t.c.id)
        .limit(limit + 1)
    )
    for row in connection.execute(query):
        verb = "completed" if row.status == "completed" else "left"
        reason = f": {row.exit_reason}" if row.exit_reason else ""
        yield Event(
            row.exited_at,
            "nurture",
            row.id,
            f"nurture_{row.status}",
            f"{verb} nurture stream {row.stream}{reason}",
            {
                "enrolled_by": row.rule_id,
                "enrolled_at": jsonable(row.enrolled_at),
                "steps_done": row.next_step,
            },
        )
