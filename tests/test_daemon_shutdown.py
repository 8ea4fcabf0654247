"""Stopping ``leadflow daemon`` (a real process) while a request is running, or while it starts.

Pins (an outside tester's finds): SIGTERM with a slow request in flight gave the client a 500,
the log uvicorn's traceback (``Exception in ASGI application ... CancelledError``) and the
process stayed until the request's thread ended (11.7 s with an 8 s grace; minutes for a very
slow one). Now the process exits 0 within ``scheduler.shutdown_grace`` and a second, the client
gets 503, and the log has the one line ``http_request_cancelled`` naming the request. SIGTERM
during start-up, before the event loop's handlers, ended the process with 143 and no word; now
it logs ``daemon_stopping`` and exits 0.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.mail_support import free_port
from tests.replica_support import Replica, make_project, wait_until

TOKEN = "shutdown-test-token"
GRACE_S = 3.0
CONFIG = """\
mail:
  transport: maildir
  maildir: state/maildir
  from: "leadflow <leadflow@example.com>"
calendar:
  timezone: UTC
scheduler:
  shutdown_grace: 3s
"""
RULE = """\
rules:
  - id: hot-leads
    description: Leads at or above 60 become MQLs.
    every: 1h
    when: {field: score, at_least: 60}
    actions: [{set_stage: mql}]
