"""The report's read of the store: every family sees the store as it was at one instant,
from two connections whose queries run at the same time (two cores, not one).

- PostgreSQL: the first connection reads in a ``REPEATABLE READ READ ONLY`` transaction, whose
  snapshot every statement shares (``READ COMMITTED`` takes a new one per statement, so two
  families could have seen different histories), and the second imports that snapshot
  (``pg_export_snapshot`` / ``SET TRANSACTION SNAPSHOT``).
- SQLite: a WAL reader keeps the state its transaction's first read found until it ends.
  Both readers make that first read while the report holds the write lock (an empty writing
  transaction), so no commit can fall between them: they find the same state. Writers wait
  for those two reads only (a millisecond), not for the report. The report waits for the lock
  :data:`LOCK_WAIT_MS` at most: a writer holding it longer (an import's one transaction) or a
  file it may not write leaves it one reader, the families one after the other, as before
  two readers, rather than a report that waits for the import or fails.
- An in-memory SQLite database is one per connection: one reader there.

An SQLite reader maps the file into memory for the report (``mmap_size``, set back when the
report is done, since the pool hands the connection to others): the report's look-ups into
the leads and the history then read pages where they lie, not each through a ``read`` call
into SQLite's small page cache (at a million leads, attribution's look-up of each converted
lead's source took 1.30 s of CPU, 0.98 s mapped; the scans did not change). A larger page
cache or temporary tables in memory made the report's sorts slower (7.6 s of CPU in all, 9.4
and 11.0 s): they were not taken.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from leadflow.errors import ExternalSystemError
from leadflow.funnel.sql import settings_for_report

SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")
"""What ``pg_export_snapshot`` returns (``00000003-0000001B-1``): checked before it is spelled
into ``SET TRANSACTION SNAPSHOT``, which takes no bound parameter."""

MAPPED_BYTES = 2**31
"""How much of an SQLite file a report's reader maps (SQLite's own limit, 2 GB by default,
caps it; the rest of a larger file is read as before)."""

LOCK_WAIT_MS = 200
"""How long an SQLite report waits for the write lock that lines its two readers up."""

ONE_SNAPSHOT = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
"""A PostgreSQL transaction whose statements all read one snapshot, and write nothing."""


@contextmanager
def report_read(engine: Engine) -> Iterator[Connection]:
    """A connection in the report's transaction, set for the report's queries."""
    with engine.connect() as connection, _mapped(connection):
        if connection.dialect.name == "postgresql":
            connection.execution_options(**ONE_SNAPSHOT)
        with connection.begin():
            settings_for_report(connection)
            yield connection


@contextmanager
def _mapped(connection: Connection) -> Iterator[None]:
    """On SQLite, the file mapped (:data:`MAPPED_BYTES`) while the block runs; set outside
    any transaction, on the driver's connection (SQLAlchemy's would begin one)."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    found = raw.execute("PRAGMA mmap_size").fetchone()
    if found is None:  # an in-memory database: no file to map
        yield
        return
    previous = int(found[0])
    raw.execute(f"PRAGMA mmap_size={MAPPED_BYTES}")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA mmap_size={previous}")


@contextmanager
def same_snapshot(engine: Engine, reading: Connection) -> Iterator[Connection]:
    """A second PostgreSQL connection reading what ``reading`` (a :func:`report_read`
    connection, whose transaction must stay open meanwhile) reads."""
    exported = reading.execute(text("SELECT pg_export_snapshot()")).scalar_one()
    if not SNAPSHOT_ID.fullmatch(exported):
        msg = f"PostgreSQL exported the snapshot {exported!r}, not an id leadflow can import"
        raise ExternalSystemError(msg)
    with engine.connect() as connection:
        connection.execution_options(**ONE_SNAPSHOT)
        with connection.begin():
            # First in the transaction: no statement may read before the snapshot is set.
            connection.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{exported}'")
            settings_for_report(connection)
            yield connection


@contextmanager
def two_readers(engine: Engine) -> Iterator[tuple[Connection, Connection | None]]:
    """Two connections in report transactions reading the same state of the store; the second
    is None for an in-memory SQLite database, an SQLite store whose write lock another
    transaction holds, or a PostgreSQL server that will not open a second connection."""
    if engine.dialect.name == "postgresql":
        with ExitStack() as readers:
            first = readers.enter_context(report_read(engine))
            try:
                second: Connection | None = readers.enter_context(same_snapshot(engine, first))
            except DBAPIError:
                # No second connection to be had (a role's connection limit, a full server):
                # the first one's transaction is untouched, and reads every family alone.
                second = None
            yield first, second
        return
    if engine.url.database in (None, "", ":memory:"):
        with report_read(engine) as only:
            yield only, None
        return
    with ExitStack() as readers:
        with _writers_held(engine) as held:
            lined_up = [readers.enter_context(report_read(engine)) for _ in range(2 if held else 1)]
            for reader in lined_up:
                reader.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar_one()
        yield lined_up[0], lined_up[1] if held else None


@contextmanager
def _writers_held(engine: Engine) -> Iterator[bool]:
    """SQLite's write lock held (an empty ``BEGIN IMMEDIATE``) while the block runs, if it
    could be had within :data:`LOCK_WAIT_MS`: whether it was."""
    with engine.connect() as holder:
        # The driver's own connection: SQLAlchemy's begin would take the engine's 10 s wait.
        raw = holder.connection.driver_connection
        assert raw is not None
        previous = raw.execute("PRAGMA busy_timeout").fetchone()[0]
        raw.execute(f"PRAGMA busy_timeout={LOCK_WAIT_MS}")
        try:
            raw.execute("BEGIN IMMEDIATE")
            held = True
        except sqlite3.OperationalError:  # busy past the wait, or a file it may not write
            held = False
        finally:
            raw.execute(f"PRAGMA busy_timeout={int(previous)}")
        try:
            yield held
        finally:
            if held:
                raw.execute("ROLLBACK")
