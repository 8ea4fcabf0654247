"""An import killed mid-file (SIGKILL, no clean-up) leaves whole batches only: the leads of the
batches it committed, each with its first stage in the history, and nothing of the batch in
flight. On SQLite and PostgreSQL, with the bulk paths (executemany; COPY straight in)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from import_support import rows, write
from sqlalchemy import Engine, func, select

from leadflow.store.tables import IMPORT_RUNS, LEADS, STAGE_CHANGES

BATCH = 500
ROWS = 60_000
STAGES = ("lead", "subscriber", "mql")


def _stored(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(LEADS)).scalar_one())


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
        history = connection.execute(
            select(LEADS.c.external_id, STAGE_CHANGES.c.from_stage, STAGE_CHANGES.c.to_stage)
            .join(LEADS, LEADS.c.id == STAGE_CHANGES.c.lead_id)
            .order_by(STAGE_CHANGES.c.id)
        ).all()
        runs = connection.execute(select(IMPORT_RUNS.c.status, IMPORT_RUNS.c.inserted)).all()
    assert [tuple(row) for row in history] == [
        (f"L{n:06d}", None, STAGES[n % 3]) for n in range(stored)
    ]
    assert [tuple(run) for run in runs] == [("running", 0)]
