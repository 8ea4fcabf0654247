"""Email as an outbox channel: each claimed row built into RFC 5322 bytes and handed to the
transport ``mail.transport`` names.

Two rules are email's alone and live here, not in the outbox. At claim time, the marketing
email of a lead flagged after it was queued (an unsubscribe imported or posted while the email
waited for its send window) is suppressed, whatever set the flag. After delivery, a refused
recipient mailbox (the transport's :class:`~leadflow.errors.RecipientRejectedError`: a 5.1.x or
5.2.1 reply to RCPT, or a bare 550/551/553 there) on a marketing email is a hard bounce: the lead
is flagged ``hard_bounced`` (audited, :func:`~leadflow.mail.hard_bounces.mark_hard_bounced`)
and its pending marketing is suppressed, with the outcome. The relay
refusing leadflow itself (a 5.7.x policy reply, its sender refused) is never one: no lead is to
blame, and the message is retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from leadflow.errors import DeliveryError, RecipientRejectedError
from leadflow.mail.enqueue import EMAIL_CHANNEL, SUPPRESSING_FLAGS, cancel_pending_marketing
from leadflow.mail.hard_bounces import Bounce, mark_hard_bounced
from leadflow.mail.message import build_message, envelope_recipients, envelope_sender
from leadflow.mail.transports.base import Transport
from leadflow.outbox.store import SUPPRESSED, ClaimedMessage, Outcome
from leadflow.settings import Settings
from leadflow.store.tables import LEADS, OUTBOX


class EmailChannel:
    """Delivers ``email`` rows through ``transport``, which stays its maker's to close."""

    name = EMAIL_CHANNEL

    def __init__(self, settings: Settings, transport: Transport) -> None:
        self._settings = settings
        self._transport = transport
        self._sender = envelope_sender(settings)

    @property
    def longest_attempt(self) -> timedelta:
        return self._settings.mail.smtp.longest_delivery

    def withhold(self, session: Session, due: Sequence[int]) -> set[int]:
        return suppress_flagged_leads(session, due)

    async def deliver(self, message: ClaimedMessage, now: datetime) -> None:
        # The envelope first: a recipient that cannot be sent fails for good with its reason.
        recipients = envelope_recipients(message.recipient)
        data = build_message(message, self._settings, now)
        await self._transport.deliver(
            data,
            sender=self._sender,
            recipients=recipients,
            message_id=message.message_id,
        )

    def is_hard_bounce(self, message: ClaimedMessage, error: DeliveryError) -> bool:
        return message.category == "marketing" and isinstance(error, RecipientRejectedError)

    def record_hard_bounces(
        self, session: Session, bounces: Sequence[Outcome], now: datetime
    ) -> None:
        found = [
            Bounce(
                lead_id=outcome.message.lead_id,
                outbox_id=outcome.message.id,
                message_id=outcome.message.message_id,
                code=outcome.code,
                reply=outcome.error or "",
            )
            for outcome in bounces
            if outcome.message.lead_id is not None
        ]
        if not found:
            return
        mark_hard_bounced(session, found, now)
        lead_ids = sorted({bounce.lead_id for bounce in found})
        cancel_pending_marketing(session, lead_ids, "hard_bounced", now)

    async def close(self) -> None:
        """Nothing to release: the transport belongs to whoever made it."""


def suppress_flagged_leads(session: Session, due: Sequence[int]) -> set[int]:
    """Suppress the marketing email among ``due`` whose lead is flagged; return those ids."""
    t = OUTBOX
    flags = [LEADS.c[flag] for flag in SUPPRESSING_FLAGS]
    flagged = session.execute(
        select(t.c.id, *flags)
        .join_from(t, LEADS, LEADS.c.id == t.c.lead_id)
        .where(
            t.c.id.in_(due),
            t.c.channel == EMAIL_CHANNEL,
            t.c.category == "marketing",
            or_(*(f.is_(True) for f in flags)),
        )
    ).all()
    by_reason: dict[str, list[int]] = {}
    for row in flagged:
        reason = next(flag for flag in SUPPRESSING_FLAGS if row._mapping[flag])
        by_reason.setdefault(reason, []).append(row.id)
    for reason, suppressed in by_reason.items():
        session.execute(
            update(t)
            .where(t.c.id.in_(suppressed))
            .values(status=SUPPRESSED, status_reason=reason, claimed_until=None, claimed_by=None)
        )
    return {row.id for row in flagged}
