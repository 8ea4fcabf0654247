"""How many firings of a rule's last run failed

``rule_runs.failed_firings``: a run whose firings failed (a template that cannot render for some
leads; each failed firing is rolled back, the others go on) was recorded ``ok``, with no error,
so ``leadflow status`` called the rule ok while ``run --once`` exited 1 for it. The run is
recorded ``firings_failed`` with ``N failed; first: LEAD: REASON`` as its error, and the count
here. Rows before this revision count none (0).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rule_runs") as batch_op:
        batch_op.add_column(
            sa.Column("failed_firings", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("rule_runs") as batch_op:
        batch_op.drop_column("failed_firings")
