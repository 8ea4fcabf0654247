"""A hit on a tracked email's pixel or link, as an activity: a person's, or marked a machine's.

Every hit with a valid token becomes an ``activities`` row (``email_open``, ``email_click`` or
``unsubscribe``); what is not a person is kept with ``machine = true`` and the reason in
``properties.machine_reason``, so it earns no points but can still be counted and checked.
The reasons, first match wins:

``head_request``
    A ``HEAD``: link checkers ask whether a URL answers; a person's browser sends ``GET``.
``privacy_proxy``
    An open fetched by Apple Mail Privacy Protection, which loads every image of every
    message on arrival, read or not (user agent exactly ``Mozilla/5.0``, or Apple's
    17.0.0.0/8). Google's and Yahoo's image proxies are not machines here: they fetch when
    the person opens the message, only without the person's address.
``scanner_agent``
    No user agent, a bare ``Mozilla/5.0`` on a link, or one that names a security gateway
    (Barracuda, Proofpoint, Mimecast, Cisco IronPort, Safe Links) or an HTTP library.
``scanner_window``
    Within ``mail.tracking.scanner_window`` of the message's ``sent_at`` (or before the send
    was recorded): security gateways fetch and click every link on delivery; people are
    not that fast.
``repeat``
    The same open, or the same link of the same message, counted already within
    ``mail.tracking.repeat_window``: a person, but no new interest.

An unsubscribe by ``POST`` (the page's button, a mail client's one-click) is a person's act:
only ``repeat`` applies to it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from leadflow.mail.tracking_tokens import Kind, TrackedLink
from leadflow.mail_settings import TrackingSettings
from leadflow.store.database import insert_ignoring_duplicates
from leadflow.store.tables import ACTIVITIES, LEADS, OUTBOX

ACTIVITY_TYPES: dict[Kind, str] = {
    "open": "email_open",
    "click": "email_click",
    "unsubscribe": "unsubscribe",
}
"""The activity type of each kind of hit, as scoring criteria name them."""
_BARE_AGENT = "Mozilla/5.0"
_APPLE = ipaddress.ip_network("17.0.0.0/8")
_SCANNER_AGENTS = (
    "barracuda",
    "proofpoint",
    "mimecast",
    "ironport",
    "ciscosecureemail",
    "safelinks",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "go-http-client",
    "curl/",
    "wget/",
    "libwww-perl",
    "headlesschrome",
    "phantomjs",
)
"""Lower-case parts of user agents no person browses with."""
_MAX_AGENT = 500


@dataclass(frozen=True)
class Hit:
    """One request for a tracked pixel or link, with a valid token."""

    link: TrackedLink
    at: datetime
    user_agent: str | None
    ip: str | None
    method: str = "GET"


@dataclass(frozen=True)
class RecordedHit:
    """What recording a hit did: the lead's activity, and whether it is a person's."""

    lead_id: int
    activity_type: str
    machine_reason: str | None
    inserted: bool
    """False when the identical hit (same second, agent and address) was recorded already."""

    @property
    def counts(self) -> bool:
        """A new activity of a person: it may move the lead's score and last activity."""
        return self.inserted and self.machine_reason is None


def agent_reason(hit: Hit) -> str | None:
    """Why the request itself shows a machine (method, user agent, address), or None."""
    if hit.method == "HEAD":
        return "head_request"
    agent = (hit.user_agent or "").strip()
    if hit.link.kind == "open" and (agent == _BARE_AGENT or _from_apple(hit.ip)):
        return "privacy_proxy"
    if not agent or agent == _BARE_AGENT:
        return "scanner_agent"
    lowered = agent.lower()
    if any(part in lowered for part in _SCANNER_AGENTS):
        return "scanner_agent"
    return None


