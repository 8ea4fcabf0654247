"""Writing the audit: one append-only row per action, in the action's own transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from leadflow.store.tables import AUDIT


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it: times as ISO 8601, durations in seconds."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(key): jsonable(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(inner) for inner in value]
    return value


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
