"""The sender against a real SMTP server: exact messages, retries, failures, reclaimed leases."""

from __future__ import annotations

import asyncio
import json
import mailbox
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from mail_support import (
    ScriptedHandler,
    add_lead,
    add_rep,
    outbox_rows,
    smtp_server,
    write_templates,
)
from sqlalchemy import Engine, select
from structlog.testing import capture_logs

from leadflow.clock import SettableClock
from leadflow.mail.channel import suppress_flagged_leads
from leadflow.mail.context import email_context, unsubscribe_url
from leadflow.mail.enqueue import enqueue_email
from leadflow.mail.templates import TemplateCatalog
from leadflow.mail.transports.maildir import MaildirTransport
from leadflow.mail.transports.smtp import SmtpTransport
from leadflow.outbox.delivery import DrainReport, drain, retry_delay
from leadflow.outbox.store import _due_ids, claim_due, outbox_lines
from leadflow.service.channels import channels_for, drain_configured
from leadflow.settings import Settings
from leadflow.store.database import WRITE_OPTION, transaction
from leadflow.store.models import Lead, Rep
from leadflow.store.tables import AUDIT
from tests.conftest import T0


@pytest.fixture
def handler() -> ScriptedHandler:
    return ScriptedHandler()


@pytest.fixture
def smtp_port(handler: ScriptedHandler) -> Iterator[int]:
    with smtp_server(handler) as port:
        yield port


@pytest.fixture
def settings(make_settings: Any, tmp_path: Path, smtp_port: int) -> Settings:
    write_templates(tmp_path / "templates")
    built: Settings = make_settings(
        **{
            "mail.transport": "smtp",
            "mail.from": "Leadflow <leadflow@example.com>",
            "mail.smtp.host": "127.0.0.1",
            "mail.smtp.port": smtp_port,
            "mail.smtp.timeout": "2s",
            "mail.smtp.rate_per_second": 1000,
            "mail.retry.first_delay": "1m",
            "mail.retry.max_delay": "10m",
            "mail.retry.give_up_after": "1h",
        }
    )
    return built


def enqueue(
    engine: Engine, settings: Settings, clock: SettableClock, *, key: str, marketing: bool = False
) -> int:
    catalog = TemplateCatalog(settings.path(settings.paths.templates), settings)
    with transaction(engine) as session:
        lead = session.query(Lead).order_by(Lead.id).first()
        rep = session.query(Rep).order_by(Rep.id).first()
        assert lead is not None
        assert rep is not None
        result = enqueue_email(
            session,
            key=key,
            template="nurture" if marketing else "notify",
            context=email_context(settings, lead=lead, rep=rep, owner=rep),
            to=(lead.email or "") if marketing else f"{rep.name} <{rep.email}>",
            category="marketing" if marketing else "operational",
            now=clock.now(),
            catalog=catalog,
            settings=settings,
            lead_id=lead.id,
        )
        return result.outbox_id


@pytest.fixture
def people(engine: Engine, clock: SettableClock) -> int:
    rep_id = add_rep(engine, clock.now())
    return add_lead(engine, clock.now(), owner_id=rep_id, timezone="UTC")


def send_once(engine: Engine, settings: Settings, clock: SettableClock) -> DrainReport:
    return asyncio.run(drain_configured(engine, settings, clock, once=True))


def states(engine: Engine) -> list[tuple[int, str, int, str | None]]:
    return [(r.id or 0, r.status, r.attempts, r.last_error) for r in outbox_rows(engine)]


