"""The sender: claims due outbox rows, delivers them concurrently, records each outcome.

Pipeline, all in one event loop: a claimer takes due rows in batches (one short transaction,
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several senders share the work) and marks them
``sending`` with a lease; ``mail.concurrency`` workers build and deliver the messages; one
recorder commits outcomes as they arrive. Database work runs in threads.

Delivery is at least once. The duplicate window is the time between the server accepting a
message and the commit that marks it ``sent``: the recorder commits the outcomes that arrived
since its last commit, at most ``_RECORD_EVERY`` (25 ms) after that commit, never waiting to fill
a batch. (One commit per outcome cost more CPU than the SMTP conversation on SQLite.) If
the process dies inside that window, the row's lease expires and another drain sends it again
with the same Message-ID, which lets receiving systems drop the copy.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, and_, bindparam, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from leadflow import metrics
from leadflow.clock import Clock
from leadflow.crm.updates import WEBHOOK_CHANNEL
from leadflow.crm.webhook import WebhookTransport
from leadflow.errors import DatabaseUnavailableError, DeliveryError, RecipientRejectedError
from leadflow.mail.message import build_message, envelope_recipients, envelope_sender
from leadflow.mail.outbox import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    SUPPRESSED,
    SUPPRESSING_FLAGS,
    cancel_pending_marketing,
)
from leadflow.mail.transports.base import Transport
from leadflow.settings import RetrySettings, Settings
from leadflow.store.database import transaction, writing_connection
from leadflow.store.tables import LEADS, OUTBOX

log = structlog.get_logger("leadflow.mail.sender")
_TABLE = OUTBOX
_LEADS = LEADS
_MAX_RECORD_BATCH = 500


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
    lease_until: datetime | None = None
    """When this sender's lease ends; after it another sender may claim the row."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed message; ``retry_at`` is set for a transient failure."""

    message: ClaimedMessage
    status: str
    error: str | None = None
    retry_at: datetime | None = None
    hard_bounce: bool = False
    released: bool = False
    """Not attempted: too little of the lease was left to deliver it safely."""


