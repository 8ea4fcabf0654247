"""Alembic environment: runs on the engine leadflow hands over, never on a URL from an ini."""

from __future__ import annotations

from alembic import context

from leadflow.store.database import MIGRATION_LOCK_WAIT, bounded_lock_waits, unbounded_statements
from leadflow.store.models import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection, unbounded_statements(connection):
    bounded_lock_waits(connection, context.config.attributes.get("lock_wait", MIGRATION_LOCK_WAIT))
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=engine.dialect.name == "sqlite",
        compare_type=True,
    )
    context.run_migrations()
