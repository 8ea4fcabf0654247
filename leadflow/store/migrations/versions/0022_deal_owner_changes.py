"""A deal's owner now as an owner change in its history, where the history says another

The report groups a deal by its owner as of the report's instant (``--by rep``), read from the
deal's history: the owner on its last row then. Imports and the API now record a deal's owner
change with no stage change as a row of its own (the same stage before and after), as a
lead's is; before this revision they did not, so a deal reassigned that way still had its old
owner on its last row. Each such deal gets the change, from the owner on that row (the last in
time) to its owner now, at its last write (``updated_at``: the latest the change can have
been), or at that row's time if it is later (so the change is the last row). Data only.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

LAST_ROW = (
    "SELECT h.id FROM stage_changes h WHERE h.deal_id = d.id ORDER BY h.at DESC, h.id DESC LIMIT 1"
)


def upgrade() -> None:
    # Rep ids are positive: 0 stands for "no owner" in the comparison.
    op.execute(
        "INSERT INTO stage_changes (deal_id, at, from_stage, to_stage, from_owner_id, "
        "to_owner_id, cause) "
        "SELECT d.id, CASE WHEN d.updated_at > l.at THEN d.updated_at ELSE l.at END, "
        "l.to_stage, l.to_stage, l.to_owner_id, d.owner_id, 'migration' "
        f"FROM deals d JOIN stage_changes l ON l.id = ({LAST_ROW}) "
        "WHERE COALESCE(l.to_owner_id, 0) <> COALESCE(d.owner_id, 0)"
    )


def downgrade() -> None:
    # The rows are kept: an older version reads them as owner changes too (not entries).
    pass