@dataclass
class DrainReport:
    """Counts of one drain, and the permanent failures with their errors."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)
    hard_bounced_leads: list[int] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        if outcome.status == SENT:
            self.sent += 1
        elif outcome.status == PENDING:
            self.retried += 1
        else:
            self.failed += 1
            self.failures.append((outcome.message.id, outcome.error or ""))
            if outcome.hard_bounce and outcome.message.lead_id is not None:
                self.hard_bounced_leads.append(outcome.message.lead_id)


async def drain(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    transport: Transport,
    *,
    once: bool,
    stop: asyncio.Event | None = None,
    worker_id: str | None = None,
    rng: random.Random | None = None,
) -> DrainReport:
    """Deliver due outbox rows. ``once``: what is due now, then return; else until ``stop``."""
    run = _Run(
        engine=engine,
        settings=settings,
        clock=clock,
        transport=transport,
        worker=worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
        rng=rng or random.Random(),  # noqa: S311 (jitter, not cryptography)
    )
    return await run.execute(once=once, stop=stop or asyncio.Event())


@dataclass
class _Run:
    engine: Engine
    settings: Settings
    clock: Clock
    transport: Transport
    worker: str
    rng: random.Random
    report: DrainReport = field(default_factory=DrainReport)
    webhooks: WebhookTransport | None = None

    @property
    def envelope_sender(self) -> str:
        if not self._sender:
            self._sender = envelope_sender(self.settings)
        return self._sender

    _sender: str = ""

    async def execute(self, *, once: bool, stop: asyncio.Event) -> DrainReport:
        mail = self.settings.mail
        claimed: asyncio.Queue[ClaimedMessage | None] = asyncio.Queue(maxsize=mail.batch_size)
        outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()
        recorder = asyncio.create_task(self._record(outcomes))
        workers = [
            asyncio.create_task(self._work(claimed, outcomes)) for _ in range(mail.concurrency)
        ]
        try:
            await self._claim_until_done(claimed, once=once, stop=stop)
        finally:
            for _ in workers:
                await claimed.put(None)
            await asyncio.gather(*workers)
            await outcomes.put(None)
            await recorder
            if self.webhooks is not None:
                await self.webhooks.close()
        return self.report

    async def _claim_until_done(
        self, claimed: asyncio.Queue[ClaimedMessage | None], *, once: bool, stop: asyncio.Event
    ) -> None:
        mail = self.settings.mail
        while not stop.is_set():
            try:
                batch = await asyncio.to_thread(
                    claim_due,
                    self.engine,
                    self.clock.now(),
                    mail.lease,
                    self.worker,
                    mail.batch_size,
                )
            except SQLAlchemyError as exc:
                if once:
                    msg = f"cannot claim outbox messages: {exc}"
                    raise DatabaseUnavailableError(msg) from exc
                log.warning("outbox_claim_failed", error=str(exc).splitlines()[0])
                batch = []
            self.report.claimed += len(batch)
            for message in batch:
                await claimed.put(message)
            if batch:
                continue
            if once:
                return
            try:
                async with asyncio.timeout(mail.poll_interval.total_seconds()):
                    await stop.wait()
            except TimeoutError:
                pass

    async def _work(
        self,
        claimed: asyncio.Queue[ClaimedMessage | None],
        outcomes: asyncio.Queue[Outcome | None],
    ) -> None:
        while (message := await claimed.get()) is not None:
            outcome = await self._deliver(message)
            await outcomes.put(outcome)

    async def _deliver(self, message: ClaimedMessage) -> Outcome:
        if not self._lease_covers_delivery(message):
            log.warning(
                "outbox_lease_too_short", outbox_id=message.id, lease_until=str(message.lease_until)
            )
            # Due again after a poll: by then another sender may have claimed it, or this one.
            retry_at = self.clock.now() + self.settings.mail.poll_interval
            return Outcome(message, PENDING, retry_at=retry_at, released=True)
        if message.channel == WEBHOOK_CHANNEL:
            return await self._post_webhook(message)
        try:
            data = build_message(message, self.settings, self.clock.now())
            await self.transport.deliver(
                data,
                sender=self.envelope_sender,
                recipients=envelope_recipients(message.recipient),
                message_id=message.message_id,
            )
        except DeliveryError as exc:
            return self._failure(message, exc)
        except Exception as exc:  # the per-message boundary: one bad message stops nothing else
            log.exception("outbox_delivery_crashed", outbox_id=message.id)
            return self._failure(message, DeliveryError(repr(exc), permanent=False))
        return Outcome(message, SENT)

    def _lease_covers_delivery(self, message: ClaimedMessage) -> bool:
        """Whether a delivery started now ends (at worst by timeout) inside the lease.

        A message that waited in this sender's queue past that point is given back instead:
        once its lease expires another sender may claim and send it, and delivering it here as
        well would send it twice.
        """
        if message.lease_until is None:
            return True
        timeout = (
            self.settings.crm.webhook_timeout
            if message.channel == WEBHOOK_CHANNEL
            else self.settings.mail.smtp.timeout
        )
        return self.clock.now() + 2 * timeout < message.lease_until

    async def _post_webhook(self, message: ClaimedMessage) -> Outcome:
        """A CRM update (see :mod:`leadflow.crm`): the row's body posted to its recipient URL."""
        try:
            self.webhooks = self.webhooks or WebhookTransport(self.settings.crm)
            headers = {str(k): str(v) for k, v in message.headers.items()}
            body = message.body_text.encode()
            await self.webhooks.deliver(
                message.recipient, body, headers=headers, now=self.clock.now()
            )
        except DeliveryError as exc:
            return self._failure(message, exc)
        except Exception as exc:  # the per-message boundary, as for email
            log.exception("outbox_delivery_crashed", outbox_id=message.id)
            return self._failure(message, DeliveryError(str(exc), permanent=False))
        return Outcome(message, SENT)

    def _failure(self, message: ClaimedMessage, exc: DeliveryError) -> Outcome:
        fields = {"outbox_id": message.id, "rule_id": message.rule_id, "error": str(exc)}
        retry = self.settings.mail.retry
        if exc.permanent or gives_up(message.attempts, retry):
            bounce = (
                exc.permanent
                and message.category == "marketing"
                and (isinstance(exc, RecipientRejectedError) or exc.code in _MAILBOX_CODES)
            )
            log.warning("outbox_failed", permanent=exc.permanent, hard_bounce=bounce, **fields)
            return Outcome(message, FAILED, str(exc), hard_bounce=bounce)
        retry_at = self.clock.now() + retry_delay(message.attempts, retry, self.rng)
        log.info("outbox_retry", attempts=message.attempts, retry_at=retry_at.isoformat(), **fields)
        return Outcome(message, PENDING, str(exc), retry_at=retry_at)

    async def _record(self, outcomes: asyncio.Queue[Outcome | None]) -> None:
        loop = asyncio.get_running_loop()
        last_commit = -_RECORD_EVERY
        finished = False
        while not finished:
            batch: list[Outcome] = []
            item = await outcomes.get()
            # Outcomes that arrive within _RECORD_EVERY of the last commit join the next one:
            # a transaction costs far more than a row, and the wait bounds the duplicate window.
            wait = last_commit + _RECORD_EVERY - loop.time()
            if item is not None and wait > 0:
                await asyncio.sleep(wait)
            while item is not None:
                batch.append(item)
                if outcomes.empty() or len(batch) >= _MAX_RECORD_BATCH:
                    break
                item = outcomes.get_nowait()
            finished = item is None
            if batch:
                last_commit = loop.time()
                await self._record_until_done(batch)
                for outcome in batch:
                    self.report.add(outcome)
                    metrics.record_delivery(outcome.message.channel, outcome.status)

    async def _record_until_done(self, batch: list[Outcome]) -> None:
        """Record ``batch``, retrying with backoff while the database is unreachable.

        Giving up would leave delivered messages ``sending`` and send them again when the lease
        expires, so the recorder keeps trying; a stopping daemon cancels it after its grace.
        """
        delay = _RECORD_RETRY_FIRST
        while True:
            try:
                await asyncio.to_thread(
                    record_outcomes, self.engine, batch, self.worker, self.clock.now()
                )
            except SQLAlchemyError as exc:
                log.warning(
                    "outbox_record_failed",
                    outcomes=len(batch),
                    retry_in_s=delay,
                    error=str(exc).splitlines()[0],
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECORD_RETRY_MAX)
            else:
                return


