"""Migrations: an empty database upgrades to head, and head matches the models exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from leadflow.store.database import create_store_engine, migrate
from leadflow.store.models import metadata


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_empty_database_upgrades_to_head_matching_the_models(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """From nothing to head, twice (idempotent), with no difference to the SQLModel tables."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = create_store_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
            for table in reversed(metadata.sorted_tables):
                connection.execute(text(f'DROP TABLE IF EXISTS "{table.name}" CASCADE'))
        engine.dispose()
    engine = create_store_engine(url)
    migrate(engine)
    migrate(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        assert context.get_current_revision() == "0013"
        assert set(inspect(connection).get_table_names()) == {
            *(t.name for t in metadata.sorted_tables),
            "alembic_version",
        }
    engine.dispose()
