"""Indexes on leads.email and leads.company for the dashboard's search

The dashboard finds leads by the start of their email or company name: a range on each
column, which a plain B-tree index answers on SQLite and PostgreSQL alike.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_leads_email", "leads", ["email"])
    op.create_index("ix_leads_company", "leads", ["company"])


def downgrade() -> None:
    op.drop_index("ix_leads_company", table_name="leads")
    op.drop_index("ix_leads_email", table_name="leads")