@pytest.mark.usefixtures("people")
class TestDelivery:
    """A rendered message arrives as multipart/alternative with exactly the right headers."""

    def test_operational_message_arrives_exactly(
        self, engine: Engine, settings: Settings, clock: SettableClock, handler: ScriptedHandler
    ) -> None:
        outbox_id = enqueue(engine, settings, clock, key="mql:L-1")
        report = send_once(engine, settings, clock)
        assert (report.claimed, report.sent, report.retried, report.failed) == (1, 1, 0, 0)
        (received,) = handler.received
        assert (received.mail_from, received.rcpt_tos) == (
            "leadflow@example.com",
            ["anna@example.com"],
        )
        message = received.message
        row = outbox_rows(engine)[0]
        assert [(k, str(v)) for k, v in message.items()] == [
            ("From", "Leadflow <leadflow@example.com>"),
            ("To", "Anna Berg <anna@example.com>"),
            ("Subject", "New MQL: Jo Doe"),
            ("Date", format_datetime(clock.now())),
            ("Message-ID", row.message_id),
            ("MIME-Version", "1.0"),
            ("Content-Type", message["Content-Type"]),
        ]
        assert message.get_content_type() == "multipart/alternative"
        text, html = message.iter_parts()  # type: ignore[misc]
        assert text.get_content_type() == "text/plain"
        assert (
            text.get_content() == "Hi Anna,\nJo Doe is yours: https://crm.example.com/leads/L-1\n"
        )
        assert html.get_content_type() == "text/html"
        assert html.get_content() == "<p>Hi Anna, <b>Jo Doe</b> is yours.</p>\n"
        assert (row.id, row.status, row.sent_at, row.attempts) == (
            outbox_id,
            "sent",
            clock.now(),
            1,
        )

    def test_marketing_message_carries_list_unsubscribe(
        self, engine: Engine, settings: Settings, clock: SettableClock, handler: ScriptedHandler
    ) -> None:
        # An unsubscribe page that answers: the placeholder link gets no header.
        page = "https://crm.example.com/unsubscribe?lead={external_id}&token={token}"
        settings = settings.model_copy(
            update={"mail": settings.mail.model_copy(update={"unsubscribe_url": page})}
        )
        enqueue(engine, settings, clock, key="nurture:L-1:0", marketing=True)
        send_once(engine, settings, clock)
        message = handler.received[0].message
        link = unsubscribe_url(settings, "L-1")
        assert message["List-Unsubscribe"] == f"<{link}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message.get_content_type() == "text/plain"
        assert message.get_content() == f"Read on.\nUnsubscribe: {link}\n"

    def test_the_same_key_enqueued_twice_sends_one_message(
        self, engine: Engine, settings: Settings, clock: SettableClock, handler: ScriptedHandler
    ) -> None:
        enqueue(engine, settings, clock, key="mql:L-1")
        send_once(engine, settings, clock)
        enqueue(engine, settings, clock, key="mql:L-1")
        report = send_once(engine, settings, clock)
        assert report.claimed == 0
        assert [row.idempotency_key for row in outbox_rows(engine)] == ["mql:L-1"]
        assert [received.rcpt_tos for received in handler.received] == [["anna@example.com"]]


@pytest.mark.usefixtures("people")
class TestTransientFailures:
    """4xx replies and dropped connections are retried after the backoff, delivered once."""

    @pytest.mark.parametrize(
        "script",
        [["421 4.3.0 try later", "451 4.7.1 greylisted"], ["drop", "451 4.3.0 busy"]],
        ids=["421-451", "drop-mid-data"],
    )
    def test_retried_after_backoff_then_delivered_once(
        self,
        engine: Engine,
        settings: Settings,
        clock: SettableClock,
        handler: ScriptedHandler,
        script: list[str],
    ) -> None:
        handler.script = list(script)
        outbox_id = enqueue(engine, settings, clock, key="mql:L-1")
        first = send_once(engine, settings, clock)
        row = outbox_rows(engine)[0]
        assert (first.retried, row.status, row.attempts) == (1, "pending", 1)
        assert clock.now() + timedelta(seconds=30) <= row.next_attempt_at
        assert row.next_attempt_at <= clock.now() + timedelta(minutes=1)
        assert send_once(engine, settings, clock).claimed == 0  # not due yet

        clock.advance(timedelta(minutes=1))
        second = send_once(engine, settings, clock)
        row = outbox_rows(engine)[0]
        assert (second.retried, row.status, row.attempts) == (1, "pending", 2)
        assert row.last_error is not None
        assert row.last_error.startswith("451 4.")

        clock.advance(timedelta(minutes=2))
        third = send_once(engine, settings, clock)
        assert third.sent == 1
        # The attempt before the one that went through stays on the sent row: its history.
        assert states(engine) == [(outbox_id, "sent", 3, script[1])]
        assert handler.data_commands == 3
        assert [r.message["Subject"] for r in handler.received] == ["New MQL: Jo Doe"]

    def test_first_error_text_is_kept(
        self, engine: Engine, settings: Settings, clock: SettableClock, handler: ScriptedHandler
    ) -> None:
        handler.script = ["421 4.3.0 try later"]
        outbox_id = enqueue(engine, settings, clock, key="mql:L-1")
        send_once(engine, settings, clock)
        assert states(engine) == [(outbox_id, "pending", 1, "421 4.3.0 try later")]

    def test_gives_up_after_the_schedule_spans_give_up_after(
        self, engine: Engine, settings: Settings, clock: SettableClock, handler: ScriptedHandler
    ) -> None:
        handler.script = ["451 4.3.0 busy"] * 20
        outbox_id = enqueue(engine, settings, clock, key="mql:L-1")
        for _ in range(20):
            send_once(engine, settings, clock)
            clock.advance(timedelta(minutes=10))
        # schedule 1m, 2m, 4m, 8m, 10m, 10m, 10m, 10m, 10m: the 9th attempt spans the hour
        error = "gave up after 9 attempts over 1h: 451 4.3.0 busy"
        assert states(engine) == [(outbox_id, "failed", 9, error)]
        assert handler.received == []

    def test_retries_are_warnings_from_the_third_attempt(
        self, engine: Engine, settings: Settings, clock: SettableClock, handler: ScriptedHandler
    ) -> None:
        """A relay refusing every attempt logged only info lines: one greylisting retry is
        routine, the third attempt in a row failing is worth a warning."""
        handler.script = ["451 4.7.1 greylisted"] * 4
        enqueue(engine, settings, clock, key="mql:L-1")
        with capture_logs() as logs:
            for _ in range(4):
                send_once(engine, settings, clock)
                clock.advance(timedelta(minutes=10))
        retries = [(e["attempts"], e["log_level"]) for e in logs if e["event"] == "outbox_retry"]
        assert retries == [(1, "info"), (2, "info"), (3, "warning"), (4, "warning")]

    def test_a_local_maildir_error_is_a_warning_at_once(
        self, engine: Engine, settings: Settings, clock: SettableClock, tmp_path: Path
    ) -> None:
        """A maildir that cannot be written (here: its folder is a file, ENOTDIR; full or
        read-only alike) waits for no one: its first retry is a warning."""
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("")
        outbox_id = enqueue(engine, settings, clock, key="mql:L-1")
        channels = channels_for(settings, MaildirTransport(blocker / "box"))
        with capture_logs() as logs:
            asyncio.run(drain(engine, settings, clock, channels, once=True))
        retries = [e for e in logs if e["event"] == "outbox_retry"]
        assert [(e["outbox_id"], e["attempts"], e["log_level"]) for e in retries] == [
            (outbox_id, 1, "warning")
        ]
        assert retries[0]["error"] == (
            f"cannot write {outbox_rows(engine)[0].message_id} into the maildir {blocker / 'box'}: "
            "Not a directory"
        )


