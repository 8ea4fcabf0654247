"""The schedule each rule ran on, kept with its run

``rule_runs.schedule``: ``leadflow status`` computes a rule's next run from the rules folder;
while the folder is refused (a broken file, the daemon keeping its last good rules running) it
knew no schedule and showed the next run as "-". The schedule a rule last ran or was first seen
on is kept with its row (JSON: ``{"every_seconds": N}`` or ``{"cron": ..., "timezone": ...}``);
rows before this revision have none until their rule next runs.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rule_runs") as batch_op:
        batch_op.add_column(sa.Column("schedule", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rule_runs") as batch_op:
        batch_op.drop_column("schedule")
