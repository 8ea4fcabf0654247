"""Clients that misbehave on the wire, against ``leadflow daemon`` (a real process, a raw socket).

Pins (an outside tester's finds): a client closing its connection before sending the whole body
its ``Content-Length`` announced put uvicorn's ``Exception in ASGI application`` and Starlette's
``ClientDisconnect`` traceback in the log at level error, on ``POST /v1/leads``,
``/v1/activities`` and the public one-click ``POST /t/unsubscribe``; now the log has the one
line ``http_client_disconnected`` naming the path, and nothing is written. A connection that
never finished its headers was held open for ever (75 s and more: slow loris on the public
``/t/`` links); now it is closed ``http.header_timeout`` after it opened (or after its previous
answer), even while it trickles header bytes, and a request whose headers came in time may take
longer over its body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import select
import socket
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.mail_support import free_port
from tests.replica_support import Replica, make_project, wait_until

TOKEN = "client-faults-token"
SECRET = "client-faults-unsubscribe-secret"
HEADER_TIMEOUT_S = 2.0
CONFIG = """\
mail:
  transport: maildir
  maildir: state/maildir
  from: "leadflow <leadflow@example.com>"
calendar:
  timezone: UTC
http:
  header_timeout: 2s
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


class Daemon:
    def __init__(self, replica: Replica, store: Path) -> None:
        self.replica = replica
        self.store = store
        self.port = replica.http_port
        self.base = f"http://127.0.0.1:{self.port}"

    def log_lines(self) -> list[str]:
        return self.replica.log_path.read_text(encoding="utf-8").splitlines()

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.store) as connection:
            return connection.execute(query).fetchall()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Daemon]:
    folder = tmp_path_factory.mktemp("client-faults") / "project"
    store = folder / "state" / "leadflow.db"
    store.parent.mkdir(parents=True)
    store.write_bytes(sqlite_template.read_bytes())
    replica = Replica(
        make_project(folder, CONFIG, RULE),
        f"sqlite:///{store}",
        command=(str(Path(sys.executable).with_name("leadflow")), "daemon"),
        LEADFLOW_HTTP__PORT=str(free_port()),
        LEADFLOW_HTTP__TOKEN=TOKEN,
        LEADFLOW_MAIL__UNSUBSCRIBE_SECRET=SECRET,
    )
    started = Daemon(replica, store)
    try:
        wait_until(
            lambda: httpx.get(f"{started.base}/readyz", timeout=2).status_code == 200,
            "the daemon ready",
            retry_on=(httpx.TransportError,),
        )
        answer = httpx.post(
            f"{started.base}/v1/leads",
            json={"external_id": "L1", "email": "ann@acme.test"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert answer.json()["inserted"] == 1
        yield started
        assert replica.terminate() == 0
    finally:
        replica.kill()


def _cut_short(port: int, head: str, sent: bytes, declared: int) -> None:
    """``head`` and a ``Content-Length`` of ``declared`` bytes, then only ``sent``, then close."""
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(f"{head}Content-Length: {declared}\r\n\r\n".encode() + sent)
        time.sleep(0.3)  # the request is reading its body when the client goes


def _new_lines(daemon: Daemon, before: int) -> list[str]:
    """The log's lines after the first ``before``, once the server has logged the request."""

    def logged() -> list[str] | None:
        lines = daemon.log_lines()[before:]
        done = any("http_client_disconnected" in line or "Traceback" in line for line in lines)
        return lines if done else None

    wait_until(logged, "the disconnect logged", timeout=10)
    time.sleep(0.3)  # anything else the request logs
    return daemon.log_lines()[before:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/leads", b'{"external_id":"CL2"}'),
        ("/v1/activities", b'{"lead":"L1","type":"call","occurred_at":"2026-11-30T10:00:00Z"}'),
    ],
)
def test_a_body_cut_short_on_the_api_is_one_info_line_and_nothing_written(
    daemon: Daemon, path: str, body: bytes
) -> None:
    before = len(daemon.log_lines())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\n"
    )
    _cut_short(daemon.port, head, body, len(body) + 30)
    lines = _new_lines(daemon, before)
    assert "Traceback" not in "\n".join(lines)
    events = [json.loads(line) for line in lines]
    assert [
        (e["event"], e["level"], e.get("method"), e.get("path"), e.get("reason")) for e in events
    ] == [
        (
            "http_client_disconnected",
            "info",
            "POST",
            path,
            "the client closed the connection before sending the whole request body",
        )
    ]
    assert daemon.rows("SELECT external_id FROM leads ORDER BY external_id") == [("L1",)]
    assert daemon.rows("SELECT count(*) FROM activities") == [(0,)]


