"""The last activity a scoring pass could see, for the cause of the next pass's changes

``scoring_runs.last_activity_id``: the highest activity id when the pass started. The next
pass names ``activity`` as the cause of a change when one of the lead's activities has a higher
id: it reached leadflow after that pass. Comparing ``activities.created_at`` (written by the
wall clock) with the pass's instant named ``activity`` for every change of a pass run with a
past ``--now``. NULL (every pass before this revision, or a store without activities then):
the next pass compares ``created_at`` with the last pass's instant, as before.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.add_column(sa.Column("last_activity_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.drop_column("last_activity_id")
