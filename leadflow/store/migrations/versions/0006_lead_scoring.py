"""Lead scoring: the score's parts on the lead, its history, machine activities, scoring runs

A scoring model in the rules folder makes leadflow own ``score``: ``score = fit + engagement +
adjustment`` (the adjustment is what ``adjust_score``/``set_score`` actions added). The parts
are stored beside the total; every change of a lead's score is a ``score_changes`` row (old,
new, why); ``activities.machine`` marks engagement that is not a person (a mail privacy proxy's
open, a link scanner's click), kept but worth no points; ``scoring_runs`` remembers the model
version of the last pass, so a changed model is named as the cause of the changes it makes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from leadflow.store.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch_op:
        batch_op.add_column(sa.Column("score_fit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("score_engagement", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("score_adjustment", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("score_grade", sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column("scored_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("activities") as batch_op:
        batch_op.add_column(
            sa.Column("machine", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "score_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("old_score", sa.Integer(), nullable=False),
        sa.Column("new_score", sa.Integer(), nullable=False),
        sa.Column("old_fit", sa.Integer(), nullable=True),
        sa.Column("new_fit", sa.Integer(), nullable=True),
        sa.Column("old_engagement", sa.Integer(), nullable=True),
        sa.Column("new_engagement", sa.Integer(), nullable=True),
        sa.Column("cause", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.String(length=400), nullable=True),
        sa.Column("model_version", sa.String(length=80), nullable=True),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_score_changes_lead_at", "score_changes", ["lead_id", "at"])
    op.create_index("ix_score_changes_at", "score_changes", ["at"])
    op.create_table(
        "scoring_runs",
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.String(length=80), nullable=False),
        sa.Column("last_run_at", UTCDateTime(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model"),
    )


def downgrade() -> None:
    op.drop_table("scoring_runs")
    op.drop_index("ix_score_changes_at", table_name="score_changes")
    op.drop_index("ix_score_changes_lead_at", table_name="score_changes")
    op.drop_table("score_changes")
    with op.batch_alter_table("activities") as batch_op:
        batch_op.drop_column("machine")
    with op.batch_alter_table("leads") as batch_op:
        batch_op.drop_column("scored_at")
        batch_op.drop_column("score_grade")
        batch_op.drop_column("score_adjustment")
        batch_op.drop_column("score_engagement")
        batch_op.drop_column("score_fit")
