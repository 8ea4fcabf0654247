"""Indexes by lead on sla_timers and nurture_enrollments

A firing that restarts an SLA cancels the lead's running timer, and a lead leaving nurture
ends its active enrollments. Without an index by lead each of those scanned the whole table,
once per firing: outside measurement found them a quarter of the MQL rule's time on SQLite.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sla_lead_status", "sla_timers", ["lead_id", "status"])
    op.create_index("ix_nurture_lead_status", "nurture_enrollments", ["lead_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_nurture_lead_status", table_name="nurture_enrollments")
    op.drop_index("ix_sla_lead_status", table_name="sla_timers")
