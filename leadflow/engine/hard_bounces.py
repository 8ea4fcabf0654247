"""Clearing a lead's hard bounce: the one way its ``hard_bounced`` flag is undone.

The sender flags a lead ``hard_bounced`` when the recipient's server refuses its mailbox for
good (docs/email.md, "The sender"); its marketing email is suppressed from then on and nurture
ends its enrollments (``exited``, ``hard bounce``). A mailbox can be fixed, and before this
version a relay refusing leadflow itself (a 5.7.1 policy refusal) flagged every recipient of
the batch: :func:`clear_hard_bounce` (``leadflow unbounce``) clears the flag, with the reason
in the audit. As re-subscribing, it does not re-enrol the lead: the enrolling rule decides that
as for any lead.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from leadflow.engine.audit_trail import audit_row
from leadflow.store.tables import AUDIT, LEADS

REASON_NEEDED = "say why the lead's address may be mailed again (the mailbox fixed, a wrong bounce)"
"""What clearing a hard bounce without a reason is told."""


def clear_hard_bounce(
    session: Session, external_id: str, now: datetime, reason: str, source: str = "cli"
) -> bool | None:
    """Clear the lead's ``hard_bounced`` in the caller's transaction, with a ``bounce_cleared``
    audit row giving ``reason``. ``source`` names the way it came in the audit (``cli``). False
    when the lead was not hard-bounced (nothing is written), None when there is no such lead."""
    lead_id = session.execute(
        select(LEADS.c.id).where(LEADS.c.external_id == external_id)
    ).scalar_one_or_none()
    if lead_id is None:
        return None
    # The conditional update is the lock, as in re-subscribing: of two runs at once, one clears
    # the flag and writes the audit row, the other finds nothing to do.
    cleared = session.execute(
        update(LEADS)
        .where(LEADS.c.id == lead_id, LEADS.c.hard_bounced.is_(True))
        .values(hard_bounced=False, updated_at=now)
    )
    if not cleared.rowcount:  # type: ignore[attr-defined]
        return False
    session.execute(
        insert(AUDIT),
        [
            audit_row(
                at=now,
                source=source,
                action="bounce_cleared",
                lead_id=lead_id,
                params={"reason": reason},
            )
        ],
    )
    return True


def bounce_cleared_message(external_id: str, done: bool) -> str:
    """What :func:`clear_hard_bounce` did to a lead that exists, as the command prints it."""
    if done:
        return (
            f"lead {external_id!r} no longer hard-bounced: marketing email may be sent to it again"
        )
    return f"lead {external_id!r} is not hard-bounced: nothing to do"
