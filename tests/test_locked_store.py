"""A SQLite store another process holds write-locked (``BEGIN EXCLUSIVE`` left open, a long
import, a backup tool) while a command starts: read-only commands still answer, and a command
that must write at start-up says so in one line and exits 3, never a traceback.

Found by the operator walkthrough: `leadflow daemon` (and `status`) started behind
``sqlite3 leadflow.db 'BEGIN EXCLUSIVE;'`` printed SQLAlchemy's traceback and exited 1, because
every command took the write lock at start-up to create the indexed attributes' indexes, even
with none declared.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

LEADFLOW = str(Path(sys.executable).with_name("leadflow"))


def _project(tmp_path: Path, indexed: str) -> tuple[Path, Path]:
    store = tmp_path / "leadflow.db"
    config = tmp_path / "config.yaml"
    # SQLite waits database.connect_timeout for the lock (10 s by default): 1 s is as telling.
    config.write_text(
        f"database:\n  url: sqlite:///{store}\n  connect_timeout: 1s\n"
        f"attributes:\n  leads:\n    region: string\n  indexed: {indexed}\n"
    )
    return config, store


def _leadflow(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [LEADFLOW, "-c", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _create_store(config: Path) -> None:
    """Create and migrate the store the way a user does first: an import (the reading commands
    refuse a store that is not there)."""
    reps = config.with_name("reps.csv")
    reps.write_text("external_id,name,email\nR1,Ann,ann@example.com\n")
    imported = _leadflow(config, "import", "reps", str(reps))
    assert imported.returncode == 0, imported.stderr


@contextmanager
def _write_locked(store: Path) -> Iterator[None]:
    """Another process's open write transaction, as `sqlite3 FILE 'BEGIN EXCLUSIVE;'` holds."""
    holder = sqlite3.connect(store, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.slow
def test_status_answers_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    config, store = _project(tmp_path, "[]")
    _create_store(config)
    with _write_locked(store):
        shown = _leadflow(config, "status", "--format", "json")
    assert (shown.returncode, shown.stderr) == (0, "")
    assert '"total": 0' in shown.stdout


@pytest.mark.slow
def test_a_command_that_must_write_at_start_says_the_store_is_locked(tmp_path: Path) -> None:
    """With an indexed attribute a writing command's start-up must write (CREATE INDEX IF NOT
    EXISTS): after SQLite's busy timeout (database.connect_timeout) it gives up in one line, exit 3 (an external
    system failed). `status` only reads: it creates no index, and answers under the lock."""
    config, store = _project(tmp_path, "[region]")
    _create_store(config)
    with _write_locked(store):
        refused = _leadflow(config, "prune")
        shown = _leadflow(config, "status")
    assert (shown.returncode, shown.stderr) == (0, "")
    assert refused.returncode == 3
    assert refused.stdout == ""
    assert refused.stderr == (
        f"error: cannot create the attribute indexes in the database at sqlite:///{store}: "
        "database is locked\n"
    )
    assert _leadflow(config, "prune").returncode == 0  # the lock gone, it starts again


@pytest.mark.slow
def test_commands_that_write_exit_3_in_one_line_when_the_store_stays_locked(
    tmp_path: Path,
) -> None:
    """`run --once`, `outbox --retry` and `send --once` wait SQLite's busy timeout, then say on
    one line that the store stayed locked, for how long and by which setting, exit 3 (`run
    --once` was a SQLAlchemy traceback, exit 1; then the driver's bare "database is locked")."""
    config, store = _project(tmp_path, "[]")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "hot.yaml").write_text(
        "rules:\n  - id: hot\n    every: 5m\n    when: {field: score, at_least: 60}\n"
        "    actions:\n      - set_stage: mql\n"
    )
    _create_store(config)
    with _write_locked(store), ThreadPoolExecutor(3) as pool:
        # At once: each waits the busy timeout out, one after the other.
        ran, retried, sent = pool.map(
            lambda args: _leadflow(config, *args),
            [("run", "--once"), ("outbox", "--retry", "1"), ("send", "--once")],
        )
    for refused in (ran, retried):
        assert (refused.returncode, refused.stdout) == (3, "")
        assert refused.stderr == (
            "error: the database stayed locked for 1 s (database.connect_timeout): another "
            "process holds its write lock (an import, a backup, a sqlite3 shell left in a "
            "transaction); retry once it has ended\n"
        )
    # The sender names what it could not do, in the driver's words only (it was three lines:
    # SQLAlchemy's [SQL: BEGIN IMMEDIATE] and its help link).
    assert (sent.returncode, sent.stdout) == (3, "")
    assert sent.stderr == "error: cannot claim outbox messages: database is locked\n"


