"""What a template sees: plain values built from the store's rows, the same keys every time.

Every key of :data:`CONTEXT_KEYS` is always present (``None`` when it does not apply), so a
template can write ``{% if deal %}`` without tripping ``StrictUndefined``; reading a field of an
absent object is still an error, caught when rules load. Values are plain dicts, never ORM
objects: the sandbox then has nothing to reach through.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

from leadflow.errors import ConfigError
from leadflow.settings import Settings

if TYPE_CHECKING:
    from leadflow.store.models import Deal, Lead, Rep, SlaTimer

CONTEXT_KEYS = (
    "lead",
    "rep",
    "owner",
    "manager",
    "deal",
    "rule",
    "sla",
    "crm_url",
    "unsubscribe_url",
)

_PROCESS_UNSUBSCRIBE_KEY = secrets.token_bytes(32)
"""Only for settings that reached no :class:`~leadflow.engine.runtime.Runtime` (template checks
on sample data, rule tests in a scratch store): random per process, so a link signed with it
verifies nowhere. A runtime fills ``mail.unsubscribe_secret`` from the store when it is unset;
there is no public default key."""


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
"""What ``quote(value, safe="")`` leaves as it is (RFC 3986's unreserved characters): most
external ids and every token, checked without quote's encoding and decoding per email."""


def fill_url(pattern: str, setting: str, **values: str) -> str:
    """``pattern`` with ``{name}`` fields replaced by URL-quoted ``values``."""
    quoted = {
        key: value if _UNRESERVED.fullmatch(value) else quote(value, safe="")
        for key, value in values.items()
    }
    try:
        return pattern.format_map(quoted)
    except (KeyError, IndexError, ValueError) as exc:
        names = ", ".join("{" + key + "}" for key in values)
        msg = f"{setting}: {pattern!r} is not a URL template; it may use {names}"
        raise ConfigError(msg) from exc


def unsubscribe_token(settings: Settings, lead_external_id: str) -> str:
    """The token in a lead's unsubscribe link: an HMAC of the lead's external id."""
    secret = settings.mail.unsubscribe_secret
    key = secret.get_secret_value().encode() if secret else _PROCESS_UNSUBSCRIBE_KEY
    mac = _keyed(key).copy()
    mac.update(lead_external_id.encode())
    return mac.hexdigest()[:32]


@lru_cache(maxsize=16)
def _keyed(key: bytes) -> hmac.HMAC:
    """An HMAC keyed with ``key`` and fed nothing yet, to copy: every email of a batch signs
    its lead's link, and keying one costs more than copying it."""
    return hmac.new(key, digestmod=hashlib.sha256)


OWN_UNSUBSCRIBE_PATH = "/t/unsubscribe"
"""leadflow's own unsubscribe page (``GET``) and one-click endpoint (``POST``, RFC 8058)."""
PLACEHOLDER_UNSUBSCRIBE_URL = "https://example.com/unsubscribe?lead={external_id}&token={token}"
"""Only when there is neither an unsubscribe page of the operator's nor a public URL of
leadflow's own (``mail.tracking.base_url``): ``leadflow check`` and the daemon warn of it when
the rules send marketing email (see :func:`placeholder_unsubscribe_warning`), and such email
carries no ``List-Unsubscribe`` header (a mail client's one-click would go to example.com)."""


def placeholder_unsubscribe_warning(settings: Settings, sends_marketing: bool) -> str | None:
    """What ``leadflow check`` and the daemon say when marketing email (a nurture stream, or a
    rule's ``notify: {to: lead}``) would carry the placeholder link; None when it would not."""
    if not sends_marketing or unsubscribe_pattern(settings) != PLACEHOLDER_UNSUBSCRIBE_URL:
        return None
    return (
        "marketing email (nurture streams, notify to the lead) would carry the placeholder "
        f"unsubscribe link {PLACEHOLDER_UNSUBSCRIBE_URL} and no List-Unsubscribe header: set "
        "mail.tracking.base_url (the daemon's public URL, for leadflow's own unsubscribe page) "
        "or mail.unsubscribe_url (your own page)"
    )


def unsubscribe_pattern(settings: Settings) -> str:
    """The unsubscribe link's URL template: the operator's page, else leadflow's own."""
    mail = settings.mail
    if mail.unsubscribe_url is not None:
        return mail.unsubscribe_url
    base = mail.tracking.base_url
    if base is None:
        return PLACEHOLDER_UNSUBSCRIBE_URL
    return f"{base}{OWN_UNSUBSCRIBE_PATH}?lead={{external_id}}&token={{token}}"


def unsubscribe_url(settings: Settings, lead_external_id: str) -> str:
    """The link a lead follows (or a mail client posts to) to stop marketing email."""
    return fill_url(
        unsubscribe_pattern(settings),
        "mail.unsubscribe_url",
        external_id=lead_external_id,
        token=unsubscribe_token(settings, lead_external_id),
    )


def without_unsubscribe_token(settings: Settings, lead_external_id: str, url: str) -> str:
    """``url`` (a followed unsubscribe link) as an activity keeps it: without the lead's token.

    The token unsubscribes the lead, and activities are read (and exported) by far more people
    than the email. Every query parameter carrying it goes, whatever its name (``token`` on
    leadflow's own page, any name on an operator's page); anywhere else it is blanked.
    """
    token = unsubscribe_token(settings, lead_external_id)
    parts = urlsplit(url)
    kept = [
        pair
        for pair in parts.query.split("&")
        if pair and unquote_plus(pair.partition("=")[2]) != token
    ]
    return urlunsplit(parts._replace(query="&".join(kept))).replace(token, "")


def lead_view(lead: Lead, settings: Settings) -> dict[str, Any]:
    return {
        "id": lead.id,
        "external_id": lead.external_id,
        "name": lead.name,
        "first_name": _first_name(lead.name),
        "email": lead.email,
        "company": lead.company,
        "score": lead.score,
        "stage": lead.stage,
        "stage_entered_at": lead.stage_entered_at,
        "last_activity_at": lead.last_activity_at,
        "timezone": lead.timezone,
        "attributes": _declared(settings.attributes.leads, lead.attributes),
        "crm_url": fill_url(
            settings.crm.record_url, "crm.record_url", external_id=lead.external_id
        ),
    }


def _declared(declared: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared attribute (None when the row has no value), then the row's own values.

    ``leadflow check`` passes ``{{ lead.attributes.sector }}`` for a declared ``sector``; a lead
    without one must render it as the documented None, not fail to send at every attempt."""
    return {**dict.fromkeys(declared), **values}


def rep_view(rep: Rep) -> dict[str, Any]:
    return {
        "id": rep.id,
        "external_id": rep.external_id,
        "name": rep.name,
        "first_name": _first_name(rep.name),
        "email": rep.email,
        "timezone": rep.timezone,
    }


def deal_view(deal: Deal, settings: Settings) -> dict[str, Any]:
    return {
        "id": deal.id,
        "external_id": deal.external_id,
        "account": deal.account,
        "product": deal.product,
        "stage": deal.stage,
        "outcome": deal.outcome,
        "amount": deal.amount,
        "engaged_at": deal.engaged_at,
        "last_activity_at": deal.last_activity_at,
        "closed_at": deal.closed_at,
        "recycle_reason": deal.recycle_reason,
        "attributes": _declared(settings.attributes.deals, deal.attributes),
        "crm_url": fill_url(settings.crm.deal_url, "crm.deal_url", external_id=deal.external_id),
    }


class TimerLike(Protocol):
    """A running SLA timer, stored or about to start."""

    @property
    def name(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def level(self) -> int: ...
    @property
    def calendar(self) -> str: ...


def sla_view(sla: TimerLike, settings: Settings) -> dict[str, Any]:
    section = settings.calendars.get(sla.calendar, settings.calendar)
    return {
        "name": sla.name,
        "started_at": sla.started_at,
        "due_at": sla.due_at,
        "level": sla.level,
        # The zone the SLA's business hours are counted in: what a rep without a timezone of
        # their own reads the due time in (``localtime(rep.timezone or sla.timezone)``).
        "timezone": section.timezone,
    }


def email_context(
    settings: Settings,
    *,
    lead: Lead | None = None,
    rep: Rep | None = None,
    owner: Rep | None = None,
    manager: Rep | None = None,
    deal: Deal | None = None,
    rule_id: str | None = None,
    rule_description: str | None = None,
    sla: TimerLike | None = None,
) -> dict[str, Any]:
    """The documented context for one email; ``rep`` is the rep receiving it, if one is."""
    lead_values = lead_view(lead, settings) if lead is not None else None
    deal_values = deal_view(deal, settings) if deal is not None else None
    main = deal_values or lead_values
    return {
        "lead": lead_values,
        "rep": rep_view(rep) if rep is not None else None,
        "owner": rep_view(owner) if owner is not None else None,
        "manager": rep_view(manager) if manager is not None else None,
        "deal": deal_values,
        "rule": {"id": rule_id, "description": rule_description} if rule_id else None,
        "sla": sla_view(sla, settings) if sla is not None else None,
        "crm_url": main["crm_url"] if main else None,
        "unsubscribe_url": unsubscribe_url(settings, lead.external_id) if lead else None,
    }


def _first_name(name: str | None) -> str | None:
    if not name or not name.strip():
        return None
    return name.split()[0]


_SAMPLE_TIME = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
_SAMPLE_VALUES: dict[str, Any] = {
    "string": "sample text",
    "integer": 42,
    "number": 4.2,
    "boolean": True,
    "datetime": _SAMPLE_TIME,
    "date": _SAMPLE_TIME.date(),
}


def sample_context(settings: Settings) -> dict[str, Any]:
    """A realistic context with every key filled: what ``check`` renders each template with.

    Lead and deal attributes are the ones declared under ``attributes:`` in config.yaml, each
    with a value of its declared type, so ``{{ lead.attributes.industry }}`` checks cleanly
    exactly when ``industry`` is a declared attribute.

    The sample rows are plain namespaces holding every column the views read, not the store's
    models: ``leadflow check`` renders templates without loading SQLAlchemy.
    """
    owner: Rep = _sample(
        id=1,
        external_id="rep-anna",
        name="Anna Berg",
        email="anna@example.com",
        timezone="Europe/Berlin",
    )
    manager: Rep = _sample(
        id=2, external_id="rep-max", name="Max Ortiz", email="max@example.com", timezone="UTC"
    )
    lead: Lead = _sample(
        id=7,
        external_id="L-1007",
        email="jo.doe@acme.example",
        name="Jo Doe",
        company="Acme GmbH",
        attributes={k: _SAMPLE_VALUES[t] for k, t in settings.attributes.leads.items()},
        score=87,
        stage="mql",
        stage_entered_at=_SAMPLE_TIME,
        last_activity_at=_SAMPLE_TIME,
        owner_id=1,
        timezone="Europe/Berlin",
    )
    deal: Deal = _sample(
        id=3,
        external_id="D-503",
        lead_id=7,
        account="Acme GmbH",
        product="Platform",
        owner_id=1,
        stage="proposal",
        outcome=None,
        amount=24000.0,
        engaged_at=_SAMPLE_TIME - timedelta(days=200),
        last_activity_at=_SAMPLE_TIME - timedelta(days=90),
        closed_at=None,
        attributes={k: _SAMPLE_VALUES[t] for k, t in settings.attributes.deals.items()},
        recycle_reason="idle 180 days > 2 x average cycle 62 days",
    )
    sla: SlaTimer = _sample(
        lead_id=7,
        name="first_touch",
        rule_id="mql-sla",
        rule_version="sample",
        owner_id=1,
        started_at=_SAMPLE_TIME,
        due_at=_SAMPLE_TIME + timedelta(hours=4),
        calendar="default",
        level=1,
    )
    return email_context(
        settings,
        lead=lead,
        rep=owner,
        owner=owner,
        manager=manager,
        deal=deal,
        rule_id="sample-rule",
        rule_description="A sample rule, to check templates",
        sla=sla,
    )


def _sample(**columns: Any) -> Any:
    """A stand-in for a stored row, holding ``columns``."""
    return SimpleNamespace(**columns)
