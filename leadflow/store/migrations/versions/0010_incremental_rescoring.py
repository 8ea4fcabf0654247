"""A steady rescoring pass reads only the leads whose score can have changed

``leads.score_next_change_day``: the earliest instant (days since 1970-01-01 UTC) the lead's
engagement can change with no new input, as the last pass found it; NULL (every existing lead
here, and every new one) means the next pass rescores the lead, and so do negative values.
Triggers mark the leads of every inserted, updated or deleted activity, and every lead updated
by anything but the pass, in the writer's transaction (``leadflow/store/score_marks.py``);
an index finds the leads due.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.store.score_marks import create_score_marks, drop_score_marks

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch_op:
        batch_op.add_column(sa.Column("score_next_change_day", sa.Float(), nullable=True))
    op.create_index("ix_leads_score_next_change", "leads", ["score_next_change_day"])
    create_score_marks(op.get_bind())


def downgrade() -> None:
    drop_score_marks(op.get_bind())
    op.drop_index("ix_leads_score_next_change", table_name="leads")
    with op.batch_alter_table("leads") as batch_op:
        batch_op.drop_column("score_next_change_day")
