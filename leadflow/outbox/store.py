"""The outbox table: every message leadflow delivers, as rows a sender claims and settles.

A row is written in the transaction of the change that causes it, so exactly the committed
changes are delivered. Its life: ``pending`` -> ``sending`` (claimed by a sender, with a lease)
-> ``sent``, or back to ``pending`` with a later ``next_attempt_at`` after a transient failure,
or ``failed``. A row that must not go out is ``suppressed`` with the reason, so "why did this
lead not get the case study?" has an answer in the table.

This module knows rows, not channels: what a row's ``channel`` (``email``, ``webhook``) means is
the business of the channel registered for it (:mod:`leadflow.outbox.channel`), which reaches
in here only through the hooks :func:`claim_due` and :func:`record_outcomes` take.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from leadflow.clock import parse_instant
from leadflow.errors import UserInputError
from leadflow.outbox.claimers import claimer_gone
from leadflow.store.bulk_rows import insert_new_postgres, insert_new_sqlite
from leadflow.store.database import transaction
from leadflow.store.id_ranges import chunks
from leadflow.store.models import OutboxMessage
from leadflow.store.tables import OUTBOX

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
SUPPRESSED = "suppressed"
STATUSES = (PENDING, SENDING, SENT, FAILED, SUPPRESSED)
_TABLE = OUTBOX


# --- writing a row --------------------------------------------------------------------------


@dataclass(frozen=True)
class EnqueueResult:
    """What :func:`enqueue` did. ``inserted`` is False when the key already existed."""

    inserted: bool
    outbox_id: int
    message_id: str
    status: str
    reason: str | None
    next_attempt_at: datetime


def key_digest(key: str) -> str:
    """A short, stable digest of an idempotency key: the id a receiver can deduplicate by."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def message_id_for(key: str, domain: str) -> str:
    """The stable Message-ID of the message with idempotency ``key``."""
    return f"<{key_digest(key)}@{domain}>"


def outbox_row(
    *,
    key: str,
    channel: str,
    category: str,
    recipient: str,
    subject: str,
    body_text: str,
    now: datetime,
    message_id_domain: str,
    body_html: str | None = None,
    headers: Mapping[str, Any] | None = None,
    status: str = PENDING,
    status_reason: str | None = None,
    due: datetime | None = None,
    lead_id: int | None = None,
    deal_id: int | None = None,
    rule_id: str | None = None,
    rule_version: str | None = None,
) -> dict[str, Any]:
    """The values of one new row, due at ``due`` (default ``now``), for :func:`enqueue_rows`."""
    return {
        "idempotency_key": key,
        "message_id": message_id_for(key, message_id_domain),
        "channel": channel,
        "category": category,
        "lead_id": lead_id,
        "deal_id": deal_id,
        "rule_id": rule_id,
        "rule_version": rule_version,
        "recipient": recipient,
        "subject": subject,
        "body_text": body_text,
        "body_html": body_html,
        "headers": dict(headers or {}),
        "status": status,
        "status_reason": status_reason,
        "attempts": 0,
        "next_attempt_at": due or now,
        "created_at": now,
    }


def enqueue(session: Session, **row: Any) -> EnqueueResult:
    """Add one row (the arguments of :func:`outbox_row`) in the caller's transaction."""
    values = outbox_row(**row)
    return enqueue_rows(session, [values])[values["idempotency_key"]]


def enqueue_rows(session: Session, rows: Sequence[Mapping[str, Any]]) -> dict[str, EnqueueResult]:
    """Add ``rows`` (from :func:`outbox_row`) in the caller's transaction (no commit), with a
    few multi-row statements; return what became of each, by idempotency key.

    A key that exists already, also when a concurrent transaction inserted it first, inserts
    nothing: its result is the existing row, with ``inserted`` False. A key twice in ``rows``
    is inserted once.
    """
    results: dict[str, EnqueueResult] = {}
    dialect = session.get_bind().dialect.name
    by_key = {row["idempotency_key"]: row for row in rows}
    unique = list(by_key.values())
    for chunk in chunks(unique):
        for new_id, key in _insert_new(session, dialect, chunk):
            row = by_key[key]
            results[key] = EnqueueResult(
                True,
                new_id,
                row["message_id"],
                row["status"],
                row["status_reason"],
                row["next_attempt_at"],
            )
    missing = [key for key in by_key if key not in results]
    results.update(find_many(session, missing))
    return results


