"""Scores in 64 bits

A lead's score, fit, engagement and adjustment, and the old and new values of its history rows,
were 32-bit on PostgreSQL: four criteria of 1,000,000 points (the documented limit) over 773
page views made 3.09 billion, past 2^31, and every pass failed with "integer out of range". They
are BIGINT now. SQLite's INTEGER holds 64 bits already, so there is nothing to change there.

On PostgreSQL the change rewrites ``leads`` and ``score_changes`` and their indexes (a few
seconds per million rows, with the tables locked).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

COLUMNS = {
    "leads": ("score", "score_fit", "score_engagement", "score_adjustment"),
    "score_changes": (
        "old_score",
        "new_score",
        "old_fit",
        "new_fit",
        "old_engagement",
        "new_engagement",
    ),
}


def _retype(kind: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        # One ALTER TABLE per table: PostgreSQL rewrites the table once, not once per column.
        changes = ", ".join(f"ALTER COLUMN {name} TYPE {kind}" for name in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _retype("BIGINT")


def downgrade() -> None:
    _retype("INTEGER")
