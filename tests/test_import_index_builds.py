"""A bulk import (a file of many rows into a table holding fewer than half as many) writes its
rows in one transaction without the tables' secondary indexes and builds them after, in the same
transaction: the same rows land, every index is there afterwards with its own definition, and
an import that fails leaves neither rows nor a missing index. Over SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Connection, Engine, func, select

from leadflow.clock import SettableClock
from leadflow.ingest import import_file, index_builds, runner
from leadflow.ingest.index_builds import estimated_rows, secondary_indexes
from leadflow.store.database import ensure_attribute_indexes
from leadflow.store.tables import IMPORT_RUNS, LEADS, STAGE_CHANGES

FILE = "external_id,email,stage,industry\n" + "".join(
    f"L{n},l{n}@example.com,{('lead', 'mql')[n % 2]},{('software', 'retail')[n % 2]}\n"
    for n in range(7)
)


@pytest.fixture
def settings(make_settings: Any) -> Any:
    """Two rows per batch; an indexed attribute, so an expression index is rebuilt too."""
    return make_settings(
        attributes__leads={"industry": "string"},
        attributes__indexed=["industry"],
        import__batch_size=2,
    )


@pytest.fixture
def store(engine: Engine, settings: Any) -> Engine:
    attributes = settings.attributes
    ensure_attribute_indexes(engine, LEADS, attributes.leads, attributes.indexed)
    return engine


@pytest.fixture
def built_after(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every file of BULK_MIN_ROWS rows or more is bulk; records the tables each import built
    the indexes of after its rows."""
    monkeypatch.setattr(index_builds, "BULK_MIN_ROWS", 3)
    calls: list[list[str]] = []
    real = index_builds.indexes_built_after

    @contextmanager
    def recorded(connection: Connection, tables: list[str]) -> Iterator[None]:
        calls.append(list(tables))
        with real(connection, tables):
            yield

    monkeypatch.setattr(runner, "indexes_built_after", recorded)
    return calls


def _indexes(engine: Engine) -> dict[str, list[tuple[str, str]]]:
    """Each table's secondary indexes and, on PostgreSQL, every foreign key of both tables
    (the history's ``lead_id`` is dropped during a bulk import and added again)."""
    with engine.connect() as connection:
        found = {
            table: [(i.name, i.create) for i in secondary_indexes(connection, table)]
            for table in ("leads", "stage_changes")
        }
        if connection.dialect.name == "postgresql":
            keys = connection.exec_driver_sql(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE contype = 'f' AND conrelid IN"
                " (to_regclass('leads'), to_regclass('stage_changes')) ORDER BY conname"
            ).all()
            found["foreign keys"] = [(name, definition) for name, definition in keys]
    return found


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_bulk_import_lands_every_row_with_its_history_and_rebuilds_every_index(
    store: Engine, settings: Any, tmp_path: Path, clock: SettableClock, built_after: list[Any]
) -> None:
    """Seven rows into empty tables: bulk for leads and stage_changes; the rows, their first
    stages and every secondary index (the attribute's expression index too) are there."""
    before = _indexes(store)
    assert "ix_leads_attr_industry" in [name for name, _ in before["leads"]]
    assert "ix_leads_stage_score" in [name for name, _ in before["leads"]]
    if store.dialect.name == "postgresql":
        assert (
            "stage_changes_lead_id_fkey",
            "FOREIGN KEY (lead_id) REFERENCES leads(id)",
        ) in before["foreign keys"]
    report = import_file(store, settings, "leads", write(tmp_path, "l.csv", FILE), clock=clock)
    assert report.summary == "inserted 7, updated 0, unchanged 0, rejected 0"
    assert built_after == [["leads", "stage_changes"]]
    assert _indexes(store) == before
    assert rows(store, "leads", "external_id", "stage") == [
        (f"L{n}", ("lead", "mql")[n % 2]) for n in range(7)
    ]
    assert _count(store, STAGE_CHANGES) == 7
    with store.connect() as connection:
        run = connection.execute(select(IMPORT_RUNS.c.status, IMPORT_RUNS.c.inserted)).one()
    assert tuple(run) == ("done", 7)


def test_a_bulk_import_rejects_rows_by_line_and_field_and_lands_the_rest(
    store: Engine, settings: Any, tmp_path: Path, clock: SettableClock, built_after: list[Any]
) -> None:
    """One transaction for the file does not change what a bad row does."""
    text = FILE.replace("L3,l3@example.com", "L3,l3@@example.com")
    path = write(tmp_path, "l.csv", text)
    report = import_file(store, settings, "leads", path, clock=clock)
    assert built_after == [["leads", "stage_changes"]]
    assert report.summary == "inserted 6, updated 0, unchanged 0, rejected 1"
    assert [(p.line, str(p).split(": ")[1]) for p in report.problems] == [(5, "email")]
    assert [key for (key,) in rows(store, "leads", "external_id")] == [
        f"L{n}" for n in range(7) if n != 3
    ]


