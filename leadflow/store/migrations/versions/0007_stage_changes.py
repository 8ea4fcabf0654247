"""The stage history: ``stage_changes``, back-filled from the audit

Every entry of a lead or a deal into a stage (and every change of a lead's owner) becomes a
row, written with the change by every path (rules, imports, the HTTP API, SLA reassignment).
For the data already stored, the history is rebuilt from what the audit says:

- each lead with ``stage_changed`` audit rows first entered the first row's ``from`` stage when
  it was created (or at that row, if earlier), then each audited change in order;
- each ``deal_recycled``/``deal_lost`` audit row closed its deal from the ``stage`` it names;
- a lead or deal whose rebuilt history does not end at its current stage (a lead no rule ever
  moved, a stage an import changed) gets one more row: its entry into its current stage at its
  ``stage_entered_at`` (a deal's ``closed_at``, else ``engaged_at``, else ``created_at``).

Owner changes before this migration are not rebuilt (the audit names reps by external id).
Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from leadflow.store.stage_history import change_row, record_entries
from leadflow.store.tables import AUDIT, LEADS, STAGE_CHANGES
from leadflow.store.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CHUNK = 5000


def upgrade() -> None:
    op.create_table(
        "stage_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("deal_id", sa.Integer(), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("from_stage", sa.String(length=60), nullable=True),
        sa.Column("to_stage", sa.String(length=60), nullable=False),
        sa.Column("from_owner_id", sa.Integer(), nullable=True),
        sa.Column("to_owner_id", sa.Integer(), nullable=True),
        sa.Column("cause", sa.String(length=20), nullable=False),
        sa.Column("rule_id", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=400), nullable=True),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.ForeignKeyConstraint(["deal_id"], ["deals.id"]),
        sa.ForeignKeyConstraint(["from_owner_id"], ["reps.id"]),
        sa.ForeignKeyConstraint(["to_owner_id"], ["reps.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_stage_changes_lead", "stage_changes", ["lead_id", "id"])
    op.create_index("ix_stage_changes_deal", "stage_changes", ["deal_id", "id"])
    op.create_index("ix_stage_changes_to_at", "stage_changes", ["to_stage", "at"])
    op.create_index("ix_stage_changes_at", "stage_changes", ["at"])
    _back_fill(op.get_bind())


def _back_fill(connection: sa.Connection) -> None:
    """The history the audit tells, then each lead's and deal's entry into its current stage."""
    audited = (
        sa.select(
            AUDIT.c.lead_id,
            AUDIT.c.deal_id,
            AUDIT.c.at,
            AUDIT.c.action,
            AUDIT.c.rule_id,
            AUDIT.c.rule_version,
            AUDIT.c.params,
            LEADS.c.created_at,
        )
        .select_from(AUDIT.outerjoin(LEADS, LEADS.c.id == AUDIT.c.lead_id))
        .where(AUDIT.c.action.in_(["stage_changed", "deal_recycled", "deal_lost"]))
        .order_by(AUDIT.c.id)
    )
    started: set[int] = set()
    rows: list[dict[str, Any]] = []
    for entry in connection.execute(audited):
        rows += _rows_of(entry, started)
        if len(rows) >= CHUNK:
            connection.execute(sa.insert(STAGE_CHANGES), rows)
            rows = []
    if rows:
        connection.execute(sa.insert(STAGE_CHANGES), rows)
    now = datetime.now(UTC)
    record_entries(connection, "leads", cause="migration", source=None, now=now)
    record_entries(connection, "deals", cause="migration", source=None, now=now)


def _rows_of(entry: Any, started: set[int]) -> list[dict[str, Any]]:
    params = entry.params or {}
    common = {"at": entry.at, "cause": "migration", "rule_id": entry.rule_id}
    if entry.action != "stage_changed":
        if entry.deal_id is None or not params.get("stage"):
            return []
        outcome = entry.action.removeprefix("deal_")
        return [
            change_row(
                deal_id=entry.deal_id,
                from_stage=params["stage"],
                to_stage=outcome,
                source=entry.rule_version,
                **common,
            )
        ]
    if entry.lead_id is None or not params.get("to"):
        return []
    rows = []
    if entry.lead_id not in started and params.get("from"):
        started.add(entry.lead_id)
        first = min(entry.created_at, entry.at) if entry.created_at is not None else entry.at
        rows.append(
            change_row(
                lead_id=entry.lead_id,
                at=first,
                from_stage=None,
                to_stage=params["from"],
                cause="migration",
            )
        )
    started.add(entry.lead_id)
    rows.append(
        change_row(
            lead_id=entry.lead_id,
            from_stage=params.get("from"),
            to_stage=params["to"],
            source=entry.rule_version,
            **common,
        )
    )
    return rows


def downgrade() -> None:
    op.drop_index("ix_stage_changes_at", table_name="stage_changes")
    op.drop_index("ix_stage_changes_to_at", table_name="stage_changes")
    op.drop_index("ix_stage_changes_deal", table_name="stage_changes")
    op.drop_index("ix_stage_changes_lead", table_name="stage_changes")
    op.drop_table("stage_changes")
