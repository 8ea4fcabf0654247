"""``leadflow daemon`` with its HTTP server, as a container runs it: a real process, real SMTP.

Pins: the daemon listens on the configured port; the Dockerfile's HEALTHCHECK command succeeds
against it; reps and leads pushed over HTTP are acted on (an MQL assigned to the pool's rep) and
the assignment email arrives at an SMTP server; /readyz is ready and /metrics counts the
evaluations and the sent email; SIGTERM ends it with exit 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.mail_support import ScriptedHandler, free_port, smtp_server
from tests.replica_support import Replica, make_project, wait_until
from tests.test_container import healthcheck_command

TOKEN = "daemon-test-token"
T = TypeVar("T")

CONFIG = """\
mail:
  transport: smtp
  from: "leadflow <leadflow@example.com>"
  poll_interval: 0.2s
  smtp: {host: 127.0.0.1}
scheduler:
  shutdown_grace: 5s
"""


def wait_for(probe: Callable[[], T], what: str) -> T:
    """:func:`wait_until`, counting a refused HTTP connection (not listening yet) as not yet."""
    return wait_until(probe, what, every=0.1, retry_on=(httpx.TransportError,))


@pytest.fixture
def smtp() -> Iterator[tuple[ScriptedHandler, int]]:
    handler = ScriptedHandler()
    with smtp_server(handler) as port:
        yield handler, port


@pytest.mark.slow
def test_http_push_to_mql_email_metrics_and_sigterm(
    tmp_path: Path, store_url: str, smtp: tuple[ScriptedHandler, int]
) -> None:
    handler, smtp_port = smtp
    port = free_port()
    daemon = Replica(
        make_project(tmp_path, CONFIG),
        store_url,
        command=(str(Path(sys.executable).with_name("leadflow")), "daemon"),
        LEADFLOW_HTTP__PORT=str(port),
        LEADFLOW_HTTP__TOKEN=TOKEN,
        LEADFLOW_MAIL__SMTP__PORT=str(smtp_port),
    )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        wait_for(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, "ready")
        health = subprocess.run(
            healthcheck_command(),
            check=False,
            env=daemon.environment,
            capture_output=True,
            timeout=20,
        )
        assert health.returncode == 0, health.stderr

        reps = [
            {
                "external_id": "r1",
                "name": "Rita Rep",
                "email": "rita@example.com",
                "pools": ["inbound"],
            }
        ]
        assert httpx.post(f"{base}/v1/reps", json=reps, headers=auth).json()["inserted"] == 1
        leads: list[dict[str, Any]] = [
            {"external_id": "L1", "name": "Ann Lee", "email": "ann@acme.test", "score": 75},
            {"external_id": "L2", "name": "Bob Ng", "email": "bob@beta.test", "score": 20},
        ]
        assert httpx.post(f"{base}/v1/leads", json=leads, headers=auth).json()["inserted"] == 2

        def assigned() -> bool:
            lead = httpx.get(f"{base}/v1/leads/L1", headers=auth).json()
            return lead["stage"] == "mql" and lead["owner"] is not None

        wait_for(assigned, "L1 to become an MQL of r1")
        wait_for(lambda: handler.received, "the assignment email")
        [message] = handler.received
        assert message.rcpt_tos == ["rita@example.com"]
        assert "Ann Lee" in message.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        trail = httpx.get(f"{base}/v1/leads/L1", headers=auth).json()["audit"]
        assert [e["action"] for e in trail][:2] == ["stage_changed", "assigned"]
        assert httpx.get(f"{base}/v1/leads/L2", headers=auth).json()["stage"] == "lead"

        def sent_metric() -> str | None:
            text = httpx.get(f"{base}/metrics").text
            return (
                text
                if 'leadflow_outbox_deliveries_total{channel="email",result="sent"} 1.0' in text
                else None
            )

        text = wait_for(sent_metric, "the sent email in /metrics")
        assert 'leadflow_rule_evaluations_total{result="ok",rule_id="hot-leads"}' in text
        assert 'leadflow_outbox_messages{channel="email",status="sent"} 1.0' in text

        assert daemon.terminate(timeout=15) == 0
    finally:
        daemon.kill()
    events = [e["event"] for e in daemon.events()]
    assert "http_listening" in events
    assert events[-1] == "daemon_stopped"


def test_daemon_without_a_token_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """No ``http.token`` and no ``allow_anonymous``: the refusal alone on stderr, no traceback,
    and nothing started (no store file, no log line)."""
    project = make_project(tmp_path, "http: {enabled: true, port: 0, allow_anonymous: false}\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("leadflow")), "daemon"],
        cwd=project,
        env={**environment, "LEADFLOW_LOG__FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        "error: http.token is not set: set LEADFLOW_HTTP__TOKEN (or LEADFLOW_HTTP__TOKEN_FILE), "
        "or set http.allow_anonymous: true for a trial on a private network, "
        "or http.enabled: false to run without the HTTP server\n"
    )
    assert not (project / "state" / "leadflow.db").exists()


@pytest.mark.slow
def test_the_running_daemon_follows_the_dashboard_users_of_config_yaml(
    tmp_path: Path, store_url: str
) -> None:
    """``leadflow daemon`` reads config.yaml's dashboard users again when the file changes: an
    operator lowered to viewer is a viewer on the next click, and a user added signs in, with
    no restart (the header still said "op (operator)" until one)."""
    from argon2 import PasswordHasher

    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    op, new = hasher.hash("op-pass-1"), hasher.hash("new-pass-2")

    def config(role: str, *more: str) -> str:
        users = [f'    op: {{password_hash: "{op}", role: {role}}}', *more]
        return "dashboard:\n  enabled: true\n  users:\n" + "\n".join(users) + "\n"

    port = free_port()
    project = make_project(tmp_path, config("operator"))
    daemon = Replica(
        project,
        store_url,
        command=(str(Path(sys.executable).with_name("leadflow")), "daemon"),
        LEADFLOW_HTTP__PORT=str(port),
        LEADFLOW_HTTP__TOKEN=TOKEN,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, "ready")
        with httpx.Client(base_url=base) as browser:
            login = {"username": "op", "password": "op-pass-1", "next": "/ui/outbox"}
            assert browser.post("/ui/login", data=login).status_code == 303
            assert "op (operator)" in browser.get("/ui/outbox").text
            (project / "config.yaml").write_text(
                config("viewer", f'    new: {{password_hash: "{new}"}}'), encoding="utf-8"
            )
            assert "op (viewer)" in browser.get("/ui/outbox").text
        with httpx.Client(base_url=base) as other:
            login = {"username": "new", "password": "new-pass-2", "next": "/ui/outbox"}
            assert other.post("/ui/login", data=login).status_code == 303
            assert "new (viewer)" in other.get("/ui/outbox").text
        assert daemon.terminate(timeout=15) == 0
    finally:
        daemon.kill()
    [reloaded] = daemon.events("dashboard_users_reloaded")
    assert reloaded["users"] == {"new": "viewer", "op": "viewer"}