@pytest.mark.slow
def test_a_server_that_is_down_is_named_unreachable(tmp_path: Path) -> None:
    """Found running `leadflow status` while PostgreSQL was down: "cannot migrate the database
    at ...", as if the schema were the problem. A port nothing listens on refuses at once."""
    config = tmp_path / "config.yaml"
    config.write_text("database:\n  url: postgresql://leadflow@127.0.0.1:1/leadflow\n")
    refused = _leadflow(config, "status")
    assert refused.returncode == 3
    assert refused.stdout == ""
    assert refused.stderr.startswith(
        "error: cannot reach the database at postgresql://leadflow@127.0.0.1:1/leadflow: "
        'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused'
    )


def _pg_config(tmp_path: Path, url: str) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: {url}\n")
    return config


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (
            "postgresql://no_such_role_lf@127.0.0.1:5432/test",
            'FATAL: role "no_such_role_lf" does not exist',
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/no_such_database_lf",
            'FATAL: database "no_such_database_lf" does not exist',
        ),
        ("postgresql://postgres@127.0.0.1:99999/test", 'invalid port number: "99999"'),
    ],
)
@pytest.mark.slow
def test_a_url_the_server_refuses_is_the_users_mistake(tmp_path: Path, url: str, said: str) -> None:
    """An operator found a typo'd role or database name reported as "cannot reach the database",
    exit 3, which an orchestrator restarting on external failures retries for ever: the server
    answered, the URL is wrong (exit 1), in one line."""
    refused = _leadflow(_pg_config(tmp_path, url), "status")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.startswith(f"error: database.url {url}: ")
    assert refused.stderr.endswith(
        f"{said}: check its user, password, host, port and database name\n"
    )
    assert refused.stderr.count("\n") == 1


def test_the_daemon_names_the_configured_url_in_a_json_line(tmp_path: Path) -> None:
    """The daemon's error for a database it cannot reach showed SQLAlchemy's
    ``postgresql+psycopg://``, which the user never wrote, as a plain line among JSON ones (a log
    shipper dropped it): it is the ``daemon_not_started`` event, the URL as configured, its
    password hidden, exit 3."""
    config = _pg_config(tmp_path, "postgresql://leadflow:s3cret@127.0.0.1:1/leadflow")
    config.write_text(config.read_text() + "http:\n  enabled: false\n")
    refused = _leadflow(config, "daemon")
    assert (refused.returncode, refused.stdout) == (3, "")
    [line] = [json.loads(text) for text in refused.stderr.splitlines()]
    assert (line["event"], line["level"]) == ("daemon_not_started", "error")
    assert line["error"].startswith(
        "cannot reach the database at postgresql://leadflow:***@127.0.0.1:1/leadflow: "
        'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused'
    )
    assert "s3cret" not in refused.stderr


def test_an_unreachable_server_is_one_line(tmp_path: Path) -> None:
    """psycopg puts its hint on a line of its own; the error is one line."""
    refused = _leadflow(
        _pg_config(tmp_path, "postgresql://leadflow@127.0.0.1:1/leadflow"), "status"
    )
    assert refused.returncode == 3
    assert refused.stderr.count("\n") == 1
    assert refused.stderr.endswith(
        "Connection refused Is the server running on that host and accepting TCP/IP connections?\n"
    )


def test_a_postgres_url_is_libpqs_spelling_of_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """Heroku's, Render's and Fly's DATABASE_URL say postgres://; it was refused as an
    unsupported database."""
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url).set(drivername="postgres").render_as_string(hide_password=False)
    answered = _leadflow(_pg_config(tmp_path, f"'{url}'"), "status")
    assert (answered.returncode, answered.stderr) == (0, "")
    # The session's shared PostgreSQL schema: other tests' leads may be there.
    assert answered.stdout.startswith("leads: ")