@pytest.mark.usefixtures("people")
class TestPermanentFailures:
    """A 5xx fails the message at once, is not retried, and the error is kept to show."""

    def test_550_fails_without_retry(
        self, engine: Engine, settings: Settings, clock: SettableClock, handler: ScriptedHandler
    ) -> None:
        handler.script = ["550 5.6.0 message refused"]
        outbox_id = enqueue(engine, settings, clock, key="mql:L-1")
        report = send_once(engine, settings, clock)
        assert (report.failed, report.failures) == (1, [(outbox_id, "550 5.6.0 message refused")])
        clock.advance(timedelta(days=1))
        assert send_once(engine, settings, clock).claimed == 0
        assert states(engine) == [(outbox_id, "failed", 1, "550 5.6.0 message refused")]
        assert handler.data_commands == 1

    def test_a_rejected_marketing_recipient_is_a_hard_bounce(
        self,
        engine: Engine,
        settings: Settings,
        clock: SettableClock,
        handler: ScriptedHandler,
        people: int,
    ) -> None:
        handler.reject["jo@acme.example"] = "550 5.1.1 no such user"
        first = enqueue(engine, settings, clock, key="nurture:L-1:0", marketing=True)
        report = send_once(engine, settings, clock)
        assert report.hard_bounced_leads == [people]
        with transaction(engine) as session:
            lead = session.get(Lead, people)
            assert lead is not None
            assert lead.hard_bounced is True
        second = enqueue(engine, settings, clock, key="nurture:L-1:1", marketing=True)
        rows = outbox_rows(engine)
        assert [(r.id, r.status, r.status_reason, r.last_error) for r in rows] == [
            (first, "failed", None, "550 5.1.1 no such user (recipient jo@acme.example)"),
            (second, "suppressed", "hard_bounced", None),
        ]


RELAY_REFUSES = (
    "the relay refuses leadflow itself, not the recipient: {reply}; check mail.smtp (host, "
    "port, username, password) and mail.from, and that the relay lets this host send "
    "(Postfix: mynetworks, SMTP AUTH, its sender restrictions)"
)


def send_seeded(engine: Engine, settings: Settings, clock: SettableClock, seed: int) -> DrainReport:
    """One drain through a real SMTP transport with a seeded jitter: the retry time is exact."""
    return asyncio.run(
        drain_through(engine, settings, clock, SmtpTransport(settings.mail.smtp), seed)
    )


async def drain_through(
    engine: Engine, settings: Settings, clock: SettableClock, transport: SmtpTransport, seed: int
) -> DrainReport:
    channels = channels_for(settings, transport)
    try:
        return await drain(engine, settings, clock, channels, once=True, rng=random.Random(seed))
    finally:
        await transport.close()


def lead_flags(engine: Engine, lead_id: int) -> tuple[bool, bool, bool]:
    with transaction(engine) as session:
        lead = session.get(Lead, lead_id)
        assert lead is not None
        return (lead.hard_bounced, lead.unsubscribed, lead.do_not_email)