def _insert_new(session: Session, dialect: str, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Insert the rows whose key is new; (id, key) of each one inserted. A statement per set of
    columns given (a batch's rows give the same), straight to the driver."""
    insert_new = insert_new_postgres if dialect == "postgresql" else insert_new_sqlite
    by_columns: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        by_columns.setdefault(tuple(row), []).append(row)
    connection = session.connection()
    returning = ("id", "idempotency_key")
    return [
        inserted
        for group in by_columns.values()
        for inserted in insert_new(connection, _TABLE, group, "idempotency_key", returning)
    ]


def find(session: Session, key: str) -> EnqueueResult | None:
    """The row with idempotency ``key``, as :func:`enqueue` reports it; None if there is none."""
    return find_many(session, [key]).get(key)


def find_many(session: Session, keys: Sequence[str]) -> dict[str, EnqueueResult]:
    """The rows with these idempotency keys, by key (keys with no row are left out)."""
    found: dict[str, EnqueueResult] = {}
    for chunk in chunks(keys):
        query = select(
            _TABLE.c.id,
            _TABLE.c.idempotency_key,
            _TABLE.c.message_id,
            _TABLE.c.status,
            _TABLE.c.status_reason,
            _TABLE.c.next_attempt_at,
        ).where(_TABLE.c.idempotency_key.in_(chunk))
        for row in session.execute(query):
            found[row.idempotency_key] = EnqueueResult(
                False, row.id, row.message_id, row.status, row.status_reason, row.next_attempt_at
            )
    return found


# --- claiming due rows ----------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedMessage:
    """An outbox row this sender holds a lease on."""

    id: int
    message_id: str
    category: str
    lead_id: int | None
    rule_id: str | None
    recipient: str
    subject: str
    body_text: str
    body_html: str | None
    headers: dict[str, Any]
    attempts: int
    channel: str = "email"
    """The table's default channel."""
    lease_until: datetime | None = None
    """When this sender's lease ends; after it another sender may claim the row."""


Screen = Callable[[Session, Sequence[int]], Collection[int]]
"""A channel's check at claim time: given the ids of due rows (of every channel), the ids of its
own rows that must not be delivered now, which it has already marked so in the claim's
transaction (email suppresses the marketing of a lead flagged since it was queued)."""


def claim_due(
    engine: Engine,
    now: datetime,
    lease: timedelta,
    worker: str,
    limit: int,
    screens: Sequence[Screen] = (),
    held: Collection[int] = (),
) -> list[ClaimedMessage]:
    """Lease up to ``limit`` due rows to ``worker``: pending ones and those whose lease expired.

    Rows one of ``screens`` withholds are not leased; a batch all withheld is not "nothing due".
    ``held`` are rows the caller delivered and has not recorded yet: their lease may have run out
    while the database was away, but claiming them again would send them twice.
    """
    t = _TABLE
    with transaction(engine) as session:  # a writing transaction: BEGIN IMMEDIATE on SQLite
        connection = session.connection()
        # Two statements, not UPDATE ... WHERE id IN (SELECT ... LIMIT): PostgreSQL may run
        # such a subquery more than once and lease more than ``limit`` rows. The locks taken
        # here (row locks on PostgreSQL, the write lock on SQLite) last until the commit.
        ids: list[int] = []
        while not ids:
            candidates = _due_ids(connection, now, limit, held)
            if not candidates:
                return []
            withheld = {row_id for screen in screens for row_id in screen(session, candidates)}
            ids = [row_id for row_id in candidates if row_id not in withheld]
        rows = connection.execute(
            update(t)
            .where(t.c.id.in_(ids), _due(now))
            .values(
                status=SENDING,
                claimed_until=now + lease,
                claimed_by=worker,
                attempts=t.c.attempts + 1,
            )
            .returning(*(t.c[name] for name in _CLAIMED_COLUMNS))
        ).all()
    lease_until = now + lease
    messages = [ClaimedMessage(*(*row, lease_until)) for row in rows]
    return sorted(messages, key=lambda m: m.id)


def _due(now: datetime) -> Any:
    t = _TABLE
    return and_(
        t.c.next_attempt_at <= now,
        or_(t.c.status == PENDING, and_(t.c.status == SENDING, t.c.claimed_until < now)),
    )


def _due_ids(
    connection: Connection, now: datetime, limit: int, held: Collection[int] = ()
) -> list[int]:
    """Up to ``limit`` due rows: first those whose lease expired (they waited longest), then
    pending ones, each by due time.

    One query per status, each read in order from ``(status, next_attempt_at)``: an OR of the
    two made the database sort every due row to find the first ``limit``, a million rows after
    a large campaign was queued. Each query locks (PostgreSQL) only as many rows as are still
    wanted, so rows this claim will not take stay free for the other senders.
    """
    t = _TABLE
    branches = [
        and_(t.c.status == SENDING, t.c.claimed_until < now),
        t.c.status == PENDING,
    ]
    due: list[int] = []
    for branch in branches:
        room = limit - len(due)
        if room <= 0:
            break
        query = (
            select(t.c.id)
            .where(branch, t.c.next_attempt_at <= now)
            .order_by(t.c.next_attempt_at, t.c.id)
            .limit(room)
        )
        if held:
            query = query.where(t.c.id.not_in(held))
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        due += connection.execute(query).scalars()
    return due


_CLAIMED_COLUMNS = tuple(f.name for f in fields(ClaimedMessage) if f.name != "lease_until")
"""The outbox columns a claim returns, in :class:`ClaimedMessage`'s field order."""


# --- recording outcomes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed message; ``retry_at`` is set for a transient failure."""

    message: ClaimedMessage
    status: str
    error: str | None = None
    retry_at: datetime | None = None
    hard_bounce: bool = False
    """A permanent failure its channel says no later message to the lead can overcome."""
    code: int | None = None
    """The destination's reply code of a failure (an SMTP relay's ``550``), when it gave one."""
    released: bool = False
    """Not attempted: too little of the lease was left to deliver it safely."""


Consequences = Callable[[Session, Sequence[Outcome], datetime], None]
"""What follows from a batch of outcomes beyond their rows (a channel's hard bounces), written
in the transaction that records them."""


def record_outcomes(
    engine: Engine,
    outcomes: Sequence[Outcome],
    worker: str,
    now: datetime,
    consequences: Consequences | None = None,
) -> None:
    """Write a batch of outcomes in one transaction; ``sent`` is recorded even after a lost lease."""
    sent = [o.message.id for o in outcomes if o.status == SENT]
    others = [
        {
            "row_id": o.message.id,
            "new_status": o.status,
            "error": o.error,
            "retry_at": o.retry_at or now,
            "me": worker,
            # A released message was not attempted: its claim does not count as an attempt.
            "uncount": 1 if o.released else 0,
        }
        for o in outcomes
        if o.status != SENT
    ]
    with transaction(engine) as session:
        connection = session.connection()
        if sent:
            connection.execute(_MARK_SENT, {"sent_ids": sent, "sent_now": now})
        if others:
            connection.execute(_MARK_OTHER, others)
        if consequences is not None:
            consequences(session, outcomes, now)


_MARK_SENT = (
    update(_TABLE)
    .where(_TABLE.c.id.in_(bindparam("sent_ids", expanding=True)), _TABLE.c.status != SENT)
    .values(status=SENT, sent_at=bindparam("sent_now"), claimed_until=None)
)
"""``last_error`` is kept: on a sent row it is the error of the attempt before (null when the
first attempt went through), the 4xx history of a message sent after ``--retry-failed`` or a
previous attempt whose outcome was unknown (a copy may have arrived). Built once: building the statement and a bound literal per id cost more CPU than SQLite's
own work, at one transaction per batch of outcomes (up to 40 a second)."""

_MARK_OTHER = (
    update(_TABLE)
    .where(
        _TABLE.c.id == bindparam("row_id"),
        _TABLE.c.status == SENDING,
        _TABLE.c.claimed_by == bindparam("me"),
    )
    .values(
        status=bindparam("new_status"),
        last_error=bindparam("error"),
        next_attempt_at=bindparam("retry_at"),
        claimed_until=None,
        attempts=_TABLE.c.attempts - bindparam("uncount"),
    )
)


def release_claims(engine: Engine, ids: Sequence[int], worker: str) -> int:
    """Hand rows ``worker`` claimed but never attempted back at once, in one transaction.

    A stopping sender calls this for the rows still waiting in its queue: left ``sending``,
    they would wait for their lease (``mail.lease``) before any sender took them again. They
    go back to ``pending`` as they were, due when they were due, the claim not counted as an
    attempt. Returns how many rows were handed back (a row another sender took meanwhile is
    left alone).
    """
    if not ids:
        return 0
    t = _TABLE
    with transaction(engine) as session:
        result = session.connection().execute(
            update(t)
            .where(t.c.id.in_(ids), t.c.status == SENDING, t.c.claimed_by == worker)
            .values(status=PENDING, claimed_until=None, attempts=t.c.attempts - 1)
        )
    return int(result.rowcount)


def reclaim_dead_claims(engine: Engine) -> dict[str, int]:
    """Hand back at once the rows claimed by a sender known to be gone (:func:`claimer_gone`:
    a process of this host that no longer runs), as if their lease had run out: ``pending``,
    due when they were due, their attempt still counted, the next claim sends them with the same
    Message-ID. A row another sender claimed meanwhile is left alone. Returns how many rows of
    each dead ``claimed_by`` went back."""
    t = _TABLE
    with engine.connect() as connection:
        claimers = connection.execute(
            select(t.c.claimed_by).where(t.c.status == SENDING).distinct()
        ).scalars()
        dead = [claimer for claimer in claimers if claimer_gone(claimer) is not None]
    reclaimed: dict[str, int] = {}
    for claimer in dead:
        with transaction(engine) as session:
            result = session.connection().execute(
                update(t)
                .where(t.c.status == SENDING, t.c.claimed_by == claimer)
                .values(status=PENDING, claimed_until=None)
            )
        if result.rowcount:
            reclaimed[claimer] = int(result.rowcount)
    return reclaimed


# --- what ``leadflow outbox`` shows and does ------------------------------------------------


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
    lease_until: datetime | None = None
    """A ``sending`` row's lease: claimed until then, due again after (its sender gone)."""
    claimed_by: str | None = None
    """A ``sending`` row's sender (``host:pid:id:pidns``)."""
    claimer_gone: bool = False
    """A ``sending`` row whose sender is known to be gone (a dead process of this host): the
    next sender started on this host sends it at once, any sender after ``lease_until``."""


def status_counts(session: Session) -> dict[str, int]:
    """Rows per status, every status present (0 when none)."""
    counts = dict.fromkeys(STATUSES, 0)
    for status, count in session.execute(
        select(_TABLE.c.status, func.count()).group_by(_TABLE.c.status)
    ):
        counts[status] = count
    return counts


def outbox_lines(
    session: Session, *, failed_only: bool, limit: int | None = 50
) -> list[OutboxLine]:
    """Failed rows newest first, or every row not yet sent, soonest due first; at most
    ``limit`` of them (None: every one)."""
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
            detail=row.last_error or row.status_reason or _held_for_window(row),
            lease_until=_aware(row.claimed_until) if row.status == SENDING else None,
            claimed_by=row.claimed_by if row.status == SENDING else None,
            claimer_gone=row.status == SENDING and claimer_gone(row.claimed_by) is not None,
        )
        for row in session.execute(query if limit is None else query.limit(limit))
    ]


