"""rule_runs.unfinished_at / unfinished_through: how far a failed or interrupted run got

A run that fails (or is stopped) part-way has committed its first batches, in subject id order;
the rule stays due, and its retry goes on after the last subject those batches went through
instead of acting on them a second time (an ``every_time`` rule keeps no firing rows to tell).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadflow.store.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rule_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unfinished_at", leadflow.store.types.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("unfinished_through", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rule_runs", schema=None) as batch_op:
        batch_op.drop_column("unfinished_through")
        batch_op.drop_column("unfinished_at")
