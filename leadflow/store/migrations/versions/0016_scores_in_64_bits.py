"""Scores in 64 bits

A lead's score, fit, engagement and adjustment, and the old and new values of its history rows,
were 32-bit on PostgreSQL: four criteria of 1,000,000 points (the documented limit) over 773
page views made 3.09 billion, past 2^31, and every pass failed with "integer out of range". They
are BIGINT now. SQLite's INTEGER holds 64 bits already, so there is nothing to change there.

On PostgreSQL the change rewrites ``leads`` and ``score_changes`` and their indexes under an
ACCESS EXCLUSIVE lock (a few seconds per million rows, nothing reads or writes them meanwhile):
plan a maintenance window on a large store. The downgrade refuses, before changing anything,
while any of those values is beyond 32 bits (INTEGER would fail on the first one).

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from leadflow.errors import DowngradeRefusedError

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


INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _beyond_32_bits() -> dict[str, int]:
    """Rows of each table holding a value INTEGER cannot hold."""
    found = {}
    for table, columns in COLUMNS.items():
        outside = " OR ".join(f"{name} NOT BETWEEN {INT32_MIN} AND {INT32_MAX}" for name in columns)
        found[table] = (
            op.get_bind()
            .execute(text(f"SELECT count(*) FROM {table} WHERE {outside}"))
            .scalar_one()
        )
    return found


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        found = _beyond_32_bits()
        if any(found.values()):
            msg = (
                f"cannot downgrade migration 0016 (scores back to 32 bits): {found['leads']} "
                f"lead(s) and {found['score_changes']} score_changes row(s) hold a score, fit, "
                f"engagement or adjustment beyond 32 bits ({INT32_MIN} to {INT32_MAX}); lower "
                "them (or delete those score_changes rows) first, then downgrade again"
            )
            raise DowngradeRefusedError(msg)
    _retype("INTEGER")
