"""Queueing an email: rendered now, written to the outbox in the caller's transaction.

What makes an outbox row an email is decided here, before the row exists: the recipient must be
an address, the template is rendered, and marketing email is suppressed for flagged leads and
over the frequency cap, carries List-Unsubscribe, and waits for the send window in the
recipient's timezone. The row itself, its idempotency key and Message-ID, is the outbox's
(:func:`leadflow.outbox.store.enqueue`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from leadflow.durations import format_duration
from leadflow.errors import UserInputError
from leadflow.mail.context import (
    PLACEHOLDER_UNSUBSCRIBE_URL,
    unsubscribe_pattern,
    unsubscribe_url,
)
from leadflow.mail.templates import TemplateCatalog
from leadflow.mail.tracking import tracked_bodies
from leadflow.mail_settings import SendWindow
from leadflow.outbox.store import (
    PENDING,
    SENDING,
    SENT,
    SUPPRESSED,
    EnqueueResult,
    enqueue_rows,
    find,
    message_id_for,
    outbox_row,
)
from leadflow.settings import Settings
from leadflow.store.email_addresses import is_recipient
from leadflow.store.id_ranges import among, chunks
from leadflow.store.models import Lead
from leadflow.store.tables import OUTBOX

EMAIL_CHANNEL = "email"
"""The ``channel`` value of email rows (:mod:`leadflow.mail.channel` delivers them)."""
SUPPRESSING_FLAGS = ("unsubscribed", "do_not_email", "hard_bounced")
"""Lead flags that stop marketing email; each is also the suppression reason recorded."""

Category = Literal["operational", "marketing"]
_TABLE = OUTBOX
_COUNTED_FOR_CAP = (PENDING, SENDING, SENT)


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
    existing = find(session, key)  # a key seen before costs a lookup, not a rendering
    if existing is not None:
        return existing
    # email_row refuses marketing email without its lead
    wanted = category == "marketing" and lead_id is not None
    lead = session.get(Lead, lead_id) if wanted else None
    row = email_row(
        key=key,
        template=template,
        context=context,
        to=to,
        category=category,
        now=now,
        catalog=catalog,
        settings=settings,
        lead=lead,
        recent_marketing=lambda: recent_marketing(session, [lead_id or 0], now, settings).get(
            lead_id or 0, 0
        ),
        lead_id=lead_id,
        deal_id=deal_id,
        rule_id=rule_id,
        rule_version=rule_version,
        recipient_timezone=recipient_timezone,
    )
    return enqueue_rows(session, [row])[key]


def email_row(
    *,
    key: str,
    template: str,
    context: Mapping[str, Any],
    to: str,
    category: Category,
    now: datetime,
    catalog: TemplateCatalog,
    settings: Settings,
    lead: Lead | None,
    recent_marketing: Callable[[], int],
    lead_id: int | None = None,
    deal_id: int | None = None,
    rule_id: str | None = None,
    rule_version: str | None = None,
    recipient_timezone: str | None = None,
) -> dict[str, Any]:
    """The outbox row of one email, rendered, reading nothing from the store.

    Marketing email needs its ``lead``; with ``mail.tracking.enabled`` its links go through the
    tracking redirects and its HTML carries the open pixel (:mod:`leadflow.mail.tracking`); ``recent_marketing`` counts the lead's marketing email
    inside the frequency cap's window, asked only when no flag suppresses the email already.
    """
    _check_recipient(to, key)
    terms = _Terms(dict(context))
    if category == "marketing":
        if lead is None:
            msg = f"outbox message {key!r}: marketing email needs the lead it goes to (lead_id)"
            raise UserInputError(msg)
        terms = _marketing_terms(
            lead, terms.values, now, settings, recipient_timezone, recent_marketing
        )
    rendered = catalog.render(template, terms.values)
    text, html = rendered.text, rendered.html
    tracked = category == "marketing" and terms.status == PENDING
    if tracked and lead is not None and settings.mail.tracking.enabled:
        text, html = tracked_bodies(
            text,
            html,
            settings=settings,
            message_id=message_id_for(key, settings.mail.message_id_host),
            lead=lead.external_id,
            template=template,
            unsubscribe_url=terms.values.get("unsubscribe_url"),
        )
    return outbox_row(
        key=key,
        channel=EMAIL_CHANNEL,
        category=category,
        recipient=to,
        subject=rendered.subject,
        body_text=text,
        body_html=html,
        headers=terms.headers,
        status=terms.status,
        status_reason=terms.reason,
        due=terms.due,
        now=now,
        message_id_domain=settings.mail.message_id_host,
        lead_id=lead_id,
        deal_id=deal_id,
        rule_id=rule_id,
        rule_version=rule_version,
    )


def counts_for_cap(row: Mapping[str, Any]) -> bool:
    """Whether an outbox row (from :func:`email_row`) counts against its lead's frequency cap,
    as :func:`recent_marketing` counts the stored ones."""
    return bool(row["category"] == "marketing" and row["status"] in _COUNTED_FOR_CAP)


def recent_marketing(
    session: Session, lead_ids: Collection[int], now: datetime, settings: Settings
) -> dict[int, int]:
    """How many marketing emails each lead was sent or has queued inside the frequency cap's
    window, by lead id (leads with none are left out)."""
    window_start = now - settings.mail.frequency_cap.window
    counts: dict[int, int] = {}
    for chunk in chunks(list(lead_ids)):
        query = (
            select(_TABLE.c.lead_id, func.count())
            .where(
                among(_TABLE.c.lead_id, chunk, session.get_bind().dialect.name),
                _TABLE.c.category == "marketing",
                _TABLE.c.status.in_(_COUNTED_FOR_CAP),
                _TABLE.c.created_at > window_start,
            )
            .group_by(_TABLE.c.lead_id)
        )
        counts.update({int(lead): int(count) for lead, count in session.execute(query)})
    return counts


@dataclass(frozen=True)
class _Terms:
    """How an email is queued: the context it renders with, its status, why it is suppressed,
    when it is due (None: at once) and the headers it adds."""

    values: dict[str, Any]
    status: str = PENDING
    reason: str | None = None
    due: datetime | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _marketing_terms(
    lead: Lead,
    values: Mapping[str, Any],
    now: datetime,
    settings: Settings,
    recipient_timezone: str | None,
    recent_marketing: Callable[[], int],
) -> _Terms:
    """Marketing carries List-Unsubscribe, is suppressed for flagged leads and over the
    frequency cap, and waits for the send window in the recipient's timezone."""
    link = values.get("unsubscribe_url") or unsubscribe_url(settings, lead.external_id)
    headers = {
        "List-Unsubscribe": f"<{link}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    if unsubscribe_pattern(settings) == PLACEHOLDER_UNSUBSCRIBE_URL:
        # No page of leadflow's or the operator's answers the placeholder: a provider's
        # unsubscribe button (one-click or not) would go to example.com and the unsubscribe
        # would be lost without anyone knowing; better no button than one that does nothing.
        headers = {}
    linked = {**values, "unsubscribe_url": link}
    reason = _suppression_reason(lead, settings, recent_marketing)
    if reason is not None:
        return _Terms(linked, SUPPRESSED, reason, None, headers)
    zone = _zone(recipient_timezone or lead.timezone, settings)
    return _Terms(linked, due=next_send_time(now, zone, settings.mail.send_window), headers=headers)


def cancel_pending_marketing(
    session: Session | Connection, lead_ids: Collection[int], reason: str, now: datetime
) -> int:
    """Suppress the leads' marketing email not yet claimed by a sender; return how many."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    cancelled = 0
    bind = session if isinstance(session, Connection) else session.get_bind()
    dialect = bind.dialect.name
    for chunk in chunks(list(lead_ids)):
        result = session.execute(
            update(_TABLE)
            .where(
                among(_TABLE.c.lead_id, chunk, dialect),
                _TABLE.c.category == "marketing",
                _TABLE.c.status == PENDING,
            )
            .values(status=SUPPRESSED, status_reason=f"{reason} (cancelled {stamp})")
        )
        cancelled += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return cancelled


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


def _check_recipient(to: str, key: str) -> None:
    if not is_recipient(to):
        msg = f"outbox message {key!r}: {to!r} is not an email address"
        raise UserInputError(msg)


def _suppression_reason(
    lead: Lead, settings: Settings, recent_marketing: Callable[[], int]
) -> str | None:
    for flag in SUPPRESSING_FLAGS:
        if getattr(lead, flag):
            return flag
    cap = settings.mail.frequency_cap
    recent = recent_marketing()
    if recent >= cap.messages:
        window = format_duration(cap.window)
        return f"frequency_cap: {recent} marketing emails in the last {window}"
    return None
