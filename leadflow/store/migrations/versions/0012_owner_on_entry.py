"""A rule's entry into a stage carries the owner the same firing gave

Until now a firing that set a lead's stage and then assigned it (the shipped MQL rule) wrote
two ``stage_changes`` rows at the same instant: the entry with no owner, then an owner change.
The report's ``--by rep`` reads the owner on entry, so every MQL counted for ``(none)``. A
firing now writes the entry with the owner it gave (``leadflow/engine/firing.py``); this
revision folds the rows written before the same way: an owner change by a rule (same lead,
instant, rule and stage as an entry of that rule just before it) becomes the entry's
``to_owner_id``, and the owner change row goes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# ``e`` an entry by a rule, ``o`` an owner change by the same firing after it.
SAME_FIRING = (
    "o.lead_id = e.lead_id AND o.at = e.at AND o.rule_id = e.rule_id AND o.cause = 'rule' "
    "AND o.from_stage = o.to_stage AND o.to_stage = e.to_stage AND o.id > e.id"
)
ENTRY_BY_RULE = (
    "e.cause = 'rule' AND e.lead_id IS NOT NULL "
    "AND (e.from_stage IS NULL OR e.from_stage <> e.to_stage)"
)


def upgrade() -> None:
    # Each entry's owner from the last owner change of its firing, then those changes go; one
    # join each (a subquery per updated row took PostgreSQL 38 s for 850,000 history rows).
    op.execute(
        "UPDATE stage_changes SET to_owner_id = given.to_owner_id "
        "FROM (SELECT e.id AS entry_id, max(o.id) AS change_id FROM stage_changes e "
        f"JOIN stage_changes o ON {SAME_FIRING} WHERE {ENTRY_BY_RULE} GROUP BY e.id) folded "
        "JOIN stage_changes given ON given.id = folded.change_id "
        "WHERE stage_changes.id = folded.entry_id"
    )
    op.execute(
        "DELETE FROM stage_changes WHERE id IN (SELECT o.id FROM stage_changes e "
        f"JOIN stage_changes o ON {SAME_FIRING} WHERE {ENTRY_BY_RULE})"
    )


def downgrade() -> None:
    # The folded owner changes are not written back: the entries keep their owner, which is
    # what the older report would have read from the two rows had it looked.
    pass
