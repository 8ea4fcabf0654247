"""Clients that misbehave on the wire, against ``leadflow daemon`` (a real process, a raw socket).

Pins (an outside tester's finds): a client closing its connection before sending the whole body
its ``Content-Length`` announced put uvicorn's ``Exception in ASGI application`` and Starlette's
``ClientDisconnect`` traceback in the log at level error, on ``POST /v1/leads``,
``/v1/activities`` and the public one-click ``POST /t/unsubscribe``; now the log has the one
line ``http_client_disconnected`` naming the path, and nothing is written. A connection that
never finished its headers was held open for ever (75 s and more: slow loris on the public
``/t/`` links); now it is closed ``http.header_timeout`` after it opened (or after its previous
answer), even while it trickles header bytes, and a request whose headers came in time may take
longer over its body. A body trickled a byte a second (or a chunked one never ended) held its
connection and request for ever too; now a body not all arrived ``http.body_timeout`` after the
headers is answered 408, the connection closed, nothing written, and the log has one warning
``http_body_timeout``.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.mail_support import free_port
from tests.replica_support import Replica, make_project, wait_until

TOKEN = "client-faults-token"
SECRET = "client-faults-unsubscribe-secret"
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 4.0
CONFIG = """\
mail:
  transport: maildir
  maildir: state/maildir
  from: "leadflow <leadflow@example.com>"
calendar:
  timezone: UTC
http:
  header_timeout: 2s
  body_timeout: 4s
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

    # The deadline is on the headers only: a body may take longer (within http.body_timeout).
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


def _answer_to_late_body(
    port: int, head: bytes, later: list[tuple[float, bytes]]
) -> tuple[bytes, float]:
    """Send ``head``, then each of ``later`` at its second after it while no answer has come;
    the answer read until the server closes the connection, and the seconds from ``head`` to
    the close (inf when it is still open after 12 s)."""
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(head)
        started = time.monotonic()
        answer = b""
        while (took := time.monotonic() - started) < 12:
            if not answer and later and took >= later[0][0]:
                client.sendall(later.pop(0)[1])
            readable, _, _ = select.select([client], [], [], 0.05)
            if not readable:
                continue
            try:
                chunk = client.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if chunk == b"":
                return answer, time.monotonic() - started
            answer += chunk
    return answer, float("inf")


def _late(answer: bytes) -> tuple[bytes, dict[bytes, bytes], Any]:
    """The status line, the headers and the JSON body of ``answer``."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines)
    return status, headers, json.loads(body)


@pytest.mark.slow
def test_a_body_not_all_sent_within_the_body_timeout_is_answered_408_and_nothing_written(
    daemon: Daemon,
) -> None:
    """A deadline on the whole body, from the end of the headers: a one-click unsubscribe whose
    body comes a byte a second never leaves a long gap and is cut off all the same, as is a
    chunked body never ended; both get 408 and a closed connection, nothing is written, and
    each is one warning line naming the route, never the token."""
    answer = httpx.post(
        f"{daemon.base}/v1/leads",
        json={"external_id": "L2", "email": "bo@acme.test"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert answer.json()["inserted"] == 1
    token = hmac.new(SECRET.encode(), b"L2", hashlib.sha256).hexdigest()[:32]
    one_click = b"List-Unsubscribe=One-Click"
    unsubscribe = (
        f"POST /t/unsubscribe?lead=L2&token={token} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(one_click)}\r\n\r\n"
    ).encode() + one_click[:5]
    # A byte a second, but for the second around the deadline: 8 bytes are in when it passes.
    trickle = [(float(second), one_click[4 + second : 5 + second]) for second in (1, 2, 3)] + [
        (float(second), one_click[3 + second : 4 + second]) for second in range(5, 12)
    ]
    chunked = (
        f"POST /v1/leads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        '5\r\n{"ext\r\n'
    ).encode()
    before = len(daemon.log_lines())
    with ThreadPoolExecutor(2) as pool:
        trickled = pool.submit(_answer_to_late_body, daemon.port, unsubscribe, trickle)
        unended = pool.submit(_answer_to_late_body, daemon.port, chunked, [])
        answers = [trickled.result(), unended.result()]

    for answer, took in answers:
        assert BODY_TIMEOUT_S - 0.1 <= took < BODY_TIMEOUT_S + 2.0, took
        status, headers, body = _late(answer)
        assert status == b"HTTP/1.1 408 Request Timeout"
        assert (headers[b"connection"], headers[b"content-type"]) == (
            b"close",
            b"application/json",
        )
        assert body == {"detail": "request body not received within 4 s (http.body_timeout)"}

    def logged() -> list[str] | None:
        lines = daemon.log_lines()[before:]
        return lines if sum("http_body_timeout" in line for line in lines) == 2 else None

    lines = wait_until(logged, "the late bodies logged", timeout=10)
    time.sleep(0.3)  # anything else the requests log
    lines = daemon.log_lines()[before:]
    assert "Traceback" not in "\n".join(lines)
    assert token not in "\n".join(lines)
    events = sorted(
        (
            e["event"],
            e["level"],
            e["method"],
            e["path"],
            e["client"],
            e["received_bytes"],
            e["declared_bytes"],
            e["timeout_s"],
        )
        for e in map(json.loads, lines)
    )
    assert events == [
        ("http_body_timeout", "warning", "POST", "/t/unsubscribe", "127.0.0.1", 8, 26, 4.0),
        ("http_body_timeout", "warning", "POST", "/v1/leads", "127.0.0.1", 5, None, 4.0),
    ]
    assert daemon.rows("SELECT external_id, unsubscribed FROM leads WHERE external_id = 'L2'") == [
        ("L2", 0)
    ]
    assert daemon.rows(
        "SELECT count(*) FROM activities JOIN leads ON leads.id = activities.lead_id"
        " WHERE leads.external_id = 'L2'"
    ) == [(0,)]
