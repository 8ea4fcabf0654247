"""The nurture steps skipped in an enrollment, by reason

``nurture_enrollments.steps_skipped``: a step whose email was not queued (the lead has no email
address, the frequency cap suppressed it) still moves the lead on; the enrollment counts such
steps by reason (JSON: ``{"no email address": 3}``), so its completion says ``all steps done
(3 skipped: no email address)`` instead of ``all steps sent``. Rows before this revision have
none (null: no step skipped that was counted).

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.store.types import JSONDocument

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nurture_enrollments") as batch_op:
        batch_op.add_column(sa.Column("steps_skipped", JSONDocument, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nurture_enrollments") as batch_op:
        batch_op.drop_column("steps_skipped")
