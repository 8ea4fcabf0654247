"""Ctrl-C of a batch-by-batch import read in a second process: what it says is what it kept.

Pins an outside tester's finds. Interrupted in the middle of a batch, ``leadflow import``
recorded (and ``leadflow status`` showed) the rows of that rolled-back batch as updated
(``updated 15000`` where 0 leads had changed) and printed nothing. On SQLite a Ctrl-C at some
instants waited 10 s for the lock its own unfinished batch held, then failed with "database is
locked", exit 3, the run left ``running``; and a terminal's Ctrl-C, which reaches the whole
process group, made the reading process print its ``KeyboardInterrupt`` traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from import_support import write
from sqlalchemy import CursorResult, Engine, func, select, text

from leadflow.cli import main
from leadflow.ingest.runner import FED_PART_ROWS
from leadflow.store.database import create_store_engine, transaction
from leadflow.store.tables import IMPORT_RUNS, LEADS

STORED = 70_000
"""Leads in the store before: the file's 120,000 rows are then written batch by batch (not
in bulk, which needs a table holding fewer than half as many)."""
ROWS = 120_000
"""Enough for the reading process (100,000 rows or more)."""
BATCH = 20_000
BAD = 1000
"""Of the interrupted file, each line ``n`` with ``n % BAD == BAD - 1`` has an unknown stage."""
UNKNOWN_STAGE = (
    "stage: unknown stage 'bogus'; expected one of subscriber, lead, mql, sql, opportunity, "
    "customer, nurture, recycled, disqualified (or map it under import.mappings.leads.values.stage)"
)


def _leads(count: int, name: str, bad: int = 0) -> str:
    return "".join(
        f'{{"external_id": "L{n:06d}", "name": "{name}", '
        f'"stage": "{"bogus" if bad and n % bad == bad - 1 else "lead"}"}}\n'
        for n in range(count)
    )


def _renamed(engine: Engine) -> int:
    with engine.connect() as connection:
        query = select(func.count()).select_from(LEADS).where(LEADS.c.name == "renamed")
        return int(connection.execute(query).scalar_one())


def _last_run(engine: Engine) -> tuple[object, ...]:
    with engine.connect() as connection:
        query = select(
            IMPORT_RUNS.c.status,
            IMPORT_RUNS.c.inserted,
            IMPORT_RUNS.c.updated,
            IMPORT_RUNS.c.unchanged,
            IMPORT_RUNS.c.rejected,
            IMPORT_RUNS.c.finished_at.is_not(None),
        ).order_by(IMPORT_RUNS.c.id.desc())
        return tuple(connection.execute(query).first() or ())


def _with_ctrl_c_at_its_default() -> None:
    # A test runner may ignore SIGINT, and its children inherit that; a shell's do not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# Each store once and each way of sending the signal once (all four cost 100 s of CI): the
# SQLite lock the parent's own Ctrl-C left, the reading process a terminal's Ctrl-C reached.
@pytest.mark.parametrize(
    ("store_url", "to_group"),
    [("sqlite", False), ("postgres", True)],
    ids=["sqlite-kill-int-parent", "postgres-terminal-ctrl-c"],
    indirect=["store_url"],
)
@pytest.mark.slow
def test_ctrl_c_counts_what_was_committed_and_records_interrupted(
    engine: Engine, store_url: str, tmp_path: Path, to_group: bool
) -> None:
    config = write(
        tmp_path, "config.yaml", f"database:\n  url: {store_url}\nimport:\n  batch_size: {BATCH}\n"
    )
    stored = write(tmp_path, "a.jsonl", _leads(STORED, "first"))
    assert main(["-c", str(config), "import", "leads", str(stored)]) == 0
    path = write(tmp_path, "b.jsonl", _leads(ROWS, "renamed", BAD))
    leadflow = str(Path(sys.executable).with_name("leadflow"))
    process = subprocess.Popen(
        [leadflow, "-c", str(config), "import", "leads", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=_with_ctrl_c_at_its_default,  # noqa: PLW1509 - no threads started here
    )
    try:
        # Once the first batch is committed, the second is being read and written.
        deadline = time.monotonic() + 60
        while _renamed(engine) == 0:
            assert process.poll() is None, "the import ended before the test could stop it"
            assert time.monotonic() < deadline, "no batch was committed within 60 s"
            time.sleep(0.005)
        (os.killpg if to_group else os.kill)(process.pid, signal.SIGINT)
        stopped = time.monotonic()
        out, err = process.communicate(timeout=30)
        took = time.monotonic() - stopped
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    committed = _renamed(engine)
    assert (process.returncode, took < 5) == (130, True), err.decode()[-2000:]
    assert BATCH <= committed < ROWS
    # The file's first STORED ids are in the store: updated, then the new ones inserted. The
    # rows rejected (an unknown stage) are those of the committed batches: each batch's are
    # those read before the first row of the next. The rejected rows read after them, in the
    # batch the Ctrl-C rolled back or never wrote, were counted and listed too.
    good = [n for n in range(ROWS) if n % BAD != BAD - 1]
    written, following = good[:committed], good[committed]
    # Whole batches: the reading process's parts of FED_PART_ROWS lines, each with its
    # rejected rows, committed once BATCH rows or more are written.
    assert following % FED_PART_ROWS == 0
    updated = sum(1 for n in written if n < STORED)
    inserted = committed - updated
    rejected = [n for n in range(following) if n % BAD == BAD - 1]
    assert err.decode() == "".join(f"{path}:{n + 1}: {UNKNOWN_STAGE}\n" for n in rejected)
    assert out.decode() == (
        f"leads {path}: interrupted; committed before: inserted {inserted}, updated {updated}, "
        f"unchanged 0, rejected {len(rejected)}; import the file again to finish\n"
    )
    assert _last_run(engine) == ("interrupted", inserted, updated, 0, len(rejected), True)


def test_a_connection_dropped_mid_statement_leaves_the_sqlite_write_lock_free(
    tmp_path: Path,
) -> None:
    """The cause of "database is locked": SQLAlchemy closes a connection that an exception such
    as KeyboardInterrupt reaches inside a statement, and SQLite keeps a closed connection whose
    statement is still open (here a result not read to its end), its transaction and write lock
    with it; the run's row then waited for this process's own lock."""
    engine = create_store_engine(f"sqlite:///{tmp_path / 'store.db'}", connect_timeout=1)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.execute(text("INSERT INTO t VALUES (1), (2), (3)"))
    unread: list[CursorResult[Any]] = []  # kept alive, as a traceback's frames keep it
    with pytest.raises(KeyboardInterrupt):
        _dropped_mid_statement(engine, unread)
    with transaction(engine) as session:
        session.execute(text("INSERT INTO t VALUES (5)"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT x FROM t ORDER BY x")).all() == [
            (1,),
            (2,),
            (3,),
            (5,),
        ]
    unread.clear()
    engine.dispose()


def _dropped_mid_statement(engine: Engine, unread: list[CursorResult[Any]]) -> None:
    with transaction(engine) as session:
        connection = session.connection()
        connection.execute(text("INSERT INTO t VALUES (4)"))
        unread.append(connection.execute(text("SELECT x FROM t")))
        assert unread[0].fetchone() == (1,)
        connection.invalidate()  # as SQLAlchemy does for a KeyboardInterrupt mid-statement
        raise KeyboardInterrupt