_RECORD_EVERY = 0.025
"""Seconds from one outcome commit to the next at most: the width of a batch of outcomes."""

_RECORD_RETRY_FIRST = 0.2
_RECORD_RETRY_MAX = 5.0
"""Seconds between attempts to record outcomes while the database is unreachable."""

_MAILBOX_CODES = frozenset({550, 551, 553})
"""5xx replies that mean "this mailbox does not exist or takes no mail": a hard bounce."""


def retry_delay(attempts: int, retry: RetrySettings, rng: random.Random) -> timedelta:
    """Exponential backoff from ``first_delay``, capped at ``max_delay``, with jitter in 50-100%."""
    return _nominal_delay(attempts, retry) * rng.uniform(0.5, 1.0)


def gives_up(attempts: int, retry: RetrySettings) -> bool:
    """True once the backoff schedule of ``attempts`` attempts spans ``give_up_after``."""
    spanned = timedelta()
    for attempt in range(1, attempts + 1):
        spanned += _nominal_delay(attempt, retry)
        if spanned >= retry.give_up_after:
            return True
    return False


def _nominal_delay(attempts: int, retry: RetrySettings) -> timedelta:
    delay = retry.first_delay
    for _ in range(max(0, attempts - 1)):
        if delay >= retry.max_delay:
            break
        delay *= 2
    return min(delay, retry.max_delay)


