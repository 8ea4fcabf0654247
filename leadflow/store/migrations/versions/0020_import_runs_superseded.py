"""The rows of an import that a later row of their id superseded, kept with the run

``import_runs.superseded``: an import's summary said ``superseded N`` (rows not written because
a later row of the file has their id), but the run's row kept only inserted, updated, unchanged
and rejected, so ``leadflow status`` could not say where the file's other rows went. Runs
before this revision read 0.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("import_runs") as batch_op:
        batch_op.add_column(
            sa.Column("superseded", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("import_runs") as batch_op:
        batch_op.drop_column("superseded")
