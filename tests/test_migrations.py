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
        assert context.get_current_revision() == "0018"
        assert set(inspect(connection).get_table_names()) == {
            *(t.name for t in metadata.sorted_tables),
            "alembic_version",
        }
    engine.dispose()


def _sqlite_schema(path: Path) -> dict[str, object]:
    """What a SQLite store's statements depend on: each table's columns, indexes and foreign
    keys, and every trigger's text (whitespace aside)."""
    import sqlite3

    connection = sqlite3.connect(path)
    try:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "AND name != 'alembic_version' ORDER BY name"
            )
        ]
        schema: dict[str, object] = {}
        for table in tables:
            columns = sorted(
                (name, kind.upper(), notnull, default, pk)
                for _cid, name, kind, notnull, default, pk in connection.execute(
                    f'PRAGMA table_info("{table}")'
                )
            )
            indexes = sorted(
                (
                    unique,
                    origin,
                    tuple(
                        info[2]
                        for info in connection.execute(f'PRAGMA index_xinfo("{name}")')
                        if info[5]  # key columns, not the rowid
                    ),
                    bool(partial),
                )
                for _seq, name, unique, origin, partial in connection.execute(
                    f'PRAGMA index_list("{table}")'
                )
            )
            foreign_keys = sorted(
                row[2:] for row in connection.execute(f'PRAGMA foreign_key_list("{table}")')
            )
            schema[table] = {"columns": columns, "indexes": indexes, "foreign_keys": foreign_keys}
        schema["triggers"] = sorted(
            (name, table, " ".join(sql.split()))
            for name, table, sql in connection.execute(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'"
            )
        )
        return schema
    finally:
        connection.close()


def test_the_rule_tests_scratch_store_is_the_migrated_store(tmp_path: Path) -> None:
    """``leadflow test`` builds its scratch store with ``metadata.create_all`` (no alembic):
    the same tables, columns, indexes, foreign keys and rescoring triggers as a migrated store."""
    migrated = create_store_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    migrate(migrated)
    migrated.dispose()
    created = create_store_engine(f"sqlite:///{tmp_path / 'created.db'}")
    metadata.create_all(created)
    created.dispose()
    schema = _sqlite_schema(tmp_path / "migrated.db")
    assert len(schema["triggers"]) == 4  # type: ignore[arg-type]
    assert _sqlite_schema(tmp_path / "created.db") == schema
