"""Triggers that mark a lead's score as due for rescoring whenever one of its activities, or
the lead itself, is written: ``leads.score_next_change_day`` set to NULL, in the writer's own
transaction.

A write to the lead is any update that leaves ``score_next_change_day`` as it was: an import,
the API, a rule's action, a bounce; the rescoring pass always writes that column (a new
instant) and so does not mark the lead it scores. A lead marked by a write that changes no
field a fit criterion reads costs one lead's recomputation at the next pass, no more.

A steady rescoring pass recomputes only the leads whose stored engagement may differ from the
model's at ``now``: those whose next change is due, and those whose activities changed since
their last pass. Catching the second kind with a time watermark (``activities.created_at``)
misses an import that was stamped before a pass and committed after it, and an activity that a
re-import moved to another lead or another time, and ``updated_at`` is not written by every
path that changes a lead (a rule's stage change, say); a trigger sees every insert, update and
delete, whoever makes it, committed or rolled back with it.

SQLite has row triggers only: one primary-key probe per activity, and no write when the lead
is already marked. PostgreSQL gets statement triggers with transition tables, so a COPY or an
``INSERT ... SELECT`` of millions of activities marks their leads in one ``UPDATE``; the ids go
through ``= ANY(ARRAY(...))``, which PostgreSQL answers from the primary key whatever the
statement's size (a join with the transition table, of unknown size, may scan every lead).

On PostgreSQL a writer can commit between a pass's read of a lead's activities and its write
of the lead, so each mark is a new value (-1, -2, ...: due, as NULL is; a row trigger that
runs only when the update leaves the column as it was marks the lead itself): the pass writes its
next change only over the value it read, and a mark made in between survives it. SQLite's
pass holds the write lock from its read to its write, so NULL is mark enough there.
"""

from __future__ import annotations

from sqlalchemy import Connection

_MARK = "UPDATE leads SET score_next_change_day = NULL WHERE {which} AND score_next_change_day IS NOT NULL"

SQLITE_CREATE: tuple[str, ...] = (
    "CREATE TRIGGER IF NOT EXISTS activities_mark_score_inserted AFTER INSERT ON activities"
    " WHEN NEW.lead_id IS NOT NULL BEGIN " + _MARK.format(which="id = NEW.lead_id") + "; END",
    "CREATE TRIGGER IF NOT EXISTS activities_mark_score_updated AFTER UPDATE ON activities BEGIN "
    + _MARK.format(which="id IN (OLD.lead_id, NEW.lead_id)")
    + "; END",
    "CREATE TRIGGER IF NOT EXISTS activities_mark_score_deleted AFTER DELETE ON activities"
    " WHEN OLD.lead_id IS NOT NULL BEGIN " + _MARK.format(which="id = OLD.lead_id") + "; END",
)
SQLITE_CREATE += (
    "CREATE TRIGGER IF NOT EXISTS leads_mark_score_updated AFTER UPDATE ON leads"
    " WHEN NEW.score_next_change_day IS OLD.score_next_change_day"
    " AND NEW.score_next_change_day IS NOT NULL"
    " BEGIN UPDATE leads SET score_next_change_day = NULL WHERE id = NEW.id; END",
)
SQLITE_DROP = (
    *(
        f"DROP TRIGGER IF EXISTS activities_mark_score_{event}"
        for event in ("inserted", "updated", "deleted")
    ),
    "DROP TRIGGER IF EXISTS leads_mark_score_updated",
)

_PG_MARK = (
    "UPDATE leads SET score_next_change_day = LEAST(COALESCE(score_next_change_day, 0), 0) - 1"
    " WHERE id = ANY(ARRAY(SELECT lead_id FROM {rows} WHERE lead_id IS NOT NULL))"
)
POSTGRES_CREATE = (
    "CREATE OR REPLACE FUNCTION activities_mark_score() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  IF TG_OP IN ('INSERT', 'UPDATE') THEN\n"
    f"    {_PG_MARK.format(rows='new_rows')};\n"
    "  END IF;\n"
    "  IF TG_OP IN ('UPDATE', 'DELETE') THEN\n"
    f"    {_PG_MARK.format(rows='old_rows')};\n"
    "  END IF;\n"
    "  RETURN NULL;\n"
    "END $$",
    "CREATE TRIGGER activities_mark_score_inserted AFTER INSERT ON activities"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION activities_mark_score()",
    "CREATE TRIGGER activities_mark_score_updated AFTER UPDATE ON activities"
    " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION activities_mark_score()",
    "CREATE TRIGGER activities_mark_score_deleted AFTER DELETE ON activities"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION activities_mark_score()",
    "CREATE OR REPLACE FUNCTION leads_mark_score() RETURNS trigger LANGUAGE plpgsql AS $$\n"
    "BEGIN\n"
    "  NEW.score_next_change_day := LEAST(COALESCE(OLD.score_next_change_day, 0), 0) - 1;\n"
    "  RETURN NEW;\n"
    "END $$",
    "CREATE TRIGGER leads_mark_score_updated BEFORE UPDATE ON leads FOR EACH ROW"
    " WHEN (NEW.score_next_change_day IS NOT DISTINCT FROM OLD.score_next_change_day)"
    " EXECUTE FUNCTION leads_mark_score()",
)
POSTGRES_DROP = (
    *(
        f"DROP TRIGGER IF EXISTS activities_mark_score_{event} ON activities"
        for event in ("inserted", "updated", "deleted")
    ),
    "DROP FUNCTION IF EXISTS activities_mark_score()",
    "DROP TRIGGER IF EXISTS leads_mark_score_updated ON leads",
    "DROP FUNCTION IF EXISTS leads_mark_score()",
)


def create_score_marks(connection: Connection) -> None:
    """Create the triggers on a store built from the metadata, once both tables exist (the
    migration ``0010`` creates the same, written out in it)."""
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        for statement in POSTGRES_DROP:
            connection.exec_driver_sql(statement)
    for statement in POSTGRES_CREATE if postgres else SQLITE_CREATE:
        connection.exec_driver_sql(statement)


def drop_score_marks(connection: Connection) -> None:
    for statement in POSTGRES_DROP if connection.dialect.name == "postgresql" else SQLITE_DROP:
        connection.exec_driver_sql(statement)
