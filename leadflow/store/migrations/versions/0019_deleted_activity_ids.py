"""A scoring pass's highest activity id comes down when SQLite may give it again

SQLite gives a new activity one more than the highest id left, so after the newest activities
were deleted the next ones got ids at or below ``scoring_runs.last_activity_id`` and a change
they caused was named ``decay``. ``scoring_runs.pass_activity_id``: the highest activity id when
the pass under way started (what it records as ``last_activity_id``); on SQLite a trigger brings
both down to the highest id left when a delete takes the highest (``leadflow/store/
activity_ids.py`` says why), and lowers a mark already above the highest id left (deleted
before this revision). A column of a one-row table and a trigger: nothing is rewritten.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# Written out rather than imported from leadflow.store.activity_ids: a later change to the
# trigger comes with a revision of its own.
_LEFT = "coalesce((SELECT max(id) FROM activities), 0)"
_LOWER_MARKS = (
    "UPDATE scoring_runs SET"
    f" last_activity_id = CASE WHEN last_activity_id > {_LEFT} THEN {_LEFT}"
    " ELSE last_activity_id END,"
    f" pass_activity_id = CASE WHEN pass_activity_id > {_LEFT} THEN {_LEFT}"
    " ELSE pass_activity_id END"
    f" WHERE last_activity_id > {_LEFT} OR pass_activity_id > {_LEFT}"
)
SQLITE_CREATE = (
    "CREATE TRIGGER IF NOT EXISTS activities_lower_pass_marks AFTER DELETE ON activities"
    f" WHEN OLD.id > {_LEFT} BEGIN {_LOWER_MARKS}; END"
)
SQLITE_REPAIR = _LOWER_MARKS
"""A store whose newest activities were deleted before this revision has a mark above the
highest id left: the trigger only acts on later deletes, so the next activity would still
get an id at or below the mark (and its change be named ``decay``)."""


def upgrade() -> None:
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.add_column(sa.Column("pass_activity_id", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        op.get_bind().exec_driver_sql(SQLITE_CREATE)
        op.get_bind().exec_driver_sql(SQLITE_REPAIR)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.get_bind().exec_driver_sql("DROP TRIGGER IF EXISTS activities_lower_pass_marks")
    with op.batch_alter_table("scoring_runs") as batch_op:
        batch_op.drop_column("pass_activity_id")
