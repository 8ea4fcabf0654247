"""A failing scoring pass is kept, not only logged

``scoring_failures``: while the model's pass fails at every tick (the database refuses a value
it computed), the daemon logged it and nothing else: ``leadflow status`` showed the last pass
that succeeded, and the scores stayed as they were without a word. The failed pass's time,
model version, one-line error and the failures in a row are kept until a pass succeeds.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.store.types import UTCDateTime

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scoring_failures",
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.String(length=80), nullable=False),
        sa.Column("failed_at", UTCDateTime(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model"),
    )


def downgrade() -> None:
    op.drop_table("scoring_failures")
