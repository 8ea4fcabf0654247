"""Writing the audit: one append-only row per action, in the action's own transaction.

The audit is read by people (``leadflow audit``, the lead's history), so its values are
written the way they would say them: a duration as ``4h`` rather than ``14400.0``. Other
stored JSON (SLA ladders, CRM updates) keeps seconds through :func:`jsonable`, which code
reads back; only the audit uses :func:`audit_value`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from leadflow.durations import format_duration
from leadflow.store.json_values import jsonable
from leadflow.store.tables import AUDIT

__all__ = ["audit_row", "audit_value", "record"]


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
        "params": audit_value(params or {}),
        "evidence": audit_value(evidence or {}),
    }


def audit_value(value: Any) -> Any:
    """``value`` as the audit stores it: durations as people write them (``4h``, ``1d12h``),
    times as ISO 8601, the rest as :func:`jsonable` has it."""
    kind = type(value)
    if value is None or kind in _PLAIN:  # most values: nothing to convert
        return value
    if kind is dict:  # the params of every audit row: plain values taken without a call
        return {
            str(key): inner if inner is None or type(inner) in _PLAIN else audit_value(inner)
            for key, inner in value.items()
        }
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Mapping):
        return {str(key): audit_value(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [audit_value(inner) for inner in value]
    return jsonable(value)


_PLAIN = frozenset({str, int, float, bool})
