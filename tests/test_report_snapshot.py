"""The report reads the store at one instant, on PostgreSQL over two connections.

A lead written and committed while a report is reading is seen by none of the report's
statements: not by a later statement of the first connection (PostgreSQL's default isolation
would see it), and not by the second connection, which on PostgreSQL began after the write
committed but reads the first one's snapshot, and on SQLite began its read with the first.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, Engine, func, insert, make_url, select

from leadflow.funnel.snapshot import report_read, same_snapshot, two_readers
from leadflow.store.database import create_store_engine
from leadflow.store.tables import LEADS

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _add_lead(engine: Engine, lead_id: int) -> None:
    row = {"id": lead_id, "external_id": f"L{lead_id}", "stage": "lead", "score": 0}
    times = {"created_at": T0, "updated_at": T0, "stage_entered_at": T0, "attributes": {}}
    with engine.begin() as connection:
        connection.execute(insert(LEADS), [{**row, **times}])


def _leads(connection: Connection) -> list[int]:
    return list(connection.execute(select(LEADS.c.id).order_by(LEADS.c.id)).scalars())


def test_a_write_during_the_report_is_not_read(engine: Engine) -> None:
    """Both stores: the report's transaction keeps the store as its first read found it."""
    _add_lead(engine, 1)
    with report_read(engine) as reading:
        assert _leads(reading) == [1]
        _add_lead(engine, 2)
        assert _leads(reading) == [1]
    with engine.connect() as fresh:
        assert _leads(fresh) == [1, 2]


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_the_second_connection_reads_the_first_ones_snapshot(engine: Engine) -> None:
    """The second connection, opened after a commit, does not see it: it reads the snapshot
    the first took at its first read; a third, independent connection does see it."""
    _add_lead(engine, 1)
    with report_read(engine) as reading:
        assert reading.execute(select(func.count()).select_from(LEADS)).scalar_one() == 1
        _add_lead(engine, 2)
        with same_snapshot(engine, reading) as other:
            assert _leads(other) == [1]
            assert _leads(reading) == [1]
            with engine.connect() as independent:
                assert _leads(independent) == [1, 2]


def test_two_readers_read_one_state(engine: Engine) -> None:
    """Both stores: the report's two readers see the store as it was when they began, a lead
    committed before the first statement of either included, one committed after in neither;
    writers are not held up by the report meanwhile."""
    _add_lead(engine, 1)
    with two_readers(engine) as (first, second):
        assert second is not None
        _add_lead(engine, 2)
        assert _leads(second) == [1]
        assert _leads(first) == [1]
        with engine.connect() as independent:
            assert _leads(independent) == [1, 2]


def test_one_reader_for_an_in_memory_database() -> None:
    """An in-memory SQLite database is the connection's own: the report reads it alone."""
    engine = create_store_engine("sqlite://")
    with two_readers(engine) as (first, second):
        assert second is None
        assert first.exec_driver_sql("SELECT 7").scalar_one() == 7
    engine.dispose()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_writer_holding_the_lock_leaves_one_reader(engine: Engine) -> None:
    """SQLite: with another process's transaction holding the write lock past
    ``LOCK_WAIT_MS`` (an import's), the report reads alone at once, the committed state, rather
    than waiting for the import; the connections keep their 10 s wait for the lock after."""
    _add_lead(engine, 1)
    database = engine.url.database
    assert database is not None
    importer = sqlite3.connect(database, isolation_level=None)
    importer.execute("BEGIN IMMEDIATE")
    try:
        began = time.monotonic()
        with two_readers(engine) as (first, second):
            assert second is None
            assert _leads(first) == [1]
        assert time.monotonic() - began < 2
    finally:
        importer.execute("ROLLBACK")
        importer.close()
    with engine.connect() as again:
        assert again.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 10000
    with two_readers(engine) as (first, second):
        assert second is not None
        assert _leads(second) == [1]


@pytest.mark.postgres
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_role_allowed_one_connection_reads_alone(engine: Engine, store_url: str) -> None:
    """PostgreSQL: a role limited to one connection cannot open the second reader; the report
    reads every family on the first, at its one snapshot, instead of failing."""
    _add_lead(engine, 1)
    role = f"lf_one_connection_{uuid.uuid4().hex[:8]}"
    with engine.begin() as admin:
        schema = admin.exec_driver_sql("SELECT current_schema()").scalar_one()
        admin.exec_driver_sql(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 1")
        admin.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        admin.exec_driver_sql(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {role}')
    limited = create_store_engine(make_url(store_url).set(username=role).render_as_string(False))
    try:
        with two_readers(limited) as (first, second):
            assert second is None
            _add_lead(engine, 2)
            assert _leads(first) == [1]
    finally:
        limited.dispose()
        with engine.begin() as admin:
            admin.exec_driver_sql(f"DROP OWNED BY {role}")
            admin.exec_driver_sql(f"DROP ROLE {role}")
