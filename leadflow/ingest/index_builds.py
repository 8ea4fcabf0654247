"""A bulk import builds the secondary indexes of the tables it fills once, after their rows.

Inserting a million leads maintained the nine indexes of ``leads`` row by row, each a random
insertion into a B-tree: on SQLite most of the time of a row. ``CREATE INDEX`` over the filled
table reads it once and builds each index from sorted entries, at a fraction of that. An import
is *bulk* when the file holds at least :data:`BULK_MIN_ROWS` rows and more than twice the rows
the table holds (an empty table, a first migration from a CRM): its secondary indexes (not the
unique one on ``external_id``, which the import looks rows up by, nor the primary key) are
dropped in the import's transaction, the rows written, and the indexes created again from the
definitions read before the drop, in the same transaction. On PostgreSQL the foreign keys
between those tables (the history's ``lead_id``) are dropped and added again the same way.

Both stores' DDL is transactional, so the drop is never seen without the creates: killed or
failed at any point, the transaction rolls back with its rows, and the tables keep every index
they had. The price is that a bulk import is one transaction (see :mod:`leadflow.ingest.runner`),
and that it holds the tables for its duration (SQLite's write lock; on PostgreSQL ``DROP INDEX``
takes the table's exclusive lock, which readers wait for too).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine

from leadflow.store.database import unbounded_statements

BULK_MIN_ROWS = 100_000
"""Below this many rows in the file an import writes as it always did, batch by batch."""
SAMPLE_BYTES = 1 << 20
"""How much of the file's start is read to estimate its rows from its size."""
KEPT_INDEXES = frozenset({"ix_stage_changes_lead", "ix_stage_changes_deal"})
"""Indexes the import itself reads by while it writes: a changed lead's last stage entry is
looked up by ``(lead_id, id)``; without the index each lookup would scan the history."""
SQLITE_BULK_CACHE_KB = 16 * 1024
"""SQLite's page cache for a bulk import's connection, in KiB."""
POSTGRES_BUILD_MEMORY = "256MB"
"""PostgreSQL's ``maintenance_work_mem`` for the builds, in the import's transaction only: with
the server's default 64 MB a million rows' sort spills to disk and runs on one process."""


@dataclass(frozen=True)
class SecondaryIndex:
    name: str
    qualified: str
    """The name as ``DROP INDEX`` takes it (schema-qualified on PostgreSQL)."""
    create: str
    """The index's own definition as the store gives it back, run again to build it."""


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key between two bulk tables (PostgreSQL), checked again after the rows."""

    name: str
    table: str
    """The referencing table, schema-qualified."""
    definition: str
    """``FOREIGN KEY (...) REFERENCES ...`` as the store gives it back."""


def estimated_rows(path: Path, total_bytes: int) -> int:
    """The file's rows, from the lines in its first :data:`SAMPLE_BYTES` scaled to its size."""
    with path.open("rb") as source:
        sample = source.read(SAMPLE_BYTES)
    lines = sample.count(b"\n")
    if not sample or lines == 0:
        return 0
    # The header is one of the sample's lines; a quoted cell spanning lines counts them all,
    # which only overestimates a file already large.
    return max(round(total_bytes * lines / len(sample)) - 1, 0)


def bulk_tables(engine: Engine, tables: tuple[str, ...], incoming: int) -> list[str]:
    """Those of ``tables`` into which importing ``incoming`` rows is bulk: indexes come after."""
    if not tables or incoming < BULK_MIN_ROWS:
        return []
    with engine.connect() as connection:
        return [table for table in tables if holds_fewer(connection, table, incoming // 2)]


def holds_fewer(connection: Connection, table: str, rows: int) -> bool:
    """Whether ``table`` holds fewer than ``rows`` rows, counted no further than that."""
    held = connection.exec_driver_sql(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT {rows}) AS held"
    ).scalar_one()
    return int(held) < rows


def secondary_indexes(connection: Connection, table: str) -> list[SecondaryIndex]:
    """``table``'s indexes that are neither unique nor the primary key, nor in KEPT_INDEXES."""
    if connection.dialect.name == "sqlite":
        listed = connection.exec_driver_sql(f"PRAGMA index_list({table})").all()
        plain = {row[1] for row in listed if not row[2]}  # (seq, name, unique, origin, partial)
        found = connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY name",
            (table,),
        ).all()
        indexes = [SecondaryIndex(name, f'"{name}"', sql) for name, sql in found if name in plain]
    else:
        found = connection.exec_driver_sql(
            "SELECT i.relname, n.nspname, pg_get_indexdef(i.oid) FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid"
            " JOIN pg_namespace n ON n.oid = i.relnamespace"
            " WHERE x.indrelid = to_regclass(%(table)s)"
            " AND NOT x.indisunique AND NOT x.indisprimary"
            " AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
            " ORDER BY i.relname",
            {"table": table},
        ).all()
        indexes = [
            SecondaryIndex(name, f'"{schema}"."{name}"', create) for name, schema, create in found
        ]
    return [index for index in indexes if index.name not in KEPT_INDEXES]


