"""Keeping a scoring pass's highest activity id true when SQLite gives a deleted id again.

A pass names ``activity`` as the cause of a change when the lead has an activity with a
higher id than the last pass saw (``scoring_runs.last_activity_id``, revision 0017). PostgreSQL
never gives an id twice (a sequence). SQLite's ``activities.id`` is the rowid without
AUTOINCREMENT: a new row gets one more than the highest id left in the table, so once the newest
activities are deleted (an operator's clean-up, a person's data erased; docs/email.md) the next
ones get their ids again, at or below the mark, and their changes were named ``decay``.

Every activity inserted from now on gets an id above the highest one left. So on SQLite, when a
delete takes the highest id, a trigger brings the marks above what is left down to it: the last
pass's (``last_activity_id``) and the one of a pass under way (``pass_activity_id``, its
highest id at its start, which it records as ``last_activity_id`` when it ends). An id was
above the mark only if it arrived after the pass, before and after the trigger. Adding
AUTOINCREMENT instead would rewrite the whole activities table (SQLite cannot alter a key).

The trigger's body runs only for a delete that takes the highest id (one probe of the rowid's
b-tree per deleted row otherwise), and updates the one row of ``scoring_runs``.
"""

from __future__ import annotations

from sqlalchemy import Connection

_LEFT = "coalesce((SELECT max(id) FROM activities), 0)"

SQLITE_CREATE = (
    "CREATE TRIGGER IF NOT EXISTS activities_lower_pass_marks AFTER DELETE ON activities"
    f" WHEN OLD.id > {_LEFT} BEGIN"
    " UPDATE scoring_runs SET"
    f" last_activity_id = CASE WHEN last_activity_id > {_LEFT} THEN {_LEFT}"
    " ELSE last_activity_id END,"
    f" pass_activity_id = CASE WHEN pass_activity_id > {_LEFT} THEN {_LEFT}"
    " ELSE pass_activity_id END"
    f" WHERE last_activity_id > {_LEFT} OR pass_activity_id > {_LEFT}; END"
)
SQLITE_DROP = "DROP TRIGGER IF EXISTS activities_lower_pass_marks"


def create_pass_marks_trigger(connection: Connection) -> None:
    """The trigger, on SQLite (PostgreSQL needs none), once activities and scoring_runs exist."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(SQLITE_CREATE)
