"""CRM updates: a rule's changes are posted, signed, to a real local HTTP server.

Pins: an MQL rule firing queues ``lead.stage_changed`` and ``lead.owner_changed`` webhook rows;
the sender posts each with a signature the receiver can verify from the secret, the timestamp
header and the raw body; a 503 is retried after the backoff and the update is then delivered
exactly once; a 4xx fails the row without retrying; nothing is queued without a webhook URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, insert, select

from leadflow.clock import SettableClock
from leadflow.engine.evaluation import run_rule
from leadflow.engine.runtime import Runtime
from leadflow.mail.transports.maildir import MaildirTransport
from leadflow.outbox.delivery import drain
from leadflow.service.channels import channels_for
from leadflow.settings import Settings
from leadflow.store.tables import LEADS, OUTBOX, REPS
from tests.http_support import REPO

SECRET = "whsec-test"


class Receiver:
    """A CRM stand-in: records each POST; answers the queued statuses first, then 200."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/crm/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver([503, 503, 503, 503])
    yield started
    started.close()


def verified(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """What a CRM does with a delivery: check the signature, then read the JSON."""
    signed = headers["x-leadflow-timestamp"].encode() + b"." + body
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-leadflow-signature"], expected)
    payload: dict[str, Any] = json.loads(body)
    return payload


def settings_for(make_settings: Any, url: str | None) -> Settings:
    settings: Settings = make_settings(
        **{
            "paths.rules": str(REPO / "rules"),
            "paths.templates": str(REPO / "templates"),
            "attributes.leads": {"region": "string"},
            "crm.webhook_url": url,
            "crm.webhook_timeout": "3s",
        }
    )
    crm = settings.crm.model_copy(update={"webhook_secret": SecretStr(SECRET)})
    return settings.model_copy(update={"crm": crm})


def seed(engine: Engine, clock: SettableClock) -> None:
    now = clock.now()
    with engine.begin() as connection:
        connection.execute(
            insert(REPS).values(
                external_id="r1",
                name="Rita Rep",
                email="rita@example.com",
                pools=["inbound"],
                timezone="UTC",
                active=True,
                created_at=now,
                updated_at=now,
            )
        )
        connection.execute(
            insert(LEADS).values(
                external_id="L1",
                email="ann@acme.test",
                score=70,
                stage="lead",
                stage_entered_at=now,
                attributes={},
                created_at=now,
                updated_at=now,
            )
        )


def fire_mql_rule(runtime: Runtime) -> None:
    rule_set = runtime.load_rules()
    rule = rule_set.rule("mql-assignment")
    assert rule is not None
    run_rule(runtime, rule_set, rule, runtime.clock.now())


def webhook_rows(engine: Engine) -> list[tuple[str, str, int]]:
    query = (
        select(OUTBOX.c.subject, OUTBOX.c.status, OUTBOX.c.attempts)
        .where(OUTBOX.c.channel == "webhook")
        .order_by(OUTBOX.c.id)
    )
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]  # type: ignore[misc]


def drain_once(runtime: Runtime, tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "maildir")
    channels = channels_for(runtime.settings, transport)
    asyncio.run(drain(runtime.engine, runtime.settings, runtime.clock, channels, once=True))


class TestCrmWebhook:
    """Rule changes reach the CRM signed, retried on 5xx, once."""

    def test_signed_retried_after_503_and_delivered_once(
        self,
        engine: Engine,
        make_settings: Any,
        clock: SettableClock,
        receiver: Receiver,
        tmp_path: Path,
    ) -> None:
        receiver.statuses[:] = [503, 503]
        runtime = Runtime.build(engine, settings_for(make_settings, receiver.url), clock)
        seed(engine, clock)
        fire_mql_rule(runtime)
        assert webhook_rows(engine) == [
            ("lead.stage_changed", "pending", 0),
            ("lead.owner_changed", "pending", 0),
        ]

        drain_once(runtime, tmp_path)
        assert webhook_rows(engine) == [
            ("lead.stage_changed", "pending", 1),
            ("lead.owner_changed", "pending", 1),
        ]
        clock.advance(timedelta(seconds=31))  # past the first retry delay (30 s, jitter below)
        drain_once(runtime, tmp_path)
        drain_once(runtime, tmp_path)
        assert webhook_rows(engine) == [
            ("lead.stage_changed", "sent", 2),
            ("lead.owner_changed", "sent", 2),
        ]

        assert len(receiver.received) == 4
        payloads = [verified(headers, body) for headers, body in receiver.received]
        first, second = payloads[2], payloads[3]
        assert {p["type"] for p in payloads[:2]} == {"lead.stage_changed", "lead.owner_changed"}
        delivered = {first["type"]: first, second["type"]: second}
        stage = delivered["lead.stage_changed"]
        assert stage["change"] == {"from": "lead", "to": "mql"}
        assert stage["lead"] == {
            "external_id": "L1",
            "stage": "mql",
            "stage_entered_at": "2026-03-02T09:00:00+00:00",
            "owner": None,
            "score": 70,
        }
        assert stage["rule"]["id"] == "mql-assignment"
        assert stage["occurred_at"] == "2026-03-02T09:00:00+00:00"
        # Each update shows the lead as it was right after that change: assigned after staging.
        assert delivered["lead.owner_changed"]["change"] == {"to": "r1"}
        assert delivered["lead.owner_changed"]["lead"]["owner"] == "r1"
        headers = receiver.received[2][0]
        assert headers["content-type"] == "application/json"
        assert headers["x-leadflow-delivery"] == first["id"]
        assert headers["x-leadflow-timestamp"] == str(int(clock.now().timestamp()))

    def test_client_error_fails_without_retry(
        self,
        engine: Engine,
        make_settings: Any,
        clock: SettableClock,
        receiver: Receiver,
        tmp_path: Path,
    ) -> None:
        receiver.statuses[:] = [400, 400]
        runtime = Runtime.build(engine, settings_for(make_settings, receiver.url), clock)
        seed(engine, clock)
        fire_mql_rule(runtime)
        drain_once(runtime, tmp_path)
        clock.advance(timedelta(hours=1))
        drain_once(runtime, tmp_path)
        assert webhook_rows(engine) == [
            ("lead.stage_changed", "failed", 1),
            ("lead.owner_changed", "failed", 1),
        ]
        assert len(receiver.received) == 2

    def test_nothing_queued_without_a_webhook_url(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        runtime = Runtime.build(engine, settings_for(make_settings, None), clock)
        seed(engine, clock)
        fire_mql_rule(runtime)
        assert webhook_rows(engine) == []
