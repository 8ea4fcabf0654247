"""Reading the audit back: ``leadflow audit``'s rows and a lead with its own history.

The audit is written by :mod:`leadflow.store.audit_trail`; the CLI and the HTTP API only
render what these queries return, so both show the same rows for the same question. An email's
audit row says it was queued; whether it was delivered is the outbox's to say, so the lead's
history shows its emails from the outbox (status, sent_at, attempts, last error) beside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, or_, select

from leadflow.store.id_ranges import chunks
from leadflow.store.json_values import jsonable
from leadflow.store.tables import AUDIT, DEALS, LEADS, OUTBOX, REPS


@dataclass(frozen=True)
class AuditFilter:
    """Which audit rows ``leadflow audit`` asks for: the newest ``limit`` that match (every
    one with None)."""

    lead: str | None = None
    rule: str | None = None
    since: datetime | None = None
    limit: int | None = 200


def audit_rows(engine: Engine, wanted: AuditFilter) -> list[Row[Any]]:
    """The matching audit rows oldest first, each with its lead's and deal's external id."""
    query = (
        select(AUDIT, LEADS.c.external_id.label("lead"), DEALS.c.external_id.label("deal"))
        .outerjoin(LEADS, LEADS.c.id == AUDIT.c.lead_id)
        .outerjoin(DEALS, DEALS.c.id == AUDIT.c.deal_id)
        .order_by(AUDIT.c.id.desc())
        .limit(wanted.limit)
    )
    if wanted.lead is not None:
        query = query.where(LEADS.c.external_id == wanted.lead)
    if wanted.rule is not None:
        query = query.where(AUDIT.c.rule_id == wanted.rule)
    if wanted.since is not None:
        query = query.where(AUDIT.c.at >= wanted.since)
    with engine.connect() as connection:
        return list(reversed(connection.execute(query).all()))


_LEAD_FIELDS = (
    "external_id",
    "email",
    "name",
    "company",
    "score",
    "stage",
    "stage_entered_at",
    "last_activity_at",
    "timezone",
    "unsubscribed",
    "do_not_email",
    "hard_bounced",
    "attributes",
    "created_at",
    "updated_at",
)


def lead_with_audit(engine: Engine, external_id: str, limit: int) -> dict[str, Any] | None:
    """The lead, its owner and its newest ``limit`` audit entries oldest first; None if unknown."""
    with engine.connect() as connection:
        lead = (
            connection.execute(select(LEADS).where(LEADS.c.external_id == external_id))
            .mappings()
            .first()
        )
        if lead is None:
            return None
        owner = None
        if lead["owner_id"] is not None:
            rep = connection.execute(
                select(REPS.c.external_id, REPS.c.name, REPS.c.email).where(
                    REPS.c.id == lead["owner_id"]
                )
            ).first()
            owner = (
                None if rep is None else {"external_id": rep[0], "name": rep[1], "email": rep[2]}
            )
        deal_ids = select(DEALS.c.id).where(DEALS.c.lead_id == lead["id"])
        entries = (
            connection.execute(
                select(AUDIT, DEALS.c.external_id.label("deal"))
                .select_from(AUDIT.outerjoin(DEALS, AUDIT.c.deal_id == DEALS.c.id))
                .where(or_(AUDIT.c.lead_id == lead["id"], AUDIT.c.deal_id.in_(deal_ids)))
                .order_by(AUDIT.c.at.desc(), AUDIT.c.id.desc())
                .limit(limit)
            )
            .mappings()
            .all()
        )
        emails = _lead_emails(connection, lead["id"])
    view = {name: jsonable(lead[name]) for name in _LEAD_FIELDS}
    view["owner"] = owner
    view["audit"] = [_entry(entry) for entry in reversed(entries)]
    view["emails"] = emails
    return view


_EMAIL_COLUMNS = (
    OUTBOX.c.id,
    OUTBOX.c.rule_id,
    OUTBOX.c.recipient,
    OUTBOX.c.subject,
    OUTBOX.c.category,
    OUTBOX.c.status,
    OUTBOX.c.status_reason,
    OUTBOX.c.created_at,
    OUTBOX.c.sent_at,
    OUTBOX.c.attempts,
    OUTBOX.c.last_error,
)


def _email(row: Any) -> dict[str, Any]:
    return {
        "outbox_id": row["id"],
        "rule_id": row["rule_id"],
        "to": row["recipient"],
        "subject": row["subject"],
        "category": row["category"],
        "status": row["status"],
        "status_reason": row["status_reason"],
        "queued_at": jsonable(row["created_at"]),
        "sent_at": jsonable(row["sent_at"]),
        "attempts": row["attempts"],
        "last_error": row["last_error"],
    }


def _lead_emails(connection: Connection, lead_id: int) -> list[dict[str, Any]]:
    """The lead's email messages in the outbox, oldest first, as they stand now."""
    query = (
        select(*_EMAIL_COLUMNS)
        .where(OUTBOX.c.lead_id == lead_id, OUTBOX.c.channel == "email")
        .order_by(OUTBOX.c.id)
    )
    return [_email(row) for row in connection.execute(query).mappings()]


def email_statuses(engine: Engine, outbox_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """The outbox's word on each message an ``email_queued`` or ``nurture_step`` audit row
    names, by outbox id."""
    wanted = sorted(set(outbox_ids))
    if not wanted:
        return {}
    found: dict[int, dict[str, Any]] = {}
    with engine.connect() as connection:
        for chunk in chunks(wanted, 500):
            query = select(*_EMAIL_COLUMNS).where(OUTBOX.c.id.in_(chunk))
            for row in connection.execute(query).mappings():
                email = _email(row)
                found[email["outbox_id"]] = {
                    key: email[key] for key in ("status", "sent_at", "attempts", "last_error")
                }
    return found


def _entry(entry: Any) -> dict[str, Any]:
    return {
        "at": jsonable(entry["at"]),
        "source": entry["source"],
        "action": entry["action"],
        "rule_id": entry["rule_id"],
        "rule_version": entry["rule_version"],
        "deal": entry["deal"],
        "params": entry["params"],
        "evidence": entry["evidence"],
    }