def _held_for_window(row: Any) -> str | None:
    """Why a marketing email never tried yet is due later than it was queued: the send window
    (its ``next`` alone did not say, and an operator took it for stuck)."""
    if (
        row.status == PENDING
        and row.attempts == 0
        and row.category == "marketing"
        and _aware(row.next_attempt_at) > _aware(row.created_at)
    ):
        return "waits for the send window (mail.send_window)"
    return None


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


def requeue_all_failed(session: Session, now: datetime, since: datetime | None = None) -> int:
    """Put every failed message (failed at or after ``since``, if given) back to pending, due
    now, with a fresh retry schedule; how many. A failed row's ``next_attempt_at`` is the time
    it failed, so ``since`` reads the ``(status, next_attempt_at)`` index."""
    condition = _TABLE.c.status == FAILED
    if since is not None:
        condition = and_(condition, _TABLE.c.next_attempt_at >= since)
    result = session.execute(
        update(_TABLE)
        .where(condition)
        .values(status=PENDING, attempts=0, next_attempt_at=now, claimed_until=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def outbox_state(engine: Engine) -> tuple[list[tuple[str, str, int]], list[tuple[str, datetime]]]:
    """(channel, status, count) of every outbox row, and each channel's oldest pending row."""
    with engine.connect() as connection:
        counts = connection.execute(
            select(_TABLE.c.channel, _TABLE.c.status, func.count()).group_by(
                _TABLE.c.channel, _TABLE.c.status
            )
        ).all()
        oldest = connection.execute(
            select(_TABLE.c.channel, func.min(_TABLE.c.created_at))
            .where(_TABLE.c.status == PENDING)
            .group_by(_TABLE.c.channel)
        ).all()
    return (
        [(str(c), str(s), int(n)) for c, s, n in counts],
        [(str(c), _aware(when)) for c, when in oldest if when is not None],
    )


def _aware(when: Any) -> datetime:
    # func.min() bypasses the column type on SQLite, which hands back text.
    if isinstance(when, datetime) and when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    if isinstance(when, str):
        return parse_instant(when)
    assert isinstance(when, datetime)
    return when
