"""Looking into the outbox and putting a failed message back: what ``leadflow outbox`` shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from leadflow.errors import UserInputError
from leadflow.mail.outbox import FAILED, PENDING, SENT, STATUSES
from leadflow.store.models import OutboxMessage
from leadflow.store.tables import OUTBOX

_TABLE = OUTBOX


@dataclass(frozen=True)
class OutboxLine:
    """One row as an operator sees it."""

    id: int
    status: str
    category: str
    recipient: str
    subject: str
    attempts: int
    next_attempt_at: datetime
    rule_id: str | None
    detail: str | None


def status_counts(session: Session) -> dict[str, int]:
    """Rows per status, every status present (0 when none)."""
    counts = dict.fromkeys(STATUSES, 0)
    for status, count in session.execute(
        select(_TABLE.c.status, func.count()).group_by(_TABLE.c.status)
    ):
        counts[status] = count
    return counts


def outbox_lines(session: Session, *, failed_only: bool, limit: int = 50) -> list[OutboxLine]:
    """Failed rows newest first, or every row not yet sent, soonest due first."""
    t = _TABLE
    query = select(t)
    if failed_only:
        query = query.where(t.c.status == FAILED).order_by(t.c.id.desc())
    else:
        query = query.where(t.c.status != SENT).order_by(t.c.next_attempt_at, t.c.id)
    return [
        OutboxLine(
            id=row.id,
            status=row.status,
            category=row.category,
            recipient=row.recipient,
            subject=row.subject,
            attempts=row.attempts,
            next_attempt_at=row.next_attempt_at,
            rule_id=row.rule_id,
            detail=row.last_error or row.status_reason,
        )
        for row in session.execute(query.limit(limit))
    ]


def requeue_failed(session: Session, outbox_id: int, now: datetime) -> OutboxLine:
    """Put failed message ``outbox_id`` back to pending, due now, with a fresh retry schedule."""
    row = session.get(OutboxMessage, outbox_id)
    if row is None:
        msg = f"--retry: there is no outbox message {outbox_id}"
        raise UserInputError(msg)
    if row.status != FAILED:
        msg = (
            f"--retry: outbox message {outbox_id} is {row.status}; only failed messages are retried"
        )
        raise UserInputError(msg)
    session.execute(
        update(_TABLE)
        .where(_TABLE.c.id == outbox_id, _TABLE.c.status == FAILED)
        .values(status=PENDING, attempts=0, next_attempt_at=now, claimed_until=None)
    )
    return OutboxLine(
        outbox_id,
        PENDING,
        row.category,
        row.recipient,
        row.subject,
        0,
        now,
        row.rule_id,
        row.last_error,
    )
