"""The engagement part of the scoring model a pass ran, beside the whole model's version

``scoring_runs.engagement_version``: a digest of the model's engagement criteria alone. When a
new model changes only its fit criteria or grades, the engagement every lead stores is still
the new model's, so the pass recomputes every lead's fit but the engagement of the leads due
only (``leadflow/scoring/rescoring.py``). NULL (every pass before this revision) matches no
model: the next pass recomputes every lead's engagement, as before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.add_column(sa.Column("engagement_version", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.drop_column("engagement_version")
