"""Indexes that hold each lead's and deal's stage history in order, for the funnel report

The report reads the history as stays (each entry with the next one's time) and cohorts (each
lead's first entry into a stage, and whether a later one follows): window functions over each
subject's entries in the order of time then id. An index on ``(lead_id, at, id)`` with the
columns those windows read gives them that order without a sort and without reading the table;
the same for deals. The existing ``(lead_id, id)`` index stays: recording an entry reads a
subject's last row by id.

The entries of a period (by ``at``) and of a stage in a period (by ``(to_stage, at)``) are
counted from their indexes, which now hold the columns those counts read too, so counting a
period's entries reads no table row.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COVERED = ["at", "id", "to_stage", "from_stage", "to_owner_id"]
ENTRY = ["from_stage", "lead_id", "to_owner_id"]


def upgrade() -> None:
    op.create_index("ix_stage_changes_lead_order", "stage_changes", ["lead_id", *COVERED])
    op.create_index("ix_stage_changes_deal_order", "stage_changes", ["deal_id", *COVERED])
    op.drop_index("ix_stage_changes_to_at", table_name="stage_changes")
    op.create_index("ix_stage_changes_to_at", "stage_changes", ["to_stage", "at", *ENTRY])
    op.drop_index("ix_stage_changes_at", table_name="stage_changes")
    op.create_index("ix_stage_changes_at", "stage_changes", ["at", "to_stage", *ENTRY])


def downgrade() -> None:
    op.drop_index("ix_stage_changes_at", table_name="stage_changes")
    op.create_index("ix_stage_changes_at", "stage_changes", ["at"])
    op.drop_index("ix_stage_changes_to_at", table_name="stage_changes")
    op.create_index("ix_stage_changes_to_at", "stage_changes", ["to_stage", "at"])
    op.drop_index("ix_stage_changes_deal_order", table_name="stage_changes")
    op.drop_index("ix_stage_changes_lead_order", table_name="stage_changes")
