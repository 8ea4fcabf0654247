"""The Outbox page: messages of one status, a page at a time, and the retry of a failed one.

Pending (and sending) rows are listed soonest due first by ``ix_outbox_status_next``, settled
ones newest first by ``ix_outbox_status_created``. The retry is ``leadflow outbox --retry``'s
own :func:`~leadflow.outbox.store.requeue_failed`, in its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, literal, select

from leadflow.outbox.store import PENDING, SENDING, STATUSES, OutboxLine, requeue_failed
from leadflow.store.database import transaction
from leadflow.store.tables import LEADS, OUTBOX

PAGE = 50
COUNTED = 10_000
"""A status tab counts its messages up to this many, then says ``10,000+``: counting the ten
million sent rows a busy year keeps would cost every page view seconds."""


@dataclass(frozen=True)
class MessageLine:
    id: int
    status: str
    category: str
    recipient: str
    subject: str
    lead: str | None
    rule_id: str | None
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    relay_answer: str | None


def messages(engine: Engine, status: str, page: int = 0) -> tuple[list[MessageLine], bool]:
    """One page of the messages in ``status``; and whether a next page exists."""
    t = OUTBOX
    due_first = status in (PENDING, SENDING)
    order = (t.c.next_attempt_at, t.c.id) if due_first else (t.c.created_at.desc(), t.c.id.desc())
    query = (
        select(t, LEADS.c.external_id.label("lead"))
        .outerjoin(LEADS, LEADS.c.id == t.c.lead_id)
        .where(t.c.status == status)
        .order_by(*order)
        .limit(PAGE + 1)
        .offset(page * PAGE)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    lines = [
        MessageLine(
            id=row.id,
            status=row.status,
            category=row.category,
            recipient=row.recipient,
            subject=row.subject,
            lead=row.lead,
            rule_id=row.rule_id,
            attempts=row.attempts,
            created_at=row.created_at,
            next_attempt_at=row.next_attempt_at,
            sent_at=row.sent_at,
            relay_answer=row.last_error or row.status_reason,
        )
        for row in rows[:PAGE]
    ]
    return lines, len(rows) > PAGE


def status_counts(engine: Engine) -> dict[str, str]:
    """Each status's count of messages as its tab shows it (``12``, ``10,000+``), each read
    from the status's index and stopped past :data:`COUNTED`."""
    t = OUTBOX
    shown: dict[str, str] = {}
    with engine.connect() as connection:
        for status in STATUSES:
            capped = select(literal(1)).where(t.c.status == status).limit(COUNTED + 1).subquery()
            count = connection.execute(select(func.count()).select_from(capped)).scalar_one()
            shown[status] = f"{COUNTED:,}+" if count > COUNTED else f"{count:,}"
    return shown


def retry(engine: Engine, outbox_id: int, now: datetime) -> OutboxLine:
    """Requeue failed message ``outbox_id``; UserInputError when it is not failed."""
    with transaction(engine) as session:
        return requeue_failed(session, outbox_id, now)
