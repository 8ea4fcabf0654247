"""store_secrets: secrets leadflow generates for itself when the configuration sets none

The unsubscribe links' HMAC key used a public constant when ``mail.unsubscribe_secret`` was
unset, so anyone could compute anyone's link. Now a random key is generated once and kept here,
where every process on the store finds the same one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import leadflow.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_secrets",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("created_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("store_secrets")
