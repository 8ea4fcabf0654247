"""rule_runs.first_seen_at: when the daemon first scheduled a rule that had not run yet

A new cron rule waits for its first cron time after this moment; kept in the store so that a
restart, a leader change or an interrupted first run does not push it to the next time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadflow.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rule_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("first_seen_at", leadflow.store.types.UTCDateTime(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("rule_runs", schema=None) as batch_op:
        batch_op.drop_column("first_seen_at")
