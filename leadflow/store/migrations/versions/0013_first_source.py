"""The lead's source at creation, for first-touch attribution

``leads.first_source``: the ``source`` attribute a lead had when leadflow stored it (PRODUCT.md:
"first touch = the lead's source at creation", HubSpot's "Original Source"). Before this
revision leadflow kept only the current source, so the leads already stored get their current
``attributes.source``: the best knowledge there is (a source an import changed before this
revision is not known any more). A text source is kept as it is, another JSON value as its JSON
text (what the report grouped by on PostgreSQL), an absent or null one as NULL.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

SQLITE_SOURCE = (
    "CASE json_type(attributes, '$.source') WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
    "ELSE json_extract(attributes, '$.source') END"
)
"""SQLite's json_extract gives a JSON true or false as 1 or 0, a number as a number (stored
as its text in this text column) and a text as it is."""
POSTGRES_SOURCE = "attributes ->> 'source'"
MARK_TRIGGER = "leads_mark_score_updated"
"""The trigger that marks an updated lead for rescoring (revision 0010): the backfill changes
nothing a score reads, so it is held off, else the next pass would rescore every lead."""


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch_op:
        batch_op.add_column(sa.Column("first_source", sa.Text(), nullable=True))
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    source = POSTGRES_SOURCE if postgres else SQLITE_SOURCE
    backfill = f"UPDATE leads SET first_source = {source} WHERE {source} IS NOT NULL"
    if postgres:
        op.execute(f"ALTER TABLE leads DISABLE TRIGGER {MARK_TRIGGER}")
        op.execute(backfill)
        op.execute(f"ALTER TABLE leads ENABLE TRIGGER {MARK_TRIGGER}")
        return
    # SQLite cannot disable a trigger: it is dropped and made again from its own text.
    trigger = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (MARK_TRIGGER,)
    ).scalar()
    if trigger is not None:
        op.execute(f"DROP TRIGGER {MARK_TRIGGER}")
    op.execute(backfill)
    if trigger is not None:
        bind.exec_driver_sql(trigger)


def downgrade() -> None:
    with op.batch_alter_table("leads") as batch_op:
        batch_op.drop_column("first_source")
