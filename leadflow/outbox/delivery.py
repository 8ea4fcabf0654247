"""The sender: claims due outbox rows, delivers them through their channels, records outcomes.

Pipeline, all in one event loop: a claimer takes due rows in batches (one short transaction,
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several senders share the work) and marks them
``sending`` with a lease; ``mail.concurrency`` workers hand each row to the channel registered
for its ``channel`` value (:mod:`leadflow.outbox.channel`); one recorder commits outcomes as
they arrive. Database work runs in threads. The loop knows no channel: retries, backoff, leases
and batching are the same for all (the ``mail.*`` settings, named before the outbox carried
anything but email). On stop, no worker starts another delivery: the claims still queued
are handed back in one transaction at once, so that a stop with a backlog behind a slow relay
does not leave them ``sending`` until their lease ends.

Delivery is at least once. A destination that had the whole message but never answered (an
SMTP relay's reply to the end of DATA, see :mod:`leadflow.mail.transports.smtp`) leaves the
outcome unknown: retried like a transient failure, logged ``outbox_outcome_unknown``, and a
copy may arrive. Otherwise the duplicate window is the time between the destination accepting
a message and the commit that marks it ``sent``: the recorder commits the outcomes that arrived
since its last commit, at most ``_RECORD_EVERY`` (25 ms) after that commit, never waiting to fill
a batch. (One commit per outcome cost more CPU than the SMTP conversation on SQLite.) If
the process dies inside that window, the row's lease expires and another drain sends it again
with the same Message-ID, which lets receiving systems drop the copy.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from leadflow import metrics
from leadflow.clock import Clock
from leadflow.durations import format_duration
from leadflow.errors import DatabaseUnavailableError, DeliveryError
from leadflow.logs import log_failure
from leadflow.mail_settings import RetrySettings
from leadflow.outbox.attempt_start import attempt_watched
from leadflow.outbox.channel import Channel
from leadflow.outbox.claimers import new_sender_id, parse_claimer
from leadflow.outbox.outage import Outages, outage_reason
from leadflow.outbox.store import (
    FAILED,
    PENDING,
    SENT,
    ClaimedMessage,
    Outcome,
    claim_due,
    reclaim_dead_claims,
    record_outcomes,
    release_claims,
)
from leadflow.settings import Settings

log = structlog.get_logger("leadflow.outbox")
_MAX_RECORD_BATCH = 500
RETRY_WARNING_FROM = 3
"""The attempt from which a transient failure's ``outbox_retry`` is a warning, not info: two
in a row can be greylisting; a third is a relay or a mailbox that keeps refusing."""


@dataclass
class DrainReport:
    """Counts of one drain, and the permanent failures with their errors."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)
    hard_bounced_leads: list[int] = field(default_factory=list)
    held: dict[int, datetime | None] = field(default_factory=dict)
    """Claimed messages whose lease this drain still holds (id -> lease end): neither their
    outcome recorded nor handed back. What is left when a stop cancels the drain past its
    grace stays ``sending`` until its lease ends, then is sent again."""

    def leased_until(self) -> datetime | None:
        """When the last lease still held ends (None: none held, or none with an end)."""
        ends = [end for end in self.held.values() if end is not None]
        return max(ends) if ends else None

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
    channels: Sequence[Channel],
    *,
    once: bool,
    stop: asyncio.Event | None = None,
    worker_id: str | None = None,
    rng: random.Random | None = None,
    report: DrainReport | None = None,
) -> DrainReport:
    """Deliver due outbox rows through ``channels``, closed afterwards.

    ``once``: what is due now, then return; else until ``stop``. A row whose channel is not
    among ``channels`` fails permanently (``leadflow outbox --retry`` puts it back).
    ``report``: counted into as the rows go, so a caller that cancels the drain still knows
    what it did.
    """
    by_name = {channel.name: channel for channel in channels}
    if len(by_name) != len(channels):
        msg = f"two channels deliver the same rows: {sorted(c.name for c in channels)}"
        raise ValueError(msg)
    run = _Run(
        engine=engine,
        settings=settings,
        clock=clock,
        channels=by_name,
        worker=worker_id or new_sender_id(),
        rng=rng or random.Random(),  # noqa: S311 (jitter, not cryptography)
        report=report if report is not None else DrainReport(),
    )
    return await run.execute(once=once, stop=stop or asyncio.Event())