@pytest.mark.usefixtures("people")
class TestRelayRefusals:
    """A relay refusing leadflow itself (a 5.7.x policy reply, its sender refused at MAIL) is
    no bounce: the lead keeps its flags, the email waits for a retry with the reply and what
    to check, and a 5.1.1 at RCPT still hard-bounces (finding H1)."""

    @pytest.mark.parametrize(
        ("refuse", "reply"),
        [
            (
                "rcpt",
                "554 5.7.1 <jo@acme.example>: Relay access denied (recipient jo@acme.example)",
            ),
            ("mail", "553 5.7.1 Sender address rejected"),
            (
                "rcpt",
                "554 5.7.1 <leadflow@example.com>: Sender address rejected: sender not allowed"
                " (recipient jo@acme.example)",
            ),
            (
                "rcpt",
                "550 5.1.8 <leadflow@example.com>: Sender address rejected: Domain not"
                " found (recipient jo@acme.example)",
            ),
        ],
        ids=["relay-access-denied", "sender-at-mail", "sender-at-rcpt", "sender-domain-5.1.8"],
    )
    def test_a_policy_refusal_is_retried_and_the_lead_untouched(
        self,
        engine: Engine,
        settings: Settings,
        clock: SettableClock,
        handler: ScriptedHandler,
        people: int,
        refuse: str,
        reply: str,
    ) -> None:
        answer = reply.split(" (recipient ", maxsplit=1)[0]
        if refuse == "rcpt":
            handler.reject["jo@acme.example"] = answer
        else:
            handler.refuse_sender = answer
        first = enqueue(engine, settings, clock, key="nurture:L-1:0", marketing=True)
        with capture_logs() as logs:
            report = send_seeded(engine, settings, clock, seed=7)
        assert (report.retried, report.failed, report.hard_bounced_leads) == (1, 0, [])
        assert lead_flags(engine, people) == (False, False, False)
        error = RELAY_REFUSES.format(reply=reply)
        retry_at = clock.now() + retry_delay(1, settings.mail.retry, random.Random(7))
        rows = outbox_rows(engine)
        assert [(r.id, r.status, r.status_reason, r.attempts, r.last_error) for r in rows] == [
            (first, "pending", None, 1, error)
        ]
        assert rows[0].next_attempt_at == retry_at
        # The outage is told once (tests/test_relay_outage_log.py); the attempt at debug level.
        refused = [e for e in logs if e["event"] == "outbox_relay_refused"]
        assert [(e["log_level"], e["outbox_id"], e["attempts"], e["error"]) for e in refused] == [
            ("debug", first, 1, error)
        ]
        failing = [e for e in logs if e["event"] == "outbox_relay_failing"]
        assert [(e["log_level"], e["reason"], e["outbox_id"], e["error"]) for e in failing] == [
            ("warning", "refused", first, error)
        ]
        assert [e["event"] for e in logs if e["event"].startswith("outbox_")].count(
            "outbox_failed"
        ) == 0
        # ``leadflow outbox`` lists why it waits: the relay's reply and what to check.
        with transaction(engine) as session:
            (line,) = outbox_lines(session, failed_only=False)
        assert (line.id, line.status, line.attempts, line.detail) == (first, "pending", 1, error)
        # More marketing for the lead is queued, not suppressed.
        second = enqueue(engine, settings, clock, key="nurture:L-1:1", marketing=True)
        assert [(r.id, r.status) for r in outbox_rows(engine)] == [
            (first, "pending"),
            (second, "pending"),
        ]
        # The relay fixed, the retry delivers both; the lead was never flagged.
        handler.reject.clear()
        handler.refuse_sender = None
        clock.advance(timedelta(minutes=1))
        assert send_once(engine, settings, clock).sent == 2
        assert [(r.id, r.status, r.attempts) for r in outbox_rows(engine)] == [
            (first, "sent", 2),
            (second, "sent", 1),
        ]
        assert lead_flags(engine, people) == (False, False, False)

    def test_a_relay_refusing_for_good_is_given_up_after_the_schedule(
        self,
        engine: Engine,
        settings: Settings,
        clock: SettableClock,
        handler: ScriptedHandler,
        people: int,
    ) -> None:
        """Retries end by give_up_after as other transient failures do, and the failed
        message says why; the lead is still not flagged."""
        handler.reject["jo@acme.example"] = "554 5.7.1 <jo@acme.example>: Relay access denied"
        outbox_id = enqueue(engine, settings, clock, key="nurture:L-1:0", marketing=True)
        for _ in range(12):
            send_once(engine, settings, clock)
            clock.advance(timedelta(minutes=10))
        reply = "554 5.7.1 <jo@acme.example>: Relay access denied (recipient jo@acme.example)"
        error = "gave up after 9 attempts over 1h: " + RELAY_REFUSES.format(reply=reply)
        assert states(engine) == [(outbox_id, "failed", 9, error)]
        assert lead_flags(engine, people) == (False, False, False)

    def test_a_connection_kept_from_before_the_refusal_is_not_reused(
        self, engine: Engine, settings: Settings, clock: SettableClock, handler: ScriptedHandler
    ) -> None:
        """A relay fixed by a reload still serves an old session with its old settings: after
        a policy refusal the next attempt opens a new connection."""
        handler.reject["jo@acme.example"] = "554 5.7.1 <jo@acme.example>: Relay access denied"
        enqueue(engine, settings, clock, key="nurture:L-1:0", marketing=True)
        enqueue(engine, settings, clock, key="nurture:L-1:1", marketing=True)
        transport = SmtpTransport(settings.mail.smtp.model_copy(update={"connections": 1}))
        report = asyncio.run(drain_through(engine, settings, clock, transport, seed=1))
        assert (report.retried, transport.connections_opened) == (2, 2)

    def test_an_unknown_user_still_hard_bounces(
        self,
        engine: Engine,
        settings: Settings,
        clock: SettableClock,
        handler: ScriptedHandler,
        people: int,
    ) -> None:
        handler.reject["jo@acme.example"] = "550 5.1.1 <jo@acme.example>: User unknown"
        first = enqueue(engine, settings, clock, key="nurture:L-1:0", marketing=True)
        report = send_seeded(engine, settings, clock, seed=7)
        assert (report.failed, report.hard_bounced_leads) == (1, [people])
        assert lead_flags(engine, people) == (True, False, False)
        rows = outbox_rows(engine)
        assert [(r.id, r.status, r.attempts, r.last_error) for r in rows] == [
            (
                first,
                "failed",
                1,
                "550 5.1.1 <jo@acme.example>: User unknown (recipient jo@acme.example)",
            )
        ]


