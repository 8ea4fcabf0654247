"""A lead's own unsubscribe: it stops receiving marketing email at once.

The person confirmed on leadflow's unsubscribe page, or their mail client posted the
``List-Unsubscribe`` link (RFC 8058 one-click). In the caller's transaction the lead is flagged
``unsubscribed``, its active nurture enrollments end as nurture ends them when it sees the flag
(``exited``, reason ``unsubscribed``), its marketing email not yet claimed by a sender is
suppressed, and the audit says so. A lead already unsubscribed is left as it is: a second
request changes nothing.

An opt-out sticks: only :func:`resubscribe_lead` (``leadflow resubscribe``, or ``POST
/v1/leads/{id}/resubscribe``) clears the flag, with the reason in the audit; an import or a
post saying ``unsubscribed: false`` keeps it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from leadflow.mail.enqueue import cancel_pending_marketing
from leadflow.store.audit_trail import audit_row
from leadflow.store.lead_flags import clear_lead_flag
from leadflow.store.nurture_exits import end_flagged_nurture
from leadflow.store.tables import AUDIT, LEADS

REASON = "unsubscribed"
"""The exit reason and the suppression reason, as nurture and the sender write them."""
REASON_NEEDED = "say why the lead may be mailed again (its consent)"
"""What a re-subscribing without a reason is told, by the command and by the HTTP API."""


def unsubscribe_lead(session: Session, lead_id: int, now: datetime, via: str) -> bool:
    """Unsubscribe the lead in the caller's transaction; False when it was already (nothing is
    written). ``via`` names the way it came (``unsubscribe_page``, ``one_click``) in the audit."""
    flagged = session.execute(
        update(LEADS)
        .where(LEADS.c.id == lead_id, LEADS.c.unsubscribed.is_(False))
        .values(unsubscribed=True, updated_at=now)
    )
    # The conditional update is the lock: of two requests at once, one flags the lead and the
    # other finds it flagged, so the enrollments and the audit are written once.
    if not flagged.rowcount:  # type: ignore[attr-defined]
        return False
    cancelled = cancel_pending_marketing(session, [lead_id], REASON, now)
    session.execute(
        insert(AUDIT),
        [
            audit_row(
                at=now,
                source="unsubscribe",
                action="unsubscribed",
                lead_id=lead_id,
                params={"via": via, "cancelled_emails": cancelled},
            )
        ],
    )
    # As an import or a posted flag ends them: exited, reason unsubscribed, one audit row each.
    end_flagged_nurture(session.connection(), [lead_id], now)
    return True


def resubscribe_lead(
    session: Session, external_id: str, now: datetime, reason: str, source: str = "cli"
) -> bool | None:
    """Clear the lead's ``unsubscribed`` in the caller's transaction, with a ``resubscribed``
    audit row giving ``reason``: the one way an opt-out is undone (an import or a post saying
    ``unsubscribed: false`` does not undo it). ``source`` names the way it came in the audit
    (``cli``, ``api``). False when the lead was not unsubscribed (nothing is written), None
    when there is no such lead."""
    return clear_lead_flag(
        session,
        external_id,
        "unsubscribed",
        action="resubscribed",
        now=now,
        reason=reason,
        source=source,
    )


def resubscribed_message(external_id: str, done: bool) -> str:
    """What :func:`resubscribe_lead` did to a lead that exists, as the command prints it and
    the HTTP API answers it."""
    if done:
        return f"lead {external_id!r} re-subscribed: marketing email may be sent to it again"
    return f"lead {external_id!r} is not unsubscribed: nothing to do"