def test_a_failed_bulk_import_leaves_no_row_and_every_index(
    store: Engine, settings: Any, tmp_path: Path, clock: SettableClock, built_after: list[Any]
) -> None:
    """Failing after two of four batches: the one transaction rolls back, its drops too; the
    run is ``failed`` with nothing inserted."""
    before = _indexes(store)
    batches = 0

    def progress(_read: int, _total: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 2:
            msg = "the disk is gone"
            raise RuntimeError(msg)

    path = write(tmp_path, "l.csv", FILE)
    with pytest.raises(RuntimeError, match="the disk is gone"):
        import_file(store, settings, "leads", path, clock=clock, progress=progress)
    assert built_after == [["leads", "stage_changes"]]
    assert _indexes(store) == before
    assert _count(store, LEADS) == 0
    assert _count(store, STAGE_CHANGES) == 0
    with store.connect() as connection:
        run = connection.execute(select(IMPORT_RUNS.c.status, IMPORT_RUNS.c.inserted)).one()
    assert tuple(run) == ("failed", 0)


def test_a_table_holding_half_the_file_is_written_batch_by_batch(
    store: Engine, settings: Any, tmp_path: Path, clock: SettableClock, built_after: list[Any]
) -> None:
    """Four leads stored, a file of seven (re-importing four): not bulk, the indexes stay."""
    first = write(tmp_path, "first.csv", "".join(FILE.splitlines(keepends=True)[:5]))
    import_file(store, settings, "leads", first, clock=clock)
    assert built_after == [["leads", "stage_changes"]]
    report = import_file(store, settings, "leads", write(tmp_path, "l.csv", FILE), clock=clock)
    assert report.summary == "inserted 3, updated 0, unchanged 4, rejected 0"
    assert built_after == [["leads", "stage_changes"]]


def test_a_small_file_is_never_bulk(
    store: Engine, settings: Any, tmp_path: Path, clock: SettableClock, built_after: list[Any]
) -> None:
    """Under BULK_MIN_ROWS rows the import writes batch by batch, even into an empty table."""
    short = write(tmp_path, "short.csv", "".join(FILE.splitlines(keepends=True)[:3]))
    assert import_file(store, settings, "leads", short, clock=clock).counts.inserted == 2
    assert built_after == []


def test_the_estimate_counts_a_small_file_and_scales_a_large_one(tmp_path: Path) -> None:
    """Exact while the file fits the sample; beyond it, scaled from the sample's lines (whose
    ids are shorter than the file's later ones here: 3% over)."""
    small = write(tmp_path, "small.csv", FILE)
    assert estimated_rows(small, small.stat().st_size) == 7
    lines = "".join(f"L{n},{'x' * (n % 40)}\n" for n in range(200_000))
    large = write(tmp_path, "large.csv", "external_id,name\n" + lines)
    assert large.stat().st_size > index_builds.SAMPLE_BYTES
    assert 200_000 <= estimated_rows(large, large.stat().st_size) < 210_000
    empty = write(tmp_path, "empty.csv", "")
    assert estimated_rows(empty, 0) == 0


def test_a_history_row_breaking_its_lead_key_fails_the_bulk_import_whole(
    store: Engine, settings: Any, tmp_path: Path, clock: SettableClock, built_after: list[Any]
) -> None:
    """PostgreSQL checks the history's ``lead_id`` once, after the rows, not per row: a history
    row naming no lead (written here by the stage history's step, as a bug would) still fails
    the import, which leaves no row, and the key is there again. SQLite checks it per row."""
    from leadflow.ingest import stage_entries

    real = stage_entries.record_written

    def orphaned(connection: Connection, *args: Any, **kwargs: Any) -> None:
        real(connection, *args, **kwargs)
        connection.execute(
            STAGE_CHANGES.insert().values(
                lead_id=999_999, at=clock.now(), to_stage="lead", cause="import"
            )
        )

    before = _indexes(store)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stage_entries, "record_written", orphaned)
        with pytest.raises(Exception, match=r"(?i)foreign key"):
            import_file(store, settings, "leads", write(tmp_path, "l.csv", FILE), clock=clock)
    assert built_after == [["leads", "stage_changes"]]
    assert _indexes(store) == before
    assert _count(store, LEADS) == 0
    assert _count(store, STAGE_CHANGES) == 0


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_bulk_import_waits_for_a_batch_holding_leads_instead_of_deadlocking(
    store: Engine, clock: SettableClock
) -> None:
    """A daemon batch updates its leads, then appends their history. The bulk import takes the
    tables in that order (leads, then the history), so it waits for the batch, which commits:
    dropping the history's key first held the history while waiting for the leads, and the
    batch's history insert then deadlocked (PostgreSQL aborted one of the two). PostgreSQL
    only: SQLite has one writer at a time."""
    import threading

    from sqlalchemy import insert, text, update

    with store.begin() as connection:
        connection.execute(
            insert(LEADS).values(
                id=1,
                external_id="L1",
                stage="lead",
                created_at=clock.now(),
                updated_at=clock.now(),
                stage_entered_at=clock.now(),
                attributes={},
            )
        )
    outcome: dict[str, str] = {}
    batch = store.connect()
    transaction = batch.begin()
    batch.exec_driver_sql("SET LOCAL deadlock_timeout = '100ms'")
    batch.execute(update(LEADS).where(LEADS.c.id == 1).values(stage="mql"))

    def bulk_import() -> None:
        try:
            with store.begin() as connection:
                connection.exec_driver_sql("SET LOCAL deadlock_timeout = '100ms'")
                with index_builds.indexes_built_after(connection, ["leads", "stage_changes"]):
                    connection.execute(text("SELECT 1"))
            outcome["import"] = "done"
        except Exception as exc:
            outcome["import"] = type(exc).__name__

    importer = threading.Thread(target=bulk_import)
    importer.start()
    importer.join(0.5)  # the import is waiting for the batch's lock on leads
    try:
        batch.execute(
            insert(STAGE_CHANGES).values(
                lead_id=1, at=clock.now(), from_stage="lead", to_stage="mql", cause="rule"
            )
        )
        transaction.commit()
        outcome["batch"] = "committed"
    except Exception as exc:
        outcome["batch"] = type(exc).__name__
        transaction.rollback()
    finally:
        batch.close()
    importer.join(30)
    assert outcome == {"batch": "committed", "import": "done"}
    assert _count(store, STAGE_CHANGES) == 1
