"""A relay slow to answer the end of DATA (docs/email.md, "Timeouts").

A relay answers the final "." after its end-of-data checks (postfix's
``smtpd_end_of_data_restrictions = sleep 30``, a content filter), and queues the message
whether or not the client still waits. The reply is waited for up to
``mail.smtp.data_done_timeout``, not ``mail.smtp.timeout``: the message arrives once. Without a
reply by then the outcome is unknown: the row is retried with the same Message-ID, its error
says so, and ``outbox_outcome_unknown`` is logged.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from structlog.testing import capture_logs

from leadflow.clock import SettableClock
from leadflow.mail.transports import transport_for
from leadflow.outbox.delivery import DrainReport, drain
from leadflow.service.channels import channels_for
from leadflow.settings import Settings
from tests.mail_support import (
    Received,
    ScriptedHandler,
    add_lead,
    add_rep,
    outbox_rows,
    smtp_server,
    write_templates,
)
from tests.test_mail_sender import enqueue


class SlowFinalReply(ScriptedHandler):
    """Queues each message at the end of DATA, then sleeps ``pause`` seconds before it says so,
    as postfix does with an end-of-data ``sleep``: the message is delivered whether or not the
    client still waits for the reply (aiosmtpd cancels a handler whose client left, so the
    message is kept before the sleep)."""

    def __init__(self, pause: float, *, pipelining: bool = True) -> None:
        super().__init__(pipelining=pipelining)
        self.pause = pause
        self.queued = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        self.queued.set()
        await asyncio.sleep(self.pause)
        return "250 2.0.0 queued"


def slow_relay_settings(
    make_settings: Any, tmp_path: Path, port: int, *, data_done_timeout: str
) -> Settings:
    write_templates(tmp_path / "templates")
    settings: Settings = make_settings(
        **{
            "mail.transport": "smtp",
            "mail.from": "Leadflow <leadflow@example.com>",
            "mail.smtp.host": "127.0.0.1",
            "mail.smtp.port": port,
            "mail.smtp.timeout": "1s",
            "mail.smtp.data_done_timeout": data_done_timeout,
            "mail.smtp.rate_per_second": 1000,
            "mail.retry.first_delay": "1m",
        }
    )
    return settings


def send_once(engine: Engine, settings: Settings, clock: SettableClock) -> DrainReport:
    async def run() -> DrainReport:
        transport = transport_for(settings)
        try:
            return await drain(
                engine, settings, clock, channels_for(settings, transport), once=True
            )
        finally:
            await transport.close()

    return asyncio.run(run())


async def stop_during_the_reply(
    engine: Engine, settings: Settings, clock: SettableClock, relay: SlowFinalReply
) -> None:
    """A drain stopped while the relay has a message and sleeps on it, then cancelled after a
    grace of 0.5 s, as the daemon does with what still runs."""
    stop = asyncio.Event()
    transport = transport_for(settings)
    sender = asyncio.create_task(
        drain(engine, settings, clock, channels_for(settings, transport), once=False, stop=stop)
    )
    assert await asyncio.to_thread(relay.queued.wait, 10)
    stop.set()
    done, _ = await asyncio.wait([sender], timeout=0.5)
    assert not done
    sender.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sender


@pytest.fixture
def lead(engine: Engine, clock: SettableClock) -> int:
    return add_lead(engine, clock.now(), owner_id=add_rep(engine, clock.now()))


@pytest.mark.usefixtures("lead")
class TestSlowFinalReply:
    @pytest.mark.parametrize("pipelining", [True, False])
    def test_a_reply_slower_than_timeout_is_waited_for_and_the_email_arrives_once(
        self,
        engine: Engine,
        make_settings: Any,
        tmp_path: Path,
        clock: SettableClock,
        pipelining: bool,
    ) -> None:
        # 2.5 s to answer the end of DATA: past twice mail.smtp.timeout (what bounded the whole
        # transaction before), within data_done_timeout.
        relay = SlowFinalReply(2.5, pipelining=pipelining)
        with smtp_server(relay) as port:
            settings = slow_relay_settings(make_settings, tmp_path, port, data_done_timeout="4s")
            row = enqueue(engine, settings, clock, key="mql:L-1:slow")
            with capture_logs() as logs:
                report = send_once(engine, settings, clock)
        assert (report.sent, report.retried) == (1, 0)
        assert [(r.id, r.status, r.attempts, r.last_error) for r in outbox_rows(engine)] == [
            (row, "sent", 1, None)
        ]
        assert len(relay.received) == 1
        assert not [e for e in logs if e["event"] in ("outbox_retry", "outbox_outcome_unknown")]

    def test_no_reply_within_data_done_timeout_is_an_unknown_outcome_retried_with_its_id(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        relay = SlowFinalReply(2.5)
        with smtp_server(relay) as port:
            settings = slow_relay_settings(make_settings, tmp_path, port, data_done_timeout="1s")
            row = enqueue(engine, settings, clock, key="mql:L-1:lost")
            [message_id] = [r.message_id for r in outbox_rows(engine)]
            with capture_logs() as logs:
                report = send_once(engine, settings, clock)
            assert (report.sent, report.retried) == (0, 1)
            error = (
                "outcome unknown: no reply to the end of DATA within 1s "
                f"(mail.smtp.data_done_timeout); the relay may have delivered {message_id}"
            )
            [(status, attempts, last_error)] = [
                (r.status, r.attempts, r.last_error) for r in outbox_rows(engine)
            ]
            assert (status, attempts, last_error) == ("pending", 1, error)
            [unknown] = [e for e in logs if e["event"] == "outbox_outcome_unknown"]
            assert (unknown["outbox_id"], unknown["error"], unknown["log_level"]) == (
                row,
                error,
                "warning",
            )
            assert not [e for e in logs if e["event"] == "outbox_retry"]
            assert len(relay.received) == 1  # the relay delivers it all the same
            relay.pause = 0.0
            clock.advance(timedelta(minutes=2))
            assert send_once(engine, settings, clock).sent == 1
        # The documented duplicate: two copies, one Message-ID for the receiver to drop one by.
        assert [r.message["Message-ID"] for r in relay.received] == [message_id, message_id]
        # The sent row keeps the unknown outcome of the attempt before: a copy may have arrived.
        assert [(r.status, r.attempts, r.last_error) for r in outbox_rows(engine)] == [
            ("sent", 2, error)
        ]


@pytest.mark.usefixtures("lead")
def test_a_stop_past_its_grace_leaves_a_row_waiting_for_its_reply_sending_until_its_lease(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """docs/email.md, "Stopping while the relay owes a reply": the daemon cancels the sender
    after ``scheduler.shutdown_grace``; the row keeps its lease, so nothing sends it again
    before the lease ends, and then it is sent with the same Message-ID."""
    relay = SlowFinalReply(3.0)
    with smtp_server(relay) as port:
        settings = slow_relay_settings(make_settings, tmp_path, port, data_done_timeout="5s")
        row = enqueue(engine, settings, clock, key="mql:L-1:stop")

        with capture_logs() as logs:
            asyncio.run(stop_during_the_reply(engine, settings, clock, relay))
        [unknown] = [e for e in logs if e["event"] == "outbox_outcome_unknown"]
        assert unknown["error"] == "stopped while waiting for the reply to the end of DATA"
        [message_id] = [r.message_id for r in outbox_rows(engine)]
        assert unknown["message_id"] == message_id
        lease_until = clock.now() + settings.mail.lease
        assert [
            (r.id, r.status, r.attempts, r.claimed_until.replace(tzinfo=None))
            for r in outbox_rows(engine)
        ] == [(row, "sending", 1, lease_until.replace(tzinfo=None))]
        relay.pause = 0.0
        assert send_once(engine, settings, clock).claimed == 0  # leased: not sent beside it
        clock.advance(settings.mail.lease + timedelta(seconds=1))
        assert send_once(engine, settings, clock).sent == 1
    assert [r.message["Message-ID"] for r in relay.received] == [message_id, message_id]


@pytest.mark.usefixtures("lead")
def test_leadflow_send_stopped_while_a_reply_is_owed_exits_within_the_grace(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock, store_url: str
) -> None:
    """``leadflow send`` on SIGTERM waited for every delivery in flight to end: with a relay
    owing its reply for ``data_done_timeout`` (10 minutes by default) it did not stop for that
    long. It gives them ``scheduler.shutdown_grace``, as the daemon does, then exits 0 with what
    it did; the row keeps its lease (the test above says what becomes of it)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    relay = SlowFinalReply(60.0)
    with smtp_server(relay) as port:
        settings = slow_relay_settings(make_settings, tmp_path, port, data_done_timeout="2m")
        row = enqueue(engine, settings, clock, key="mql:L-1:send-stop")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
        env.update(
            LEADFLOW_DATABASE__URL=store_url,
            LEADFLOW_MAIL__TRANSPORT="smtp",
            LEADFLOW_MAIL__FROM="Leadflow <leadflow@example.com>",
            LEADFLOW_MAIL__SMTP__HOST="127.0.0.1",
            LEADFLOW_MAIL__SMTP__PORT=str(port),
            LEADFLOW_MAIL__SMTP__TIMEOUT="1s",
            LEADFLOW_MAIL__SMTP__DATA_DONE_TIMEOUT="2m",
            LEADFLOW_SCHEDULER__SHUTDOWN_GRACE="1s",
            LEADFLOW_LOG__LEVEL="warning",
        )
        (tmp_path / "config.yaml").write_text("", encoding="utf-8")
        sender = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("leadflow")),
                "-c",
                str(tmp_path / "config.yaml"),
                "send",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert relay.queued.wait(30), "the relay never got the message"
            stopped_at = time.monotonic()
            sender.send_signal(signal.SIGTERM)
            out, err = sender.communicate(timeout=30)
            took = time.monotonic() - stopped_at
        finally:
            if sender.poll() is None:
                sender.kill()
    assert sender.returncode == 0, err
    assert took < 1.0 + 5.0, took
    assert out == "sent 0, retry later 0, failed 0 (transport smtp)\n"
    assert "Traceback" not in err
    [sending] = outbox_rows(engine)
    assert (sending.id, sending.status, sending.attempts) == (row, "sending", 1)
    assert sending.claimed_until is not None
    assert err.splitlines()[-1] == (
        "stopped past scheduler.shutdown_grace (1s): 1 message(s) in flight stay sending until "
        f"{sending.claimed_until.isoformat()}, then are sent again with the same Message-ID"
    )


