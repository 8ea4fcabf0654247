"""Queueing a change leadflow made (stage, owner, a closed deal) for the CRM, in the outbox.

The row is written in the transaction of the change itself, so the CRM hears of exactly the
changes that were committed. Its idempotency key names the rule, the subject, the firing's
occasion and the event: re-running a rule never queues a second update. Nothing is queued when
``crm.webhook_url`` is not set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from leadflow.outbox.store import key_digest, outbox_row
from leadflow.settings import Settings
from leadflow.store.json_values import jsonable
from leadflow.store.models import Deal, Lead

if TYPE_CHECKING:
    from leadflow.rule_language.model import Rule, RuleSet

WEBHOOK_CHANNEL = "webhook"
"""The ``channel`` value of CRM update rows (:mod:`leadflow.crm.channel` delivers them)."""


class Configured(Protocol):
    """What a change source runs with: the engine's runtime, as far as the CRM needs it."""

    @property
    def settings(self) -> Settings: ...


class ChangeSource(Protocol):
    """Where a change came from: a rule firing (:class:`leadflow.engine.firing.Firing`)."""

    @property
    def runtime(self) -> Configured: ...
    @property
    def now(self) -> datetime: ...
    @property
    def lead(self) -> Lead | None: ...
    @property
    def deal(self) -> Deal | None: ...
    @property
    def rule(self) -> Rule: ...
    @property
    def rule_set(self) -> RuleSet: ...
    @property
    def subject_key(self) -> str: ...
    @property
    def occasion(self) -> str: ...


def crm_update_row(
    source: ChangeSource,
    event: str,
    change: Mapping[str, Any],
    rep_external_id: Callable[[int | None], str | None],
) -> dict[str, Any] | None:
    """The outbox row telling the CRM of ``event`` (``lead.stage_changed``,
    ``lead.owner_changed``, ``deal.recycled``...), or None when no webhook is configured.

    The payload shows the lead and deal as they are now, in the middle of the firing; owners are
    named by ``rep_external_id``. The caller writes the row in the change's transaction.
    """
    settings = source.runtime.settings
    url = settings.crm.webhook_url
    if not url:
        return None
    key = f"crm:{event}/rule:{source.rule.id}/{source.subject_key}/{source.occasion}"
    event_id = key_digest(key)
    payload = {
        "id": event_id,
        "type": event,
        "occurred_at": jsonable(source.now),
        "lead": _lead(source.lead, rep_external_id),
        "deal": _deal(source.deal, rep_external_id),
        "change": jsonable(change),
        "rule": {"id": source.rule.id, "version": source.rule_set.version},
    }
    return outbox_row(
        key=key,
        channel=WEBHOOK_CHANNEL,
        category="operational",
        recipient=url,
        subject=event,
        body_text=json.dumps(payload, sort_keys=True, separators=(",", ":")),
        headers={"X-Leadflow-Event": event, "X-Leadflow-Delivery": event_id},
        now=source.now,
        message_id_domain=settings.mail.message_id_host,
        lead_id=source.lead.id if source.lead is not None else None,
        deal_id=source.deal.id if source.deal is not None else None,
        rule_id=source.rule.id,
        rule_version=source.rule_set.version,
    )


def _lead(
    lead: Lead | None, rep_external_id: Callable[[int | None], str | None]
) -> dict[str, Any] | None:
    if lead is None:
        return None
    return {
        "external_id": lead.external_id,
        "stage": lead.stage,
        "stage_entered_at": jsonable(lead.stage_entered_at),
        "owner": rep_external_id(lead.owner_id),
        "score": lead.score,
    }


def _deal(
    deal: Deal | None, rep_external_id: Callable[[int | None], str | None]
) -> dict[str, Any] | None:
    if deal is None:
        return None
    return {
        "external_id": deal.external_id,
        "stage": deal.stage,
        "outcome": deal.outcome,
        "closed_at": jsonable(deal.closed_at),
        "recycle_reason": deal.recycle_reason,
        "owner": rep_external_id(deal.owner_id),
    }