def claim_due(
    engine: Engine, now: datetime, lease: timedelta, worker: str, limit: int
) -> list[ClaimedMessage]:
    """Lease up to ``limit`` due rows to ``worker``: pending ones and those whose lease expired."""
    t = _TABLE
    with transaction(engine) as session:  # a writing transaction: BEGIN IMMEDIATE on SQLite
        connection = session.connection()
        # Two statements, not UPDATE ... WHERE id IN (SELECT ... LIMIT): PostgreSQL may run
        # such a subquery more than once and lease more than ``limit`` rows. The locks taken
        # here (row locks on PostgreSQL, the write lock on SQLite) last until the commit.
        ids: list[int] = []
        while not ids:
            candidates = _due_ids(connection, now, limit)
            if not candidates:
                return []
            ids = _suppress_flagged_leads(connection, candidates)
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


def _due_ids(connection: Connection, now: datetime, limit: int) -> list[int]:
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
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        due += connection.execute(query).scalars()
    return due


def _suppress_flagged_leads(connection: Connection, ids: list[int]) -> list[int]:
    """Suppress the marketing email among ``ids`` whose lead is flagged; return the others.

    A lead flagged after its email was queued (an unsubscribe imported or posted while the
    email waited for its send window) is caught here, whatever set the flag.
    """
    t = _TABLE
    flags = [_LEADS.c[flag] for flag in SUPPRESSING_FLAGS]
    flagged = connection.execute(
        select(t.c.id, *flags)
        .join_from(t, _LEADS, _LEADS.c.id == t.c.lead_id)
        .where(t.c.id.in_(ids), t.c.category == "marketing", or_(*(f.is_(True) for f in flags)))
    ).all()
    by_reason: dict[str, list[int]] = {}
    for row in flagged:
        reason = next(flag for flag in SUPPRESSING_FLAGS if row._mapping[flag])
        by_reason.setdefault(reason, []).append(row.id)
    for reason, suppressed in by_reason.items():
        connection.execute(
            update(t)
            .where(t.c.id.in_(suppressed))
            .values(status=SUPPRESSED, status_reason=reason, claimed_until=None, claimed_by=None)
        )
    left = {row.id for row in flagged}
    return [row_id for row_id in ids if row_id not in left]


_CLAIMED_COLUMNS = tuple(f.name for f in fields(ClaimedMessage) if f.name != "lease_until")
"""The outbox columns a claim returns, in :class:`ClaimedMessage`'s field order."""


def record_outcomes(
    engine: Engine, outcomes: Sequence[Outcome], worker: str, now: datetime
) -> None:
    """Write a batch of outcomes in one transaction; ``sent`` is recorded even after a lost lease."""
    t = _TABLE
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
    bounced = sorted({o.message.lead_id for o in outcomes if o.hard_bounce and o.message.lead_id})
    with writing_connection(engine) as connection:
        if sent:
            connection.execute(
                update(t)
                .where(t.c.id.in_(sent), t.c.status != SENT)
                .values(status=SENT, sent_at=now, claimed_until=None, last_error=None)
            )
        if others:
            connection.execute(
                update(t)
                .where(
                    t.c.id == bindparam("row_id"),
                    t.c.status == SENDING,
                    t.c.claimed_by == bindparam("me"),
                )
                .values(
                    status=bindparam("new_status"),
                    last_error=bindparam("error"),
                    next_attempt_at=bindparam("retry_at"),
                    claimed_until=None,
                    attempts=t.c.attempts - bindparam("uncount"),
                ),
                others,
            )
        for lead_id in bounced:
            connection.execute(
                update(_LEADS)
                .where(_LEADS.c.id == lead_id)
                .values(hard_bounced=True, updated_at=now)
            )
            cancel_pending_marketing(connection, lead_id, "hard_bounced", now)


async def drain_configured(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    *,
    once: bool,
    stop: asyncio.Event | None = None,
) -> DrainReport:
    """:func:`drain` through the transport ``mail.transport`` names, closed afterwards."""
    from leadflow.mail.transports import transport_for

    transport = transport_for(settings)
    try:
        return await drain(engine, settings, clock, transport, once=once, stop=stop)
    finally:
        await transport.close()