_CLAIM_FAILURES_PER_LINE = 30
"""While the database is away, one ``outbox_claim_failed`` line per this many polls."""
RECLAIM_EVERY_POLLS = 5
"""A running drain looks for the claims of dead senders of its host once per this many
claims (10 s at the default ``mail.poll_interval``, less while busy): a replica killed
beside it on the same host, not only one this start replaced."""


@dataclass
class _Run:
    engine: Engine
    settings: Settings
    clock: Clock
    channels: dict[str, Channel]
    worker: str
    rng: random.Random
    report: DrainReport = field(default_factory=DrainReport)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    unstarted: list[ClaimedMessage] = field(default_factory=list)
    """Claimed messages a worker took after ``stop``: handed back, not delivered."""
    claim_failures: int = 0
    """Claims failed in a row (the database is away); logged once per so many, not per poll."""
    outages: Outages = field(default_factory=lambda: Outages(log))
    """The relay down or refusing leadflow, told once, not per message and attempt."""
    in_hand: set[int] = field(default_factory=set)
    """Messages delivered (or failed) whose outcome is not recorded yet. A delivered message
    whose lease ran out while the database was away is due again; claiming it before its
    ``sent`` is recorded would send it twice, so the claim skips these ids."""

    async def execute(self, *, once: bool, stop: asyncio.Event) -> DrainReport:
        mail = self.settings.mail
        self.stop = stop
        await self._reclaim_dead()
        claimed: asyncio.Queue[ClaimedMessage | None] = asyncio.Queue(maxsize=mail.batch_size)
        outcomes: asyncio.Queue[Outcome | None] = asyncio.Queue()
        recorder = asyncio.create_task(self._record(outcomes))
        workers = [
            asyncio.create_task(self._work(claimed, outcomes)) for _ in range(mail.concurrency)
        ]
        try:
            await self._claim_until_done(claimed, once=once, stop=stop)
        finally:
            while stop.is_set() and not claimed.empty():  # queued, never started: handed
                message = claimed.get_nowait()  # back before waiting for those in flight
                if message is not None:
                    self.unstarted.append(message)
            await self._release_unstarted()
            for _ in workers:
                await claimed.put(None)
            try:
                await asyncio.gather(*workers)
            except asyncio.CancelledError:  # past the stop's grace: what never started goes
                await self._release_unstarted()  # back now, the rest waits out its lease
                raise
            await self._release_unstarted()
            await outcomes.put(None)
            await recorder
            for channel in self.channels.values():
                await channel.close()
        return self.report

    async def _reclaim_dead(self) -> None:
        """Hand back at once what a dead sender of this host claimed (a daemon killed before this
        restart, or a replica beside this one), rather than letting it wait out its lease. Not
        done if the database is away: the claims then go on as usual, and those rows wait for
        their lease."""
        try:
            reclaimed = await asyncio.to_thread(reclaim_dead_claims, self.engine)
        except SQLAlchemyError:
            return
        for claimed_by, count in sorted(reclaimed.items()):
            claimer = parse_claimer(claimed_by)
            log.info(
                "outbox_dead_claims_reclaimed",
                claimed_by=claimed_by,
                host=claimer.host if claimer else None,
                pid=claimer.pid if claimer else None,
                reclaimed=count,
            )

    async def _claim_until_done(
        self, claimed: asyncio.Queue[ClaimedMessage | None], *, once: bool, stop: asyncio.Event
    ) -> None:
        mail = self.settings.mail
        polls = 0
        while not stop.is_set():
            polls += 1
            if polls % RECLAIM_EVERY_POLLS == 0:
                await self._reclaim_dead()
            batch = await self._claim(once=once)
            self.report.claimed += len(batch)
            for message in batch:
                self.report.held[message.id] = message.lease_until
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

    async def _claim(self, *, once: bool) -> list[ClaimedMessage]:
        mail = self.settings.mail
        try:
            claimed = await asyncio.to_thread(
                claim_due,
                self.engine,
                self.clock.now(),
                mail.lease,
                self.worker,
                mail.batch_size,
                [channel.withhold for channel in self.channels.values()],
                frozenset(self.in_hand),
            )
        except SQLAlchemyError as exc:
            if once:
                # The driver's own first line: SQLAlchemy's text adds the SQL and a help link.
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
                msg = f"cannot claim outbox messages: {reason[0] if reason else type(exc).__name__}"
                raise DatabaseUnavailableError(msg) from exc
            # One line when the outage starts and one a minute or so after, not one per poll.
            if self.claim_failures % _CLAIM_FAILURES_PER_LINE == 0:
                log_failure(
                    log,
                    "outbox_claim_failed",
                    exc,
                    level="warning",
                    failures=self.claim_failures + 1,
                )
            self.claim_failures += 1
            return []
        if self.claim_failures:
            log.info("outbox_claim_recovered", failures=self.claim_failures)
            self.claim_failures = 0
        return claimed

    async def _work(
        self,
        claimed: asyncio.Queue[ClaimedMessage | None],
        outcomes: asyncio.Queue[Outcome | None],
    ) -> None:
        while (message := await claimed.get()) is not None:
            if self.stop.is_set():  # stopping: what has not started is handed back
                self.unstarted.append(message)
                continue
            with attempt_watched() as start:
                try:
                    outcome = await self._deliver(message)
                except asyncio.CancelledError:
                    # Cancelled past the stop's grace while the channel waited for room (a
                    # connection, the rate limit): nothing of it went out, so it is handed back
                    # with the queue's rather than left to wait out its lease.
                    if start.waiting:
                        self.unstarted.append(message)
                    raise
            self.in_hand.add(message.id)
            await outcomes.put(outcome)

    async def _release_unstarted(self) -> None:
        """Give the claims no worker started back in one transaction, so that they do not
        wait out their lease (a stop with a backlog behind a rate-limited relay)."""
        if not self.unstarted:
            return
        ids = [message.id for message in self.unstarted]
        try:
            released = await asyncio.to_thread(release_claims, self.engine, ids, self.worker)
        except SQLAlchemyError as exc:  # they come back when their lease expires
            log_failure(log, "outbox_release_failed", exc, level="warning", claims=len(ids))
        else:
            log.info("outbox_claims_released", released=released)
            for message_id in ids:
                self.report.held.pop(message_id, None)
        self.report.claimed -= len(ids)
        self.unstarted.clear()

    async def _deliver(self, message: ClaimedMessage) -> Outcome:
        channel = self.channels.get(message.channel)
        if channel is None:
            error = f"no channel delivers {message.channel!r} messages in this sender"
            return self._failure(message, DeliveryError(error, permanent=True), None)
        if not self._lease_covers_delivery(message, channel):
            log.warning(
                "outbox_lease_too_short", outbox_id=message.id, lease_until=str(message.lease_until)
            )
            # Due again after a poll: by then another sender may have claimed it, or this one.
            retry_at = self.clock.now() + self.settings.mail.poll_interval
            return Outcome(message, PENDING, retry_at=retry_at, released=True)
        try:
            await channel.deliver(message, self.clock.now())
        except DeliveryError as exc:
            return self._failure(message, exc, channel)
        except Exception as exc:  # the per-message boundary: one bad message stops nothing else
            log.exception("outbox_delivery_crashed", outbox_id=message.id)
            return self._failure(message, DeliveryError(repr(exc), permanent=False), channel)
        self.outages.settled(message.channel, message.id, delivered=True, now=self.clock.now())
        return Outcome(message, SENT)

    def _lease_covers_delivery(self, message: ClaimedMessage, channel: Channel) -> bool:
        """Whether a delivery started now ends (at worst by timeout) inside the lease.

        A message that waited in this sender's queue past that point is given back instead:
        once its lease expires another sender may claim and send it, and delivering it here as
        well would send it twice.
        """
        if message.lease_until is None:
            return True
        return self.clock.now() + channel.longest_attempt < message.lease_until

    def _failure(
        self, message: ClaimedMessage, exc: DeliveryError, channel: Channel | None
    ) -> Outcome:
        fields = {"outbox_id": message.id, "rule_id": message.rule_id, "error": str(exc)}
        retry = self.settings.mail.retry
        if exc.permanent or gives_up(message.attempts, retry):
            self.outages.settled(message.channel, message.id, delivered=False, now=self.clock.now())
            bounce = exc.permanent and channel is not None and channel.is_hard_bounce(message, exc)
            error = str(exc)
            if not exc.permanent:  # the last transient error alone read as if it were retried
                error = fields["error"] = gave_up_error(message.attempts, retry, error)
            log.warning("outbox_failed", permanent=exc.permanent, hard_bounce=bounce, **fields)
            return Outcome(message, FAILED, error, hard_bounce=bounce, code=exc.code)
        retry_at = self.clock.now() + retry_delay(message.attempts, retry, self.rng)
        outage = outage_reason(exc)
        if outage is not None:
            # The relay down or refusing leadflow fails every message alike: the outage is told
            # once, then in a summary a minute (:mod:`leadflow.outbox.outage`); each message's
            # line only at debug level.
            self.outages.failed(
                message.channel, message.id, exc, outage, retry_at, self.clock.now()
            )
            event = "outbox_relay_refused" if exc.relay_refusal else "outbox_retry"
            log.debug(event, attempts=message.attempts, retry_at=retry_at.isoformat(), **fields)
        elif exc.outcome_unknown:
            # The destination had the whole message and did not answer: it may have delivered
            # it, and the retry (same Message-ID) may then be a copy. Said apart from a retry.
            log.warning(
                "outbox_outcome_unknown",
                attempts=message.attempts,
                retry_at=retry_at.isoformat(),
                **fields,
            )
        else:
            # The first transient failures (greylisting, a relay restarting) are routine: info.
            # Failing attempt after attempt, or a local error (a full or read-only maildir) is
            # something to act on: 1,500 info lines in 15 s said nothing to a warning filter.
            routine = message.attempts < RETRY_WARNING_FROM and not exc.local
            (log.info if routine else log.warning)(
                "outbox_retry", attempts=message.attempts, retry_at=retry_at.isoformat(), **fields
            )
        return Outcome(message, PENDING, str(exc), retry_at=retry_at, code=exc.code)

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
                counts: Counter[tuple[str, str]] = Counter()
                for outcome in batch:
                    self.report.add(outcome)
                    counts[outcome.message.channel, outcome.status] += 1
                for (channel, status), count in counts.items():
                    metrics.record_delivery(channel, status, count)

    async def _record_until_done(self, batch: list[Outcome]) -> None:
        """Record ``batch``, retrying with backoff while the database is unreachable.

        Giving up would leave delivered messages ``sending`` and send them again when the lease
        expires, so the recorder keeps trying; a stopping daemon cancels it after its grace.
        """
        delay = _RECORD_RETRY_FIRST
        while True:
            try:
                await asyncio.to_thread(
                    record_outcomes,
                    self.engine,
                    batch,
                    self.worker,
                    self.clock.now(),
                    self._record_hard_bounces,
                )
            except SQLAlchemyError as exc:
                log_failure(
                    log,
                    "outbox_record_failed",
                    exc,
                    level="warning",
                    outcomes=len(batch),
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECORD_RETRY_MAX)
            else:
                self.in_hand.difference_update(outcome.message.id for outcome in batch)
                for outcome in batch:
                    self.report.held.pop(outcome.message.id, None)
                return

    def _record_hard_bounces(
        self, session: Session, outcomes: Sequence[Outcome], now: datetime
    ) -> None:
        """Each channel's hard bounces among ``outcomes`` (of a lead), in their transaction."""
        bounced: dict[str, list[Outcome]] = {}
        for outcome in outcomes:
            message = outcome.message
            if outcome.hard_bounce and message.lead_id:
                bounced.setdefault(message.channel, []).append(outcome)
        for name, bounces in bounced.items():
            self.channels[name].record_hard_bounces(session, bounces, now)


_RECORD_EVERY = 0.025
"""Seconds from one outcome commit to the next at most: the width of a batch of outcomes."""

_RECORD_RETRY_FIRST = 0.2
_RECORD_RETRY_MAX = 5.0
"""Seconds between attempts to record outcomes while the database is unreachable."""


def retry_delay(attempts: int, retry: RetrySettings, rng: random.Random) -> timedelta:
    """Exponential backoff from ``first_delay``, capped at ``max_delay``, with jitter in 50-100%."""
    return _nominal_delay(attempts, retry) * rng.uniform(0.5, 1.0)


def gave_up_error(attempts: int, retry: RetrySettings, error: str) -> str:
    """A failed row's error when its retries ran out: ``gave up after 7 attempts over 5m: ...``."""
    noun = "attempt" if attempts == 1 else "attempts"
    span = format_duration(retry.give_up_after)
    return f"gave up after {attempts} {noun} over {span}: {error}"


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
