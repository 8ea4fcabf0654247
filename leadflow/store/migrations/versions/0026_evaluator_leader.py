"""Who became the evaluator, and since when

``evaluator_leader``: only the log said which replica evaluates rules
(``leadership_acquired``); ``leadflow status`` now names it (host, pid, since). The daemon
writes the row as it becomes the leader; on PostgreSQL ``backend_pid`` (its lock session)
tells whether the process holding the advisory lock now is the one the row names.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.store.types import UTCDateTime

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluator_leader",
        sa.Column("role", sa.String(20), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("backend_pid", sa.Integer(), nullable=True),
        sa.Column("since", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("evaluator_leader")