class TestHardBounceAudit:
    """Marking a lead ``hard_bounced`` writes a ``hard_bounced`` audit row (source ``sender``)
    with the message, the relay's code and its reply, in the transaction that flags the lead:
    one row per change of the flag, however many of the lead's messages bounce."""

    def test_a_hard_bounce_is_audited_once_per_change_of_the_flag(
        self,
        engine: Engine,
        settings: Settings,
        clock: SettableClock,
        handler: ScriptedHandler,
        people: int,
        store_url: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        from leadflow.cli import main
        from leadflow.mail.hard_bounces import clear_hard_bounce

        one_by_one = settings.model_copy(
            update={"mail": settings.mail.model_copy(update={"concurrency": 1})}
        )
        handler.reject["jo@acme.example"] = "550 5.1.1 <jo@acme.example>: User unknown"
        first = enqueue(engine, one_by_one, clock, key="nurture:L-1:0", marketing=True)
        second = enqueue(engine, one_by_one, clock, key="nurture:L-1:1", marketing=True)
        report = send_once(engine, one_by_one, clock)
        reply = "550 5.1.1 <jo@acme.example>: User unknown (recipient jo@acme.example)"
        assert (report.failed, report.hard_bounced_leads) == (2, [people, people])
        assert states(engine) == [(first, "failed", 1, reply), (second, "failed", 1, reply)]
        first_id = outbox_rows(engine)[0].message_id
        assert audit_of(engine) == [
            (
                T0,
                "sender",
                "hard_bounced",
                people,
                {"outbox_id": first, "message_id": first_id, "code": 550, "reply": reply},
            )
        ]
        # ``leadflow audit`` says why the lead stopped receiving mail.
        config = tmp_path / "audit.yaml"
        config.write_text(f"database:\n  url: {store_url}\n", encoding="utf-8")
        capsys.readouterr()  # the sender's log lines
        assert main(["--config", str(config), "audit", "--lead", "L-1", "--format", "jsonl"]) == 0
        (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
        assert (line["action"], line["source"], line["lead"], line["params"]) == (
            "hard_bounced",
            "sender",
            "L-1",
            {"outbox_id": first, "message_id": first_id, "code": 550, "reply": reply},
        )
        # Cleared and bounced again: the flag changed twice more, so two rows more.
        clock.advance(timedelta(hours=1))
        with transaction(engine) as session:
            assert clear_hard_bounce(session, "L-1", clock.now(), "mailbox restored") is True
        third = enqueue(engine, one_by_one, clock, key="nurture:L-1:2", marketing=True)
        handler.reject["jo@acme.example"] = "550 5.2.1 mailbox disabled"
        send_once(engine, one_by_one, clock)
        third_id = outbox_rows(engine)[2].message_id
        assert [(at, action, params) for at, _, action, _, params in audit_of(engine)[1:]] == [
            (clock.now(), "bounce_cleared", {"reason": "mailbox restored"}),
            (
                clock.now(),
                "hard_bounced",
                {
                    "outbox_id": third,
                    "message_id": third_id,
                    "code": 550,
                    "reply": "550 5.2.1 mailbox disabled (recipient jo@acme.example)",
                },
            ),
        ]
        assert lead_flags(engine, people) == (True, False, False)

    @pytest.mark.usefixtures("people")
    def test_a_policy_refusal_or_an_operational_email_writes_no_row(
        self,
        engine: Engine,
        settings: Settings,
        clock: SettableClock,
        handler: ScriptedHandler,
        people: int,
    ) -> None:
        """The relay refusing leadflow (5.7.1) flags no lead, and a refused operational email
        is no hard bounce: neither is audited as one."""
        handler.reject["jo@acme.example"] = "554 5.7.1 <jo@acme.example>: Relay access denied"
        handler.reject["anna@example.com"] = "550 5.1.1 no such user"
        enqueue(engine, settings, clock, key="nurture:L-1:0", marketing=True)
        enqueue(engine, settings, clock, key="mql:L-1")
        report = send_once(engine, settings, clock)
        assert (report.retried, report.failed, report.hard_bounced_leads) == (1, 1, [])
        assert audit_of(engine) == []
        assert lead_flags(engine, people) == (False, False, False)


def audit_of(engine: Engine) -> list[tuple[Any, ...]]:
    """The audit's rows, oldest first: (at, source, action, lead_id, params)."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                AUDIT.c.at, AUDIT.c.source, AUDIT.c.action, AUDIT.c.lead_id, AUDIT.c.params
            ).order_by(AUDIT.c.id)
        ).all()
    return [(at.replace(tzinfo=UTC) if at.tzinfo is None else at, *rest) for at, *rest in rows]


@pytest.mark.usefixtures("people")
class TestLeases:
    """A sender that dies after claiming loses its rows when the lease expires; sent once."""

    def test_abandoned_claim_is_reclaimed_after_the_lease(
        self, engine: Engine, settings: Settings, clock: SettableClock, handler: ScriptedHandler
    ) -> None:
        outbox_id = enqueue(engine, settings, clock, key="mql:L-1")
        claimed = claim_due(engine, clock.now(), settings.mail.lease, "dead-sender", 10)
        assert [m.id for m in claimed] == [outbox_id]
        assert send_once(engine, settings, clock).claimed == 0  # still leased

        clock.advance(settings.mail.lease + timedelta(seconds=1))
        report = send_once(engine, settings, clock)
        assert (report.claimed, report.sent) == (1, 1)
        assert states(engine) == [(outbox_id, "sent", 2, None)]
        assert len(handler.received) == 1
        assert send_once(engine, settings, clock).claimed == 0

    def test_two_senders_never_claim_the_same_row(
        self, engine: Engine, settings: Settings, clock: SettableClock
    ) -> None:
        ids = [enqueue(engine, settings, clock, key=f"k{i}") for i in range(6)]
        first = claim_due(engine, clock.now(), settings.mail.lease, "a", 4)
        second = claim_due(engine, clock.now(), settings.mail.lease, "b", 4)
        assert [m.id for m in first] == ids[:4]
        assert [m.id for m in second] == ids[4:]

    def test_an_expired_lease_is_reclaimed_before_pending_rows(
        self, engine: Engine, settings: Settings, clock: SettableClock
    ) -> None:
        early = enqueue(engine, settings, clock, key="k-early")
        clock.advance(timedelta(minutes=1))
        late = enqueue(engine, settings, clock, key="k-late")
        assert [m.id for m in claim_due(engine, clock.now(), settings.mail.lease, "a", 1)] == [
            early
        ]
        clock.advance(settings.mail.lease + timedelta(seconds=1))
        # The expired lease on ``early`` comes before the pending ``late``.
        first = claim_due(engine, clock.now(), settings.mail.lease, "b", 1)
        second = claim_due(engine, clock.now(), settings.mail.lease, "b", 1)
        assert ([m.id for m in first], [m.id for m in second]) == ([early], [late])
        assert [(m.id, m.attempts) for m in first + second] == [(early, 2), (late, 1)]

    @pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
    def test_a_claim_locks_only_the_rows_it_takes(
        self, engine: Engine, settings: Settings, clock: SettableClock
    ) -> None:
        """PostgreSQL: while one sender's claim is open, another claims the next due row.

        The first claim takes one row, an expired lease; it must not also lock the first pending
        row, which is the second sender's to take. Row locks are what keep senders apart there
        (SQLite has one writer at a time).
        """
        expired = enqueue(engine, settings, clock, key="k-expired")
        claim_due(engine, clock.now(), settings.mail.lease, "dead", 1)
        clock.advance(settings.mail.lease + timedelta(seconds=1))
        pending = [enqueue(engine, settings, clock, key=f"k{i}") for i in range(2)]
        with engine.execution_options(**{WRITE_OPTION: True}).connect() as holding, holding.begin():
            assert _due_ids(holding, clock.now(), 1) == [expired]
            other = claim_due(engine, clock.now(), settings.mail.lease, "b", 1)
            assert [m.id for m in other] == [pending[0]]


class TestLoop:
    """Without ``once`` the sender keeps polling until told to stop."""

    @pytest.mark.usefixtures("people")
    def test_loop_delivers_new_rows_and_stops(
        self, engine: Engine, settings: Settings, clock: SettableClock, handler: ScriptedHandler
    ) -> None:
        fast = settings.model_copy(
            update={
                "mail": settings.mail.model_copy(update={"poll_interval": timedelta(seconds=0.05)})
            }
        )

        async def scenario() -> DrainReport:
            stop = asyncio.Event()
            task = asyncio.create_task(drain_configured(engine, fast, clock, once=False, stop=stop))
            await asyncio.to_thread(enqueue, engine, settings, clock, key="late")
            async with asyncio.timeout(10):
                while not handler.received:  # noqa: ASYNC110 (the server thread fills it)
                    await asyncio.sleep(0.02)
            stop.set()
            return await task

        report = asyncio.run(scenario())
        assert report.sent == 1
        assert [r.message["Subject"] for r in handler.received] == ["New MQL: Jo Doe"]


class TestMaildir:
    """The embedded transport writes each message as a parseable .eml into a real maildir."""

    def test_messages_land_in_new_once_each(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        write_templates(tmp_path / "templates")
        settings: Settings = make_settings(**{"mail.transport": "maildir"})
        rep_id = add_rep(engine, clock.now())
        add_lead(engine, clock.now(), owner_id=rep_id)
        enqueue(engine, settings, clock, key="a")
        enqueue(engine, settings, clock, key="b", marketing=True)
        report = send_once(engine, settings, clock)
        assert report.sent == 2
        folder = tmp_path / "state" / "maildir"
        names = sorted(p.name for p in (folder / "new").iterdir())
        assert all(name.endswith(".leadflow.eml") for name in names)
        box = mailbox.Maildir(folder, create=False)
        subjects = sorted(str(message["Subject"]) for message in box)
        assert subjects == ["Hello Jo", "New MQL: Jo Doe"]
        assert list((folder / "tmp").iterdir()) == []

        # The same row delivered again (the at-least-once window) replaces its file.
        transport = MaildirTransport(folder)
        rows = {r.idempotency_key: r for r in outbox_rows(engine)}
        asyncio.run(
            transport.deliver(
                b"Subject: again\r\n\r\nx\r\n",
                sender="leadflow@example.com",
                recipients=["a@b.example"],
                message_id=rows["a"].message_id,
            )
        )
        assert sorted(p.name for p in (folder / "new").iterdir()) == names

    def test_a_full_disk_leaves_no_half_written_file(self, tmp_path: Path) -> None:
        """Found with the maildir on a full tmpfs: each failed attempt left its empty temporary
        file in ``tmp/``, one more per retry. A file-size limit makes the same real ENOSPC-like
        failure (EFBIG) in a child process, after the temporary file was created."""
        folder = tmp_path / "maildir"
        script = f"""
import asyncio, resource, signal
from pathlib import Path
from leadflow.errors import DeliveryError
from leadflow.mail.transports.maildir import MaildirTransport
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (10, 10))
try:
    asyncio.run(MaildirTransport(Path({str(folder)!r})).deliver(
        b"Subject: x\\r\\n\\r\\n" + b"x" * 1000, sender="a@b.example",
        recipients=["c@d.example"], message_id="<m1@leadflow>"))
except DeliveryError as exc:
    print(exc, exc.permanent)
"""
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        assert done.stdout == (
            f"cannot write <m1@leadflow> into the maildir {folder}: File too large False\n"
        )
        assert list((folder / "tmp").iterdir()) == []
        assert list((folder / "new").iterdir()) == []


def test_the_sender_deletes_stale_maildir_temporaries_at_start(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """A delivery killed (``kill -9``) between writing ``tmp/`` and renaming into ``new/``
    left its file forever. At the sender's start a ``tmp/`` file 36 hours old or more is
    deleted (the maildir convention); younger ones, and ``new/``, are left alone."""
    import os

    settings: Settings = make_settings(**{"mail.maildir": "box"})
    folder = tmp_path / "box"
    for sub in ("tmp", "new"):
        (folder / sub).mkdir(parents=True)
    now = clock.now().timestamp()
    ages = {"tmp/dead": 36 * 3600, "tmp/older": 90 * 3600, "tmp/writing": 35 * 3600}
    ages["new/delivered"] = 90 * 3600
    for name, age in ages.items():
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, (now - age, now - age))
    with capture_logs() as logs:
        asyncio.run(drain_configured(engine, settings, clock, once=True))
    assert sorted(p.name for p in (folder / "tmp").iterdir()) == ["writing"]
    assert sorted(p.name for p in (folder / "new").iterdir()) == ["delivered"]
    removed = [e for e in logs if e["event"] == "maildir_tmp_removed"]
    assert removed == [
        {"event": "maildir_tmp_removed", "log_level": "info", "folder": str(folder), "removed": 2}
    ]


def test_drain_accepts_an_injected_transport_and_rng(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """``drain`` is the seam the daemon uses: any transport, any random source for jitter."""
    write_templates(tmp_path / "templates")
    settings: Settings = make_settings()
    rep_id = add_rep(engine, clock.now())
    add_lead(engine, clock.now(), owner_id=rep_id)
    enqueue(engine, settings, clock, key="a")
    channels = channels_for(settings, MaildirTransport(tmp_path / "box"))
    report = asyncio.run(drain(engine, settings, clock, channels, once=True, rng=random.Random(1)))
    assert report.sent == 1


@pytest.mark.usefixtures("people")
class TestLateUnsubscribe:
    """A lead flagged after its marketing email was queued never receives it."""

    @pytest.mark.parametrize(
        ("flag", "reason"),
        [
            ("unsubscribed", "unsubscribed"),
            ("do_not_email", "do_not_email"),
            ("hard_bounced", "hard_bounced"),
        ],
    )
    def test_flag_set_while_queued_suppresses_at_claim(
        self,
        engine: Engine,
        settings: Settings,
        clock: SettableClock,
        handler: ScriptedHandler,
        flag: str,
        reason: str,
    ) -> None:
        marketing = enqueue(engine, settings, clock, key="nurture:L-1:0", marketing=True)
        notice = enqueue(engine, settings, clock, key="mql:L-1")
        with transaction(engine) as session:
            lead = session.query(Lead).order_by(Lead.id).one()
            setattr(lead, flag, True)  # as an import or POST /v1/leads would
        report = send_once(engine, settings, clock)
        assert [(row.id, row.status, row.status_reason) for row in outbox_rows(engine)] == [
            (marketing, "suppressed", reason),
            (notice, "sent", None),
        ]
        assert report.claimed == 1
        assert [received.rcpt_tos for received in handler.received] == [["anna@example.com"]]

    def test_a_batch_of_flagged_rows_does_not_end_the_claim(
        self, engine: Engine, settings: Settings, clock: SettableClock
    ) -> None:
        """Candidates are checked a batch at a time; a batch all suppressed is not "nothing due".

        Two flags set: the reason is the first of unsubscribed, do_not_email, hard_bounced.
        """
        marketing = [
            enqueue(engine, settings, clock, key=f"nurture:L-1:{i}", marketing=True)
            for i in range(3)
        ]
        notice = enqueue(engine, settings, clock, key="mql:L-1")
        with transaction(engine) as session:
            lead = session.query(Lead).order_by(Lead.id).one()
            lead.hard_bounced = True
            lead.unsubscribed = True
        screens = [suppress_flagged_leads]
        claimed = claim_due(engine, clock.now(), settings.mail.lease, "a", 2, screens)
        assert [m.id for m in claimed] == [notice]
        assert [(row.id, row.status, row.status_reason) for row in outbox_rows(engine)] == [
            *((row_id, "suppressed", "unsubscribed") for row_id in marketing),
            (notice, "sending", None),
        ]


@pytest.mark.usefixtures("people")
def test_a_running_sender_reclaims_a_dead_neighbours_claim(
    engine: Engine, settings: Settings, clock: SettableClock, handler: ScriptedHandler
) -> None:
    """A replica killed beside a running one on the same host: the running sender hands its
    claim back within RECLAIM_EVERY_POLLS polls and sends it, once, with its Message-ID,
    instead of waiting out the 15-minute lease (found with two daemons, one killed)."""
    from leadflow.outbox.claimers import new_sender_id
    from leadflow.outbox.delivery import RECLAIM_EVERY_POLLS

    fast = settings.model_copy(
        update={"mail": settings.mail.model_copy(update={"poll_interval": timedelta(seconds=0.02)})}
    )
    neighbour_process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host, _pid, _drain, namespace = new_sender_id().split(":")
    neighbour = f"{host}:{neighbour_process.pid}:0a1b2c3d:{namespace}"
    outbox_id = enqueue(engine, settings, clock, key="mql:L-1")
    claimed = claim_due(engine, clock.now(), settings.mail.lease, neighbour, 10)
    assert [message.id for message in claimed] == [outbox_id]

    async def scenario() -> tuple[DrainReport, list[dict[str, Any]]]:
        stop = asyncio.Event()
        with capture_logs() as logs:
            task = asyncio.create_task(drain_configured(engine, fast, clock, once=False, stop=stop))
            await asyncio.sleep(0.2)  # running, the neighbour alive: its claim is left alone
            assert not handler.received
            neighbour_process.kill()
            await asyncio.to_thread(neighbour_process.wait)
            async with asyncio.timeout(RECLAIM_EVERY_POLLS * 0.02 * 10 + 5):
                while not handler.received:  # noqa: ASYNC110 (the server thread fills it)
                    await asyncio.sleep(0.02)
            stop.set()
            return await task, logs

    try:
        report, logs = asyncio.run(scenario())
    finally:
        neighbour_process.kill()
        neighbour_process.wait()
    assert report.sent == 1
    [received] = handler.received
    [row] = outbox_rows(engine)
    assert (row.status, row.attempts, received.message["Message-ID"]) == (
        "sent",
        2,
        row.message_id,
    )
    assert [
        (entry["claimed_by"], entry["pid"], entry["reclaimed"])
        for entry in logs
        if entry["event"] == "outbox_dead_claims_reclaimed"
    ] == [(neighbour, neighbour_process.pid, 1)]
