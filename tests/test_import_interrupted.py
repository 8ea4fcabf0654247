"""``leadflow status`` tells a killed import from a running one.

Pins (an outside tester's find): ``leadflow import leads big.jsonl`` killed with ``kill -9``
left its ``import_runs`` row ``running`` with no finish time, and status said ``running`` for it
forever. The run now records its process (host and id); status shows a run whose process is gone
on this host as ``interrupted``. The row itself stays as the killed process left it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from import_support import write
from sqlalchemy import Engine, insert, select

from leadflow.cli import main
from leadflow.store.tables import IMPORT_RUNS

ROWS = 200_000


def _runs(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        query = select(
            IMPORT_RUNS.c.status, IMPORT_RUNS.c.finished_at, IMPORT_RUNS.c.host, IMPORT_RUNS.c.pid
        ).order_by(IMPORT_RUNS.c.id)
        return [tuple(row) for row in connection.execute(query)]


def _last_leads_import(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["-c", str(config), "status", "--format", "json"]) == 0
    found: dict[str, object] = json.loads(capsys.readouterr().out)["last_imports"]["leads"]
    return found


@contextmanager
def _importing(
    engine: Engine, store_url: str, tmp_path: Path
) -> Iterator[tuple[Path, Path, subprocess.Popen[bytes]]]:
    """A ``leadflow import leads`` process of ROWS lines, once its run is recorded: (config,
    file, process); killed at the end if the test left it running."""
    config = write(
        tmp_path, "config.yaml", f"database:\n  url: {store_url}\nimport:\n  batch_size: 500\n"
    )
    lines = "".join(f'{{"external_id": "L{n:06d}", "stage": "lead"}}\n' for n in range(ROWS))
    path = write(tmp_path, "big.jsonl", lines)
    leadflow = str(Path(sys.executable).with_name("leadflow"))
    command = [leadflow, "-c", str(config), "import", "leads", str(path)]
    errors = (tmp_path / "import.err").open("wb")  # what the import said, for a failure's report
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
    try:
        deadline = time.monotonic() + 120
        while not _runs(engine):
            assert process.poll() is None, "the import ended before the test could stop it"
            assert time.monotonic() < deadline, "the run was not recorded within 120 s"
            time.sleep(0.01)
        yield config, path, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        errors.close()


@pytest.mark.slow
def test_a_killed_import_shows_as_interrupted(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _importing(engine, store_url, tmp_path) as (config, path, process):
        assert _last_leads_import(config, capsys)["status"] == "running"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    assert _runs(engine) == [("running", None, socket.gethostname(), process.pid)]
    shown = _last_leads_import(config, capsys)
    assert (shown["file"], shown["finished_at"], shown["status"]) == (
        str(path),
        None,
        "interrupted",
    )
    assert main(["-c", str(config), "status"]) == 0
    table = capsys.readouterr().out
    assert "big.jsonl  -         interrupted" in table, table


@pytest.mark.slow
def test_an_import_stopped_with_ctrl_c_is_recorded_interrupted(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGINT (Ctrl-C) reaches the import as KeyboardInterrupt: it recorded the run ``failed``,
    where a killed one shows ``interrupted``; it is ``interrupted``, with its finish time."""
    with _importing(engine, store_url, tmp_path) as (config, _path, process):
        os.kill(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    [(status, finished_at, host, pid)] = _runs(engine)
    said = (tmp_path / "import.err").read_text(encoding="utf-8", errors="replace")
    assert (status, finished_at is not None, host, pid) == (
        "interrupted",
        True,
        socket.gethostname(),
        process.pid,
    ), said[-3000:]
    assert _last_leads_import(config, capsys)["status"] == "interrupted"


def _run(engine: Engine, host: str | None, pid: int | None) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(IMPORT_RUNS).values(
                kind="leads",
                file="leads.csv",
                started_at=datetime(2026, 11, 30, tzinfo=UTC),
                status="running",
                host=host,
                pid=pid,
            )
        )


@pytest.mark.parametrize(
    ("host", "pid", "expected"),
    [
        (socket.gethostname(), os.getpid(), "running"),  # alive here
        ("another-host", 2**22 + 1, "running"),  # cannot be looked up from here
        (None, None, "running"),  # recorded before the process was
    ],
    # Named, not by their values: each xdist worker has its own pid, and workers must
    # collect the same test ids.
    ids=["alive-here", "another-host", "not-recorded"],
)
def test_a_run_whose_process_cannot_be_known_gone_shows_as_running(
    engine: Engine,
    store_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    host: str | None,
    pid: int | None,
    expected: str,
) -> None:
    config = write(tmp_path, "config.yaml", f"database:\n  url: {store_url}\n")
    _run(engine, host, pid)
    assert _last_leads_import(config, capsys)["status"] == expected
