"""outbox (status, created_at): the retention job finds settled rows past mail.keep_sent

Deleting old sent, failed and suppressed rows reads this index in order, a batch at a time,
instead of scanning the whole outbox. The audit's ``at`` index (0001) serves audit retention.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_status_created", "outbox", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_status_created", table_name="outbox")
