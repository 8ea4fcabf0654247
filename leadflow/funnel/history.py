"""The stage history read as stays: each entry of a lead or deal into a stage, with when it left.

An entry is a ``stage_changes`` row whose stage differs from the one before (owner changes are
not entries). A stay ends at the subject's next entry, in the order of time then id (an import
may record an older time after a newer one). :func:`stays` is the one subquery the stage
counts, the conversions and the times in stage all read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Subquery, func, or_, select

from leadflow.funnel.sql import instant
from leadflow.store.tables import STAGE_CHANGES

SUBJECT_KEYS = {"lead": "lead_id", "deal": "deal_id"}


def is_entry(history: FromClause = STAGE_CHANGES) -> ColumnElement[bool]:
    """A row of ``history`` (the table, or an alias of it) that enters a stage."""
    changes = history.c
    return or_(changes.from_stage.is_(None), changes.from_stage != changes.to_stage)


def stays(subject: str, before: datetime) -> Subquery:
    """Columns ``subject_id``, ``id``, ``stage``, ``owner_id`` (the owner on entry),
    ``entered``, ``left_at`` (null while still in the stage), for ``lead`` or ``deal`` entries
    made ``before`` (a period's end: a stay left after it is open at the end, as if not left)."""
    changes = STAGE_CHANGES.c
    key = changes[SUBJECT_KEYS[subject]]
    following: Any = func.lead(changes.at).over(partition_by=key, order_by=(changes.at, changes.id))
    return (
        select(
            key.label("subject_id"),
            changes.id,
            changes.to_stage.label("stage"),
            changes.to_owner_id.label("owner_id"),
            changes.at.label("entered"),
            following.label("left_at"),
        )
        .where(key.is_not(None), is_entry(), changes.at < instant(before))
        .subquery(f"{subject}_stays")
    )