@pytest.mark.slow
def test_a_one_click_unsubscribe_cut_short_is_one_info_line_and_the_lead_stays_subscribed(
    daemon: Daemon,
) -> None:
    token = hmac.new(SECRET.encode(), b"L1", hashlib.sha256).hexdigest()[:32]
    before = len(daemon.log_lines())
    head = (
        f"POST /t/unsubscribe?lead=L1&token={token} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
    )
    _cut_short(daemon.port, head, b"List-Unsu", 500)
    lines = _new_lines(daemon, before)
    assert "Traceback" not in "\n".join(lines)
    events = [json.loads(line) for line in lines]
    assert [(e["event"], e["level"], e.get("path")) for e in events] == [
        ("http_client_disconnected", "info", "/t/unsubscribe")
    ]
    assert token not in "\n".join(lines)
    assert daemon.rows("SELECT external_id, unsubscribed FROM leads") == [("L1", 0)]
    assert daemon.rows("SELECT count(*) FROM activities") == [(0,)]
    # The token was valid: the whole request unsubscribes.
    answer = httpx.post(
        f"{daemon.base}/t/unsubscribe",
        params={"lead": "L1", "token": token},
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    assert daemon.rows("SELECT external_id, unsubscribed FROM leads") == [("L1", 1)]


def _closed_after(client: socket.socket, started: float, trickle: bytes = b"") -> float:
    """Seconds from ``started`` until the server closes ``client`` (at most 10), sending one
    byte of ``trickle`` every 0.25 s meanwhile."""
    for byte in [trickle[i : i + 1] for i in range(len(trickle))] or [b""] * 40:
        if byte:
            try:
                client.sendall(byte)
            except OSError:
                return time.monotonic() - started
        readable, _, _ = select.select([client], [], [], 0.25)
        if readable:
            try:
                if client.recv(1024) == b"":
                    return time.monotonic() - started
            except ConnectionResetError:
                return time.monotonic() - started
        if time.monotonic() - started > 10:
            break
    return float("inf")


@pytest.mark.slow
def test_headers_not_finished_within_the_header_timeout_close_the_connection(
    daemon: Daemon,
) -> None:
    # Headers begun and never ended.
    with socket.create_connection(("127.0.0.1", daemon.port)) as client:
        started = time.monotonic()
        client.sendall(b"GET /t/o/x.gif HTTP/1.1\r\nHost: x\r\n")
        took = _closed_after(client, started)
    assert HEADER_TIMEOUT_S - 0.1 <= took < HEADER_TIMEOUT_S + 2.0, took

    # A header byte every 0.25 s: every byte counts, the deadline does not move.
    with socket.create_connection(("127.0.0.1", daemon.port)) as client:
        started = time.monotonic()
        took = _closed_after(
            client, started, trickle=b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 60
        )
    assert HEADER_TIMEOUT_S - 0.1 <= took < HEADER_TIMEOUT_S + 2.0, took

    # A kept-alive connection: the next request's headers are held to it, from the answer on.
    with socket.create_connection(("127.0.0.1", daemon.port)) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = client.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
        started = time.monotonic()
        client.sendall(b"GET /healthz HTTP/1.1\r\n")
        took = _closed_after(client, started)
    assert HEADER_TIMEOUT_S - 0.1 <= took < HEADER_TIMEOUT_S + 2.0, took

    # The deadline is on the headers only: a body may take longer.
    body = b'{"external_id":"SLOW1"}'
    with socket.create_connection(("127.0.0.1", daemon.port)) as client:
        client.sendall(
            f"POST /v1/leads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body[:5]
        )
        time.sleep(HEADER_TIMEOUT_S + 1.0)
        client.sendall(body[5:])
        client.settimeout(10)
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1]) == {
        "kind": "leads",
        "received": 1,
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
    }
    assert "Traceback" not in "\n".join(daemon.log_lines())
