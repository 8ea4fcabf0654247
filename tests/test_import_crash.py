"""An import killed mid-file (SIGKILL, no clean-up) leaves whole batches only: the leads of the
batches it committed, each with its first stage in the history, and nothing of the batch in
flight. On SQLite and PostgreSQL, with the bulk paths (executemany; COPY straight in). A bulk
import (its indexes built after the rows, in one transaction) killed leaves nothing, and every
index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from import_support import lead_entries, rows, write
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError

from leadflow.ingest.index_builds import BULK_MIN_ROWS, secondary_indexes
from leadflow.store.tables import IMPORT_RUNS, LEADS, STAGE_CHANGES

BATCH = 500
ROWS = 60_000
STAGES = ("lead", "subscriber", "mql")


def _stored(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(LEADS)).scalar_one())


@pytest.mark.slow
def test_a_killed_import_leaves_whole_batches_with_their_history(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    """Killed once two batches are in: the stored leads are the file's first N rows, N a
    multiple of the batch size, each with exactly one history row (its first stage); the run
    stays ``running``."""
    config = write(
        tmp_path, "config.yaml", f"database:\n  url: {store_url}\nimport:\n  batch_size: {BATCH}\n"
    )
    lines = "".join(f"L{n:06d},{STAGES[n % 3]}\n" for n in range(ROWS))
    path = write(tmp_path, "leads.csv", "external_id,stage\n" + lines)
    leadflow = str(Path(sys.executable).with_name("leadflow"))
    command = [leadflow, "-c", str(config), "import", "leads", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _stored(engine) < 2 * BATCH:
            assert process.poll() is None, "the import ended before it could be killed"
            assert time.monotonic() < deadline, "no batch landed within 120 s"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)

    stored = _stored(engine)
    assert stored % BATCH == 0
    assert 2 * BATCH <= stored < ROWS
    assert rows(engine, "leads", "external_id", "stage") == [
        (f"L{n:06d}", STAGES[n % 3]) for n in range(stored)
    ]
    with engine.connect() as connection:
        runs = connection.execute(select(IMPORT_RUNS.c.status, IMPORT_RUNS.c.inserted)).all()
    assert lead_entries(engine) == [(f"L{n:06d}", None, STAGES[n % 3]) for n in range(stored)]
    assert [tuple(run) for run in runs] == [("running", 0)]


def _indexes(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return [
            index.create
            for table in ("leads", "stage_changes")
            for index in secondary_indexes(connection, table)
        ]


def _writing_underway(engine: Engine) -> bool:
    """Whether a running import's one transaction holds the leads table: SQLite's write lock
    taken, PostgreSQL's exclusive lock of the dropped indexes' table."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            held = connection.execute(
                text(
                    "SELECT EXISTS (SELECT FROM pg_locks WHERE relation = to_regclass('leads')"
                    " AND mode = 'AccessExclusiveLock' AND granted)"
                )
            ).scalar_one()
            return bool(held)
        if not connection.execute(select(func.count()).select_from(IMPORT_RUNS)).scalar_one():
            return False
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA busy_timeout = 0")
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            connection.exec_driver_sql("ROLLBACK")
    except OperationalError:
        return True
    return False


@pytest.mark.slow
def test_a_killed_bulk_import_leaves_nothing_and_every_index(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    """A file of more than BULK_MIN_ROWS rows into empty tables, killed while writing: no lead,
    no history row, every secondary index of both tables as before; the run stays ``running``.
    """
    config = write(tmp_path, "config.yaml", f"database:\n  url: {store_url}\n")
    total = BULK_MIN_ROWS * 3
    lines = "".join(f"L{n:07d},{STAGES[n % 3]}\n" for n in range(total))
    path = write(tmp_path, "leads.csv", "external_id,stage\n" + lines)
    before = _indexes(engine)
    assert len(before) >= 10
    leadflow = str(Path(sys.executable).with_name("leadflow"))
    command = [leadflow, "-c", str(config), "import", "leads", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _writing_underway(engine):
            assert process.poll() is None, "the import ended before it could be killed"
            assert time.monotonic() < deadline, "the import did not start writing within 120 s"
            time.sleep(0.01)
        time.sleep(1.0)  # into the rows: a few batches written, uncommitted
        assert process.poll() is None, "the import ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=30)

    assert _stored(engine) == 0
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(STAGE_CHANGES)).scalar() == 0
        runs = connection.execute(select(IMPORT_RUNS.c.status, IMPORT_RUNS.c.inserted)).all()
    assert [tuple(run) for run in runs] == [("running", 0)]
    assert _indexes(engine) == before
