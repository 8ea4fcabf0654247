"""A lead's hard bounce: marked by the sender, cleared by ``leadflow unbounce``, both audited.

The sender flags a lead ``hard_bounced`` when the recipient's server refuses its mailbox for
good (docs/email.md, "The sender"): :func:`mark_hard_bounced`, with a ``hard_bounced`` audit row
naming the message and the relay's reply. Its marketing email is suppressed from then on and
nurture ends its enrollments (``exited``, ``hard bounce``). A mailbox can be fixed, and before
this version a relay refusing leadflow itself (a 5.7.1 policy refusal) flagged every recipient
of the batch: :func:`clear_hard_bounce` (``leadflow unbounce``) clears the flag, with the reason
in the audit. As re-subscribing, it does not re-enrol the lead: the enrolling rule decides that
as for any lead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from leadflow.store.audit_trail import audit_row
from leadflow.store.id_ranges import chunks
from leadflow.store.lead_flags import clear_lead_flag
from leadflow.store.tables import AUDIT, LEADS

SENDER_SOURCE = "sender"
"""The audit ``source`` of what the sender decides (a hard bounce)."""


@dataclass(frozen=True)
class Bounce:
    """One message whose recipient's mailbox was refused for good."""

    lead_id: int
    outbox_id: int
    message_id: str
    code: int | None
    """The relay's reply code (``550``)."""
    reply: str
    """The relay's reply as the outbox keeps it: ``550 5.1.1 no such user (recipient ...)``."""


def mark_hard_bounced(session: Session, bounces: Sequence[Bounce], now: datetime) -> None:
    """Flag the leads of ``bounces`` ``hard_bounced`` in the caller's transaction, each one
    flagged here with one ``hard_bounced`` audit row (source ``sender``) naming its bounce.

    A row per change of the flag, as for consent: a lead already flagged (a second message
    claimed before the first bounced, bouncing in a later batch) gets none, and of a lead's
    bounces in one batch the row names the first message (the lowest outbox id); the others'
    replies stay in their outbox rows (``leadflow outbox --failed``).
    """
    first: dict[int, Bounce] = {}
    for bounce in sorted(bounces, key=lambda b: b.outbox_id):
        first.setdefault(bounce.lead_id, bounce)
    marked: set[int] = set()
    # The conditional update is the lock, as in clearing: of two senders recording bounces of
    # one lead at once, one flags it and writes the row, the other finds it flagged.
    for chunk in chunks(sorted(first)):
        marked.update(
            session.execute(
                update(LEADS)
                .where(LEADS.c.id.in_(chunk), LEADS.c.hard_bounced.is_(False))
                .values(hard_bounced=True, updated_at=now)
                .returning(LEADS.c.id)
            ).scalars()
        )
    if marked:
        session.execute(
            insert(AUDIT),
            [
                audit_row(
                    at=now,
                    source=SENDER_SOURCE,
                    action="hard_bounced",
                    lead_id=lead_id,
                    params={
                        "outbox_id": bounce.outbox_id,
                        "message_id": bounce.message_id,
                        "code": bounce.code,
                        "reply": bounce.reply,
                    },
                )
                for lead_id, bounce in sorted(first.items())
                if lead_id in marked
            ],
        )


REASON_NEEDED = "say why the lead's address may be mailed again (the mailbox fixed, a wrong bounce)"
"""What clearing a hard bounce without a reason is told."""


def clear_hard_bounce(
    session: Session, external_id: str, now: datetime, reason: str, source: str = "cli"
) -> bool | None:
    """Clear the lead's ``hard_bounced`` in the caller's transaction, with a ``bounce_cleared``
    audit row giving ``reason``. ``source`` names the way it came in the audit (``cli``). False
    when the lead was not hard-bounced (nothing is written), None when there is no such lead."""
    return clear_lead_flag(
        session,
        external_id,
        "hard_bounced",
        action="bounce_cleared",
        now=now,
        reason=reason,
        source=source,
    )


def bounce_cleared_message(external_id: str, done: bool) -> str:
    """What :func:`clear_hard_bounce` did to a lead that exists, as the command prints it."""
    if done:
        return (
            f"lead {external_id!r} no longer hard-bounced: marketing email may be sent to it again"
        )
    return f"lead {external_id!r} is not hard-bounced: nothing to do"