"""


def _store(tmp_path: Path, template: Path) -> Path:
    target = tmp_path / "project" / "state" / "leadflow.db"
    target.parent.mkdir(parents=True)
    shutil.copy(template, target)
    return target


def _daemon(tmp_path: Path, store: Path, port: int) -> Replica:
    return Replica(
        make_project(tmp_path / "project", CONFIG, RULE),
        f"sqlite:///{store}",
        command=(str(Path(sys.executable).with_name("leadflow")), "daemon"),
        LEADFLOW_HTTP__PORT=str(port),
        LEADFLOW_HTTP__TOKEN=TOKEN,
    )


def _has_open(pid: int, path: Path) -> bool:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if Path(os.readlink(fd)) == path:
                return True
        except OSError:  # closed meanwhile
            continue
    return False


@pytest.mark.slow
def test_sigterm_with_a_request_in_flight_answers_503_and_exits_within_the_grace(
    tmp_path: Path, sqlite_template: Path
) -> None:
    store = _store(tmp_path, sqlite_template)
    port = free_port()
    daemon = _daemon(tmp_path, store, port)
    base = f"http://127.0.0.1:{port}"
    answers: list[Any] = []
    holder = sqlite3.connect(store, isolation_level=None, timeout=30)
    try:
        wait_until(
            lambda: (
                daemon.has("daemon_started")
                and httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            ),
            "the daemon ready",
            retry_on=(httpx.TransportError,),
        )
        # Another writer holds the store: the posted lead waits for it in a worker thread
        # (SQLite's busy timeout is 10 s, longer than the grace).
        holder.execute("BEGIN IMMEDIATE")

        def post() -> None:
            try:
                answers.append(
                    httpx.post(
                        f"{base}/v1/leads",
                        json={"external_id": "L1", "score": 70},
                        headers={"Authorization": f"Bearer {TOKEN}"},
                        timeout=30,
                    )
                )
            except httpx.TransportError as exc:
                answers.append(exc)

        client = threading.Thread(target=post)
        client.start()
        time.sleep(1.0)
        assert answers == []  # still waiting for the store
        stopped_at = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.process.wait(timeout=30)
        took = time.monotonic() - stopped_at
        client.join(timeout=30)
    finally:
        holder.close()
        daemon.kill()
    assert code == 0
    assert took < GRACE_S + 2.0, took
    [answer] = answers
    assert isinstance(answer, httpx.Response)
    assert (answer.status_code, answer.json()) == (
        503,
        {"detail": "the server is stopping; retry later"},
    )
    text = daemon.log_path.read_text(encoding="utf-8")
    assert "Traceback" not in text
    assert "Exception in ASGI application" not in text
    cancelled = daemon.events("http_request_cancelled")
    assert [(e["method"], e["path"], e["answered"]) for e in cancelled] == [
        ("POST", "/v1/leads", 503)
    ]
    assert daemon.has("daemon_stopping")


@pytest.mark.slow
def test_sigterm_during_start_up_logs_the_stop_and_exits_0(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """The signal arrives before the event loop runs (while the command builds the store's
    runtime): the early handler stops the start-up with ``daemon_stopping``, exit 0."""
    store = _store(tmp_path, sqlite_template)
    daemon = _daemon(tmp_path, store, free_port())
    # Once the command has opened the store (it then builds the runtime, well before the event
    # loop runs and takes the signals over).
    wait_until(lambda: _has_open(daemon.pid, store), "the store opened", every=0.002)
    daemon.process.send_signal(signal.SIGTERM)
    code = daemon.process.wait(timeout=20)
    assert code == 0, daemon.log_path.read_text(encoding="utf-8")
    stopping = daemon.events("daemon_stopping")
    assert [(e["reason"], e["during"]) for e in stopping] == [("SIGTERM", "start-up")]
    assert not daemon.has("daemon_started")
    assert "Traceback" not in daemon.log_path.read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_second_sigterm_during_start_up_stops_it_the_same_way(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """A rolling restart that signals twice, 20 ms apart, while the store's runtime is built:
    one ``daemon_stopping``, exit 0, no traceback (it was a traceback and exit 1, or 143)."""
    store = _store(tmp_path, sqlite_template)
    daemon = _daemon(tmp_path, store, free_port())
    wait_until(lambda: _has_open(daemon.pid, store), "the store opened", every=0.002)
    daemon.process.send_signal(signal.SIGTERM)
    time.sleep(0.02)
    if daemon.process.poll() is None:
        daemon.process.send_signal(signal.SIGTERM)
    code = daemon.process.wait(timeout=20)
    log = daemon.log_path.read_text(encoding="utf-8")
    assert code == 0, log
    stopping = daemon.events("daemon_stopping")
    assert [(e["reason"], e["during"]) for e in stopping] == [("SIGTERM", "start-up")]
    assert [e["during"] for e in daemon.events("daemon_stopped")] == ["start-up"]
    assert "Traceback" not in log


@pytest.mark.slow
def test_repeated_sigterm_while_stopping_logs_and_exits_0(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """Once started, the event loop logged a repeated SIGTERM; but after it gave the signals
    back (while the daemon closed its store and threads, 1.5-2 s into a short run) a repeat met
    the default action: exit 143. SIGTERM every 2 ms until the process is gone: exit 0, one
    ``daemon_stopping``, the repeats logged, no traceback."""
    store = _store(tmp_path, sqlite_template)
    daemon = _daemon(tmp_path, store, free_port())
    wait_until(lambda: daemon.has("daemon_started"), "the daemon started")
    while daemon.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # exited meanwhile
            daemon.process.send_signal(signal.SIGTERM)
        time.sleep(0.002)
    code = daemon.process.wait(timeout=20)
    log = daemon.log_path.read_text(encoding="utf-8")
    assert code == 0, log
    assert [e["reason"] for e in daemon.events("daemon_stopping")] == ["SIGTERM"]
    assert daemon.has("daemon_stopped")
    repeats = daemon.events("daemon_stop_already_requested")
    assert repeats
    assert {e["reason"] for e in repeats} == {"SIGTERM"}
    assert "Traceback" not in log


def test_a_stop_before_the_settings_are_read_logs_json_off_a_terminal() -> None:
    """A SIGTERM in the command's first tenth of a second, before the settings configure the
    log: the handler's two lines were structlog's console format (``[info     ] daemon_stopping``),
    which a log collector cannot parse; they are JSON like every other line off a terminal."""
    import json
    import subprocess

    code = (
        "import signal\n"
        "from leadflow.cli.daemon_command import _stop_start_up\n"
        "_stop_start_up(signal.SIGTERM, None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")},
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(e["event"], e.get("reason"), e["during"]) for e in events] == [
        ("daemon_stopping", "SIGTERM", "start-up"),
        ("daemon_stopped", None, "start-up"),
    ]
