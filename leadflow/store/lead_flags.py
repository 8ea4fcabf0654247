"""Clearing a lead's opt-out flag (``unsubscribed``, ``hard_bounced``) the one audited way.

An opt-out is set by what the lead (or its mailbox) did and cleared only by a person who says
why: ``leadflow resubscribe`` and ``leadflow unbounce`` (and the API's resubscribe) clear the
flag and write the audit row giving the reason, in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from leadflow.store.audit_trail import record
from leadflow.store.tables import LEADS


def clear_lead_flag(
    session: Session,
    external_id: str,
    flag: str,
    *,
    action: str,
    now: datetime,
    reason: str,
    source: str,
) -> bool | None:
    """Clear the lead's boolean column ``flag`` with an ``action`` audit row giving ``reason``.
    False when the flag was not set (nothing is written), None when there is no such lead."""
    lead_id = session.execute(
        select(LEADS.c.id).where(LEADS.c.external_id == external_id)
    ).scalar_one_or_none()
    if lead_id is None:
        return None
    # The conditional update is the lock: of two runs at once, one clears the flag and writes
    # the audit row, the other finds nothing to do.
    cleared = session.execute(
        update(LEADS)
        .where(LEADS.c.id == lead_id, LEADS.c[flag].is_(True))
        .values({flag: False, "updated_at": now})
    )
    if not cleared.rowcount:  # type: ignore[attr-defined]
        return False
    record(
        session, at=now, source=source, action=action, lead_id=lead_id, params={"reason": reason}
    )
    return True
