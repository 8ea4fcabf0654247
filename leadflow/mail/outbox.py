"""The transactional outbox: an email is a row written in the caller's transaction.

A row's life: ``pending`` -> ``sending`` (claimed by a sender, with a lease) -> ``sent``, or back
to ``pending`` with a later ``next_attempt_at`` after a transient failure, or ``failed``.
Marketing email that must not go out is written as ``suppressed`` with the reason, so "why did
this lead not get the case study?" has an answer in the table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from leadflow.addresses import is_recipient
from leadflow.durations import format_duration
from leadflow.errors import UserInputError
from leadflow.mail.context import unsubscribe_url
from leadflow.mail.templates import TemplateCatalog
from leadflow.settings import SendWindow, Settings
from leadflow.store.models import Lead
from leadflow.store.tables import OUTBOX

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
SUPPRESSED = "suppressed"
STATUSES = (PENDING, SENDING, SENT, FAILED, SUPPRESSED)
SUPPRESSING_FLAGS = ("unsubscribed", "do_not_email", "hard_bounced")
"""Lead flags that stop marketing email; each is also the suppression reason recorded."""

Category = Literal["operational", "marketing"]
_TABLE = OUTBOX
_COUNTED_FOR_CAP = (PENDING, SENDING, SENT)


@dataclass(frozen=True)
class EnqueueResult:
    """What :func:`enqueue_email` did. ``inserted`` is False when the key already existed."""

    inserted: bool
    outbox_id: int
    message_id: str
    status: str
    reason: str | None
    next_attempt_at: datetime


def message_id_for(key: str, domain: str) -> str:
    """The stable Message-ID of the message with idempotency ``key``."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def enqueue_email(
    session: Session,
    *,
    key: str,
    template: str,
    context: Mapping[str, Any],
    to: str,
    category: Category,
    now: datetime,
    catalog: TemplateCatalog,
    settings: Settings,
    lead_id: int | None = None,
    deal_id: int | None = None,
    rule_id: str | None = None,
    rule_version: str | None = None,
    recipient_timezone: str | None = None,
) -> EnqueueResult:
    """Render ``template`` and add one outbox row in the caller's transaction (no commit).

    A second call with the same ``key`` inserts nothing and returns the existing row. Marketing
    email needs ``lead_id``: it is suppressed for unsubscribed, do-not-email and hard-bounced
    leads and over the frequency cap, and held until the send window opens in the recipient's
    timezone. Operational email (to reps) goes out at once.
    """
    _check_recipient(to, key)
    existing = _existing(session, key)
    if existing is not None:
        return existing
    values = dict(context)
    status, reason, due, headers = PENDING, None, now, {}
    if category == "marketing":
        lead = _marketing_lead(session, lead_id, key)
        link = values.get("unsubscribe_url") or unsubscribe_url(settings, lead.external_id)
        values["unsubscribe_url"] = link
        headers = {
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        reason = _suppression_reason(session, lead, now, settings)
        if reason is not None:
            status = SUPPRESSED
        else:
            zone = _zone(recipient_timezone or lead.timezone, settings)
            due = next_send_time(now, zone, settings.mail.send_window)
    rendered = catalog.render(template, values)
    message_id = message_id_for(key, settings.mail.message_id_domain)
    row: dict[str, Any] = {
        "idempotency_key": key,
        "message_id": message_id,
        "channel": "email",
        "category": category,
        "lead_id": lead_id,
        "deal_id": deal_id,
        "rule_id": rule_id,
        "rule_version": rule_version,
        "recipient": to,
        "subject": rendered.subject,
        "body_text": rendered.text,
        "body_html": rendered.html,
        "headers": headers,
        "status": status,
        "status_reason": reason,
        "attempts": 0,
        "next_attempt_at": due,
        "created_at": now,
    }
    new_id = session.execute(_insert_ignoring_duplicates(session, row)).scalar_one_or_none()
    if new_id is None:  # a concurrent transaction inserted the same key first
        raced = _existing(session, key)
        assert raced is not None
        return raced
    return EnqueueResult(True, new_id, message_id, status, reason, due)


def cancel_pending_marketing(
    session: Session | Connection, lead_id: int, reason: str, now: datetime
) -> int:
    """Suppress the lead's marketing email not yet claimed by a sender; return how many."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = session.execute(
        update(_TABLE)
        .where(
            _TABLE.c.lead_id == lead_id,
            _TABLE.c.category == "marketing",
            _TABLE.c.status == PENDING,
        )
        .values(status=SUPPRESSED, status_reason=f"{reason} (cancelled {stamp})")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def next_send_time(now: datetime, zone: ZoneInfo, window: SendWindow) -> datetime:
    """``now`` if it is inside the daily send window in ``zone``, else the next opening.

    A window whose end is before its start runs over midnight (``22:00``-``06:00``).
    """
    local = now.astimezone(zone)
    start, end, moment = window.start, window.end, local.time().replace(tzinfo=None)
    if start == end:
        return now
    inside = start <= moment < end if start < end else (moment >= start or moment < end)
    if inside:
        return now
    opening = _local(local.date(), window, zone)
    if opening <= local:
        opening = _local(local.date() + timedelta(days=1), window, zone)
    return opening.astimezone(UTC)


def _local(day: date, window: SendWindow, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, window.start, tzinfo=zone)


def _zone(name: str | None, settings: Settings) -> ZoneInfo:
    """The recipient's zone; an unknown or missing one falls back to the business calendar's."""
    try:
        return ZoneInfo(name or settings.calendar.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(settings.calendar.timezone)


def is_email_address(value: str | None) -> bool:
    """Whether ``value`` can be a recipient: one address, perhaps named (not ``n/a``, no list)."""
    return is_recipient(value)


def _check_recipient(to: str, key: str) -> None:
    if not is_email_address(to):
        msg = f"outbox message {key!r}: {to!r} is not an email address"
        raise UserInputError(msg)


def _existing(session: Session, key: str) -> EnqueueResult | None:
    row = session.execute(
        select(
            _TABLE.c.id,
            _TABLE.c.message_id,
            _TABLE.c.status,
            _TABLE.c.status_reason,
            _TABLE.c.next_attempt_at,
        ).where(_TABLE.c.idempotency_key == key)
    ).first()
    if row is None:
        return None
    return EnqueueResult(
        False, row.id, row.message_id, row.status, row.status_reason, row.next_attempt_at
    )


def _marketing_lead(session: Session, lead_id: int | None, key: str) -> Lead:
    lead = session.get(Lead, lead_id) if lead_id is not None else None
    if lead is None:
        msg = f"outbox message {key!r}: marketing email needs the lead it goes to (lead_id)"
        raise UserInputError(msg)
    return lead


def _suppression_reason(
    session: Session, lead: Lead, now: datetime, settings: Settings
) -> str | None:
    for flag in SUPPRESSING_FLAGS:
        if getattr(lead, flag):
            return flag
    cap = settings.mail.frequency_cap
    recent = session.execute(
        select(func.count())
        .select_from(_TABLE)
        .where(
            _TABLE.c.lead_id == lead.id,
            _TABLE.c.category == "marketing",
            _TABLE.c.status.in_(_COUNTED_FOR_CAP),
            _TABLE.c.created_at > now - cap.window,
        )
    ).scalar_one()
    if recent >= cap.messages:
        window = format_duration(cap.window)
        return f"frequency_cap: {recent} marketing emails in the last {window}"
    return None


def _insert_ignoring_duplicates(session: Session, row: Mapping[str, Any]) -> Any:
    """INSERT ... ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, per dialect."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(_TABLE)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(_TABLE.c.id)
    )
