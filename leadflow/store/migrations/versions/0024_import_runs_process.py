"""The process running an import, so a killed one is told from a running one

``import_runs.host`` and ``import_runs.pid``: an import killed (``kill -9``, a power cut) never
finished its row, and ``leadflow status`` said ``running`` for it forever. With the importing
process's host and id, status shows such a run ``interrupted`` once that process is gone on this
host. Runs before this revision have neither (null) and show as they did.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("import_runs") as batch_op:
        batch_op.add_column(sa.Column("host", sa.String(255), nullable=True))
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("import_runs") as batch_op:
        batch_op.drop_column("pid")
        batch_op.drop_column("host")
