"""Failing nurture steps are kept, not only logged

``nurture_enrollments.failures``, ``last_error`` and ``last_failed_at``: a step whose email
cannot be rendered (a template that fails for this lead) was logged every minute and nothing
else; the enrollment now counts its failed attempts, keeps the last error for ``leadflow
status``, and waits longer before each new attempt.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.store.types import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nurture_enrollments") as batch_op:
        batch_op.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("last_failed_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nurture_enrollments") as batch_op:
        batch_op.drop_column("last_failed_at")
        batch_op.drop_column("last_error")
        batch_op.drop_column("failures")