def foreign_keys_between(connection: Connection, tables: list[str]) -> list[ForeignKey]:
    """On PostgreSQL, the foreign keys from one of ``tables`` to one of them
    (``stage_changes.lead_id``); none on SQLite, which checks a key by one probe of the
    parent's primary key, and whose enforcement a transaction cannot suspend anyway."""
    if connection.dialect.name != "postgresql" or not tables:
        return []
    found = connection.exec_driver_sql(
        "SELECT c.conname, n.nspname, t.relname, pg_get_constraintdef(c.oid)"
        " FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
        " JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE c.contype = 'f'"
        " AND c.conrelid IN (SELECT to_regclass(name) FROM unnest(%(tables)s::text[]) AS name)"
        " AND c.confrelid IN (SELECT to_regclass(name) FROM unnest(%(tables)s::text[]) AS name)"
        " ORDER BY t.relname, c.conname",
        {"tables": tables},
    ).all()
    return [
        ForeignKey(name, f'"{schema}"."{table}"', definition)
        for name, schema, table, definition in found
    ]


@contextmanager
def indexes_built_after(connection: Connection, tables: list[str]) -> Iterator[None]:
    """Drop ``tables``' secondary indexes, let the caller write, create them again.

    On PostgreSQL the foreign keys between those tables too (the history's ``lead_id``): each
    row copied into ``stage_changes`` fired a trigger probing and locking its lead, a third
    of the server's time a row. Added again after the rows, a key is checked by one join over
    the whole table. Only keys between the tables the import locks anyway are dropped; keys
    to other tables (reps, deals) stay, so as not to lock those for the import's duration.

    All in the caller's transaction: on an exception nothing is created, and the rollback
    brings the dropped indexes and keys back; a row breaking a key fails the import whole.
    """
    dropped = [index for table in tables for index in secondary_indexes(connection, table)]
    unchecked = foreign_keys_between(connection, tables)
    if connection.dialect.name == "postgresql" and tables:
        # Every table locked first, the history last: the order the daemon's writes take them
        # in (a batch updates its leads, then appends their history). Dropping the history's
        # key first locked it before the leads, and a batch between the two deadlocked.
        ordered = sorted(tables, key=lambda table: table == "stage_changes")
        connection.exec_driver_sql(f"LOCK TABLE {', '.join(ordered)} IN ACCESS EXCLUSIVE MODE")
    for key in unchecked:
        connection.exec_driver_sql(f'ALTER TABLE {key.table} DROP CONSTRAINT "{key.name}"')
    for index in dropped:
        connection.exec_driver_sql(f"DROP INDEX {index.qualified}")
    if connection.dialect.name == "sqlite" and dropped:
        # The import's large page cache is for maintaining indexes, dropped now; kept over the
        # one transaction it made the process peak at 293 MB (1M CRM rows; 195 MB with this).
        connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_BULK_CACHE_KB}")
    yield
    # A build over millions of rows may outlast the daemon's statement timeout.
    with unbounded_statements(connection):
        if connection.dialect.name == "postgresql" and dropped:
            connection.exec_driver_sql(
                f"SET LOCAL maintenance_work_mem = '{POSTGRES_BUILD_MEMORY}'"
            )
        for index in dropped:
            connection.exec_driver_sql(index.create)
        for key in unchecked:
            connection.exec_driver_sql(
                f'ALTER TABLE {key.table} ADD CONSTRAINT "{key.name}" {key.definition}'
            )