@pytest.mark.usefixtures("lead")
def test_a_stop_past_its_grace_hands_back_what_waited_for_a_connection(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """Two workers, one connection: the second message waits for the connection while the
    first waits for the relay's reply. Cancelled past the grace, the first stays ``sending``
    (the relay has it), the second never went out: it is handed back at once, not left for its
    lease (15 minutes by default) as it was."""
    relay = SlowFinalReply(5.0)
    with smtp_server(relay) as port:
        settings = slow_relay_settings(make_settings, tmp_path, port, data_done_timeout="10s")
        settings = settings.model_copy(
            update={
                "mail": settings.mail.model_copy(
                    update={
                        "concurrency": 2,
                        "smtp": settings.mail.smtp.model_copy(update={"connections": 1}),
                    }
                )
            }
        )
        first = enqueue(engine, settings, clock, key="mql:L-1:first")
        second = enqueue(engine, settings, clock, key="mql:L-1:second")

        with capture_logs() as logs:
            asyncio.run(stop_during_the_reply(engine, settings, clock, relay))
    rows = {r.id: r for r in outbox_rows(engine)}
    assert len(relay.received) == 1
    sent_first = relay.received[0].message["Message-ID"] == rows[first].message_id
    in_flight, waited = (first, second) if sent_first else (second, first)
    # Which worker got the one connection is the scheduler's choice; what reached the relay
    # is exactly the message still leased.
    assert [r.message["Message-ID"] for r in relay.received] == [rows[in_flight].message_id]
    assert (rows[in_flight].status, rows[in_flight].attempts) == ("sending", 1)
    assert (rows[waited].status, rows[waited].attempts, rows[waited].claimed_until) == (
        "pending",
        0,
        None,
    )
    assert [e["released"] for e in logs if e["event"] == "outbox_claims_released"] == [1]
