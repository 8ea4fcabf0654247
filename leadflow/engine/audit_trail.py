"""Writing the audit: one append-only row per action, in the action's own transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from leadflow.store.json_values import jsonable
from leadflow.store.tables import AUDIT

# jsonable lives in leadflow.store.json_values; evaluation still imports it from here.
__all__ = ["audit_row", "jsonable", "record"]


def record(
    session: Session,
    *,
    at: datetime,
    source: str,
    action: str,
    lead_id: int | None = None,
    deal_id: int | None = None,
    rule_id: str | None = None,
    rule_version: str | None = None,
    params: Mapping[str, Any] | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> None:
    session.execute(
        insert(AUDIT),
        [
            audit_row(
                at=at,
                source=source,
                action=action,
                lead_id=lead_id,
                deal_id=deal_id,
                rule_id=rule_id,
                rule_version=rule_version,
                params=params,
                evidence=evidence,
            )
        ],
    )


def audit_row(
    *,
    at: datetime,
    source: str,
    action: str,
    lead_id: int | None = None,
    deal_id: int | None = None,
    rule_id: str | None = None,
    rule_version: str | None = None,
    params: Mapping[str, Any] | None = None,
    evidence: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One audit row as values for the Core table (written in bulk by a firing)."""
    return {
        "at": at,
        "source": source,
        "action": action,
        "lead_id": lead_id,
        "deal_id": deal_id,
        "rule_id": rule_id,
        "rule_version": rule_version,
        "params": jsonable(params or {}),
        "evidence": jsonable(evidence or {}),
    }
