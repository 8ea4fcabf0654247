"""A steady rescoring pass reads only the leads whose score can have changed

``leads.score_next_change_day``: the earliest instant (days since 1970-01-01 UTC) the lead's
engagement can change with no new input, as the last pass found it; NULL (every existing lead
here, and every new one) means the next pass rescores the lead, and so do negative values.
Triggers mark the leads of every inserted, updated or deleted activity, and every lead updated
by anything but the pass, in the writer's transaction (``leadflow/store/score_marks.py`` says why);
an index finds the leads due.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# The triggers as this revision creates them, written out rather than imported from
# leadflow.store.score_marks: a later change to the triggers comes with a revision of its own.
SQLITE_CREATE = (
    "CREATE TRIGGER IF NOT EXISTS activities_mark_score_inserted AFTER INSERT ON activities WHEN NEW.lead_id IS NOT NULL BEGIN UPDATE leads SET score_next_change_day = NULL WHERE id = NEW.lead_id AND score_next_change_day IS NOT NULL; END",
    "CREATE TRIGGER IF NOT EXISTS activities_mark_score_updated AFTER UPDATE ON activities BEGIN UPDATE leads SET score_next_change_day = NULL WHERE id IN (OLD.lead_id, NEW.lead_id) AND score_next_change_day IS NOT NULL; END",
    "CREATE TRIGGER IF NOT EXISTS activities_mark_score_deleted AFTER DELETE ON activities WHEN OLD.lead_id IS NOT NULL BEGIN UPDATE leads SET score_next_change_day = NULL WHERE id = OLD.lead_id AND score_next_change_day IS NOT NULL; END",
    "CREATE TRIGGER IF NOT EXISTS leads_mark_score_updated AFTER UPDATE ON leads WHEN NEW.score_next_change_day IS OLD.score_next_change_day AND NEW.score_next_change_day IS NOT NULL BEGIN UPDATE leads SET score_next_change_day = NULL WHERE id = NEW.id; END",
)
SQLITE_DROP = (
    "DROP TRIGGER IF EXISTS activities_mark_score_inserted",
    "DROP TRIGGER IF EXISTS activities_mark_score_updated",
    "DROP TRIGGER IF EXISTS activities_mark_score_deleted",
    "DROP TRIGGER IF EXISTS leads_mark_score_updated",
)
POSTGRES_CREATE = (
    "CREATE OR REPLACE FUNCTION activities_mark_score() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  IF TG_OP IN ('INSERT', 'UPDATE') THEN\n    UPDATE leads SET score_next_change_day = LEAST(COALESCE(score_next_change_day, 0), 0) - 1 WHERE id = ANY(ARRAY(SELECT lead_id FROM new_rows WHERE lead_id IS NOT NULL));\n  END IF;\n  IF TG_OP IN ('UPDATE', 'DELETE') THEN\n    UPDATE leads SET score_next_change_day = LEAST(COALESCE(score_next_change_day, 0), 0) - 1 WHERE id = ANY(ARRAY(SELECT lead_id FROM old_rows WHERE lead_id IS NOT NULL));\n  END IF;\n  RETURN NULL;\nEND $$",
    "CREATE TRIGGER activities_mark_score_inserted AFTER INSERT ON activities REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION activities_mark_score()",
    "CREATE TRIGGER activities_mark_score_updated AFTER UPDATE ON activities REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION activities_mark_score()",
    "CREATE TRIGGER activities_mark_score_deleted AFTER DELETE ON activities REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION activities_mark_score()",
    "CREATE OR REPLACE FUNCTION leads_mark_score() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  NEW.score_next_change_day := LEAST(COALESCE(OLD.score_next_change_day, 0), 0) - 1;\n  RETURN NEW;\nEND $$",
    "CREATE TRIGGER leads_mark_score_updated BEFORE UPDATE ON leads FOR EACH ROW WHEN (NEW.score_next_change_day IS NOT DISTINCT FROM OLD.score_next_change_day) EXECUTE FUNCTION leads_mark_score()",
)
POSTGRES_DROP = (
    "DROP TRIGGER IF EXISTS activities_mark_score_inserted ON activities",
    "DROP TRIGGER IF EXISTS activities_mark_score_updated ON activities",
    "DROP TRIGGER IF EXISTS activities_mark_score_deleted ON activities",
    "DROP FUNCTION IF EXISTS activities_mark_score()",
    "DROP TRIGGER IF EXISTS leads_mark_score_updated ON leads",
    "DROP FUNCTION IF EXISTS leads_mark_score()",
)


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch_op:
        batch_op.add_column(sa.Column("score_next_change_day", sa.Float(), nullable=True))
    op.create_index("ix_leads_score_next_change", "leads", ["score_next_change_day"])
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRES_CREATE if postgres else SQLITE_CREATE:
        op.get_bind().exec_driver_sql(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRES_DROP if postgres else SQLITE_DROP:
        op.get_bind().exec_driver_sql(statement)
    op.drop_index("ix_leads_score_next_change", table_name="leads")
    with op.batch_alter_table("leads") as batch_op:
        batch_op.drop_column("score_next_change_day")