def machine_reason(
    hit: Hit,
    sent: tuple[bool, datetime | None],
    earlier: list[dict[str, Any]],
    settings: TrackingSettings,
) -> str | None:
    """Why ``hit`` is not a person's new engagement, or None.

    ``sent`` is (whether the outbox still has the message, its ``sent_at``); ``earlier`` the
    properties of the lead's counted hits of the same type within the repeat window.
    """
    if not _asked_by_a_person(hit):
        reason = agent_reason(hit)
        if reason is not None:
            return reason
        known, sent_at = sent
        if known and (sent_at is None or hit.at - sent_at < settings.scanner_window):
            return "scanner_window"
    link = hit.link
    if any(p.get("message_id") == link.message_id and p.get("url") == link.url for p in earlier):
        return "repeat"
    return None


def _asked_by_a_person(hit: Hit) -> bool:
    """An unsubscribe by ``POST`` (the page's button, or RFC 8058's one-click, which a mailbox
    provider's server sends only when the person presses its unsubscribe button) is the
    person's own act, whatever agent carries it and however soon after delivery: scanners and
    proxies fetch (``GET``, ``HEAD``), they do not post. Kept as a machine's, the unsubscribe
    earned none of a model's points for it (the shipped model's -20)."""
    return hit.link.kind == "unsubscribe" and hit.method == "POST"


def record_hit(session: Session, settings: TrackingSettings, hit: Hit) -> RecordedHit | None:
    """Write ``hit`` as an activity of its lead in the caller's transaction; None when the lead
    is no longer in the store (nothing is written)."""
    link = hit.link
    lead_id = session.execute(
        select(LEADS.c.id).where(LEADS.c.external_id == link.lead)
    ).scalar_one_or_none()
    if lead_id is None:
        return None
    activity_type = ACTIVITY_TYPES[link.kind]
    reason = machine_reason(
        hit,
        _sent(session, link.message_id),
        _earlier(session, lead_id, activity_type, hit, settings),
        settings,
    )
    agent = hit.user_agent[:_MAX_AGENT] if hit.user_agent else None
    properties: dict[str, Any] = {
        "message_id": link.message_id,
        "template": link.template,
        **({"url": link.url} if link.url is not None else {}),
        "user_agent": agent,
        "ip": hit.ip,
        **({"machine_reason": reason} if reason is not None else {}),
    }
    # A client's retry of the very same request (same second, agent and address) is the same
    # activity; any other hit is a row of its own.
    stamp = hit.at.isoformat(timespec="seconds")
    digest = _digest(link.kind, link.message_id, link.url, agent, hit.ip, stamp, hit.method)
    dialect = session.get_bind().dialect.name
    result = session.execute(
        insert_ignoring_duplicates(dialect, ACTIVITIES, "external_id").values(
            external_id=f"email-{link.kind}-{digest}",
            lead_id=lead_id,
            type=activity_type,
            occurred_at=hit.at,
            properties=properties,
            machine=reason is not None,
            created_at=hit.at,
        )
    )
    inserted = bool(result.rowcount)  # type: ignore[attr-defined]
    return RecordedHit(int(lead_id), activity_type, reason, inserted)


def _sent(session: Session, message_id: str) -> tuple[bool, datetime | None]:
    row = session.execute(select(OUTBOX.c.sent_at).where(OUTBOX.c.message_id == message_id)).first()
    return (False, None) if row is None else (True, row.sent_at)


def _earlier(
    session: Session, lead_id: int, activity_type: str, hit: Hit, settings: TrackingSettings
) -> list[dict[str, Any]]:
    """The properties of the lead's counted hits of this type inside the repeat window; few
    rows, found by the (lead, time) index and filtered here rather than in JSON SQL."""
    rows = session.execute(
        select(ACTIVITIES.c.properties).where(
            ACTIVITIES.c.lead_id == lead_id,
            ACTIVITIES.c.type == activity_type,
            ACTIVITIES.c.machine.is_(False),
            ACTIVITIES.c.occurred_at >= hit.at - settings.repeat_window,
            ACTIVITIES.c.occurred_at <= hit.at,
        )
    )
    return [dict(properties or {}) for (properties,) in rows]


def _digest(*parts: str | None) -> str:
    joined = "\x1f".join(part or "" for part in parts).encode()
    return hashlib.blake2b(joined, digest_size=12).hexdigest()


def _from_apple(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        return ipaddress.ip_address(ip) in _APPLE
    except ValueError:
        return False
