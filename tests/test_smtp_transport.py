"""The SMTP transport's own mail transaction against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from mail_support import ScriptedHandler, smtp_server

from leadflow.errors import DeliveryError
from leadflow.mail.transports.smtp import RELAY_REFUSAL_HINT, SmtpTransport
from leadflow.mail_settings import SmtpSettings

MESSAGE = (
    b"From: leadflow@example.com\r\nTo: jo@acme.example\r\nSubject: Hi\r\n\r\n"
    b"Hello\r\n.a line starting with a dot\r\n"
)


@pytest.fixture
def handler() -> ScriptedHandler:
    return ScriptedHandler()


@pytest.fixture
def transport(handler: ScriptedHandler) -> Iterator[SmtpTransport]:
    with smtp_server(handler) as port:
        settings = SmtpSettings.model_validate(
            {"host": "127.0.0.1", "port": port, "connections": 1, "timeout": "2s"}
        )
        yield SmtpTransport(settings)


def send(transport: SmtpTransport, *messages: tuple[str, bytes]) -> list[str]:
    """Deliver each (recipient, message) in turn over the pool; the errors, "" for success."""

    async def run() -> list[str]:
        errors = []
        for recipient, message in messages:
            try:
                await transport.deliver(
                    message, sender="leadflow@example.com", recipients=[recipient], message_id="m"
                )
            except DeliveryError as exc:
                kind = "permanent" if exc.permanent else "transient"
                errors.append(f"{type(exc).__name__} {kind}: {exc}")
            else:
                errors.append("")
        await transport.close()
        return errors

    return asyncio.run(run())


@pytest.mark.parametrize("pipelining", [True, False])
def test_the_envelope_and_the_bytes_arrive_exactly(
    transport: SmtpTransport, handler: ScriptedHandler, pipelining: bool
) -> None:
    """MAIL FROM carries the sender and the message's size, RCPT TO the one recipient, and the
    server receives the message byte for byte (a leading dot stuffed and unstuffed); MAIL,
    RCPT and DATA arrive in one go where the server advertises PIPELINING, one by one where
    it does not."""
    handler.pipelining = pipelining
    assert send(transport, ("jo@acme.example", MESSAGE), ("jo@acme.example", MESSAGE)) == ["", ""]
    assert len(handler.received) == 2
    for received in handler.received:
        assert received.mail_from == "leadflow@example.com"
        assert received.rcpt_tos == ["jo@acme.example"]
        assert received.mail_options == [f"SIZE={len(MESSAGE)}"]
        assert received.content == MESSAGE
    assert handler.pipelined == [pipelining, pipelining]
    assert transport.connections_opened == 1


def test_a_refused_sender_is_the_relay_refusing_leadflow_and_drops_the_connection(
    transport: SmtpTransport, handler: ScriptedHandler
) -> None:
    """A 553 to MAIL in a pipelined group: its RCPT and DATA replies are read too. The relay
    refuses leadflow's own sender: no recipient is at fault, so it is retried (transient), and
    the next message opens a new session, one that sees a reloaded relay's settings."""
    handler.refuse_sender = "553 5.7.1 sender not allowed"
    errors = send(transport, ("jo@acme.example", MESSAGE), ("jo@acme.example", MESSAGE))
    assert errors == [
        "DeliveryError transient: the relay refuses leadflow itself, not the recipient: "
        f"553 5.7.1 sender not allowed; {RELAY_REFUSAL_HINT}",
        "",
    ]
    assert handler.pipelined == [True, True]
    assert [r.rcpt_tos for r in handler.received] == [["jo@acme.example"]]
    assert transport.connections_opened == 2


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("550 5.1.1 <x>: User unknown", "RecipientRejectedError permanent: {reply}"),
        ("550 5.1.10 null MX", "RecipientRejectedError permanent: {reply}"),
        ("550 5.2.1 mailbox disabled", "RecipientRejectedError permanent: {reply}"),
        ("553 no such user here", "RecipientRejectedError permanent: {reply}"),
        ("552 5.2.2 mailbox full", "DeliveryError permanent: {reply}"),
        ("554 transaction failed", "DeliveryError permanent: {reply}"),
        ("450 4.2.0 greylisted", "RecipientRejectedError transient: {reply}"),
        ("554 5.7.1 <x>: Relay access denied", "DeliveryError transient: {relay}"),
        ("530 5.7.0 Authentication required", "DeliveryError transient: {relay}"),
        ("530 Authentication required", "DeliveryError transient: {relay}"),
        (
            "550 5.1.8 <leadflow@example.com>: Sender address rejected",
            "DeliveryError transient: {relay}",
        ),
        ("554 5.3.0 system not accepting mail", "DeliveryError transient: {relay}"),
        ("550 5.4.4 unable to route", "DeliveryError transient: {relay}"),
    ],
)
def test_a_refused_recipient_is_a_mailbox_verdict_only_by_its_code(
    transport: SmtpTransport, handler: ScriptedHandler, reply: str, error: str
) -> None:
    """Only 5.1.x (but the sender's 5.1.7/5.1.8), 5.2.1, or a bare 550/551/553 condemn the
    mailbox (RecipientRejectedError: a hard bounce); 5.7.x, 5.3.x, 5.4.x and a bare 530 are the
    relay refusing leadflow (retried); any other 5xx fails the message alone."""
    handler.reject["jo@acme.example"] = reply
    full = f"{reply} (recipient jo@acme.example)"
    relay = f"the relay refuses leadflow itself, not the recipient: {full}; {RELAY_REFUSAL_HINT}"
    assert send(transport, ("jo@acme.example", MESSAGE)) == [error.format(reply=full, relay=relay)]


def test_a_refused_recipient_leaves_the_connection_clean_for_the_next(
    transport: SmtpTransport, handler: ScriptedHandler
) -> None:
    """A 550 to RCPT fails that message for good; the envelope is reset, so the next message
    goes over the same connection with only its own recipient."""
    handler.reject["gone@acme.example"] = "550 5.1.1 no such user"
    errors = send(transport, ("gone@acme.example", MESSAGE), ("jo@acme.example", MESSAGE))
    assert errors == [
        "RecipientRejectedError permanent: 550 5.1.1 no such user (recipient gone@acme.example)",
        "",
    ]
    assert [(r.mail_from, r.rcpt_tos) for r in handler.received] == [
        ("leadflow@example.com", ["jo@acme.example"])
    ]
    assert transport.connections_opened == 1


def test_a_refused_message_is_permanent_and_a_busy_server_transient(
    transport: SmtpTransport, handler: ScriptedHandler
) -> None:
    """A 5xx to DATA is permanent, a 4xx transient; each keeps the connection for the next."""
    handler.script = ["554 5.6.0 content refused", "451 4.3.0 try later"]
    errors = send(
        transport,
        ("jo@acme.example", MESSAGE),
        ("jo@acme.example", MESSAGE),
        ("jo@acme.example", MESSAGE),
    )
    assert errors == [
        "DeliveryError permanent: 554 5.6.0 content refused",
        "DeliveryError transient: 451 4.3.0 try later",
        "",
    ]
    assert len(handler.received) == 1
    assert transport.connections_opened == 1


def test_a_policy_refusal_at_data_is_the_relay_refusing_leadflow(
    transport: SmtpTransport, handler: ScriptedHandler
) -> None:
    """A 5.7.x to the end of DATA (the sender's domain failing DMARC, a policy milter) is the
    relay refusing leadflow at any stage: retried, and the session not reused."""
    handler.script = ["550 5.7.1 message refused by policy"]
    errors = send(transport, ("jo@acme.example", MESSAGE), ("jo@acme.example", MESSAGE))
    assert errors == [
        "DeliveryError transient: the relay refuses leadflow itself, not the recipient: "
        f"550 5.7.1 message refused by policy; {RELAY_REFUSAL_HINT}",
        "",
    ]
    assert len(handler.received) == 1
    assert transport.connections_opened == 2


def test_an_address_with_a_quoted_local_part_goes_through_sendmail(
    transport: SmtpTransport, handler: ScriptedHandler
) -> None:
    """An address that cannot stand in a command as it is takes aiosmtplib's own path."""
    assert send(transport, ('"jo doe"@acme.example', MESSAGE)) == [""]
    assert handler.received[0].rcpt_tos == ['"jo doe"@acme.example']


def test_a_recipient_refused_with_4xx_is_transient(
    transport: SmtpTransport, handler: ScriptedHandler
) -> None:
    """A 450 to RCPT is retried later, not a bounce."""
    handler.reject["jo@acme.example"] = "450 4.2.1 mailbox busy"
    assert send(transport, ("jo@acme.example", MESSAGE)) == [
        "RecipientRejectedError transient: 450 4.2.1 mailbox busy (recipient jo@acme.example)"
    ]
    assert handler.received == []


class CountingSessions(ScriptedHandler):
    """Counts the SMTP sessions the server saw (one EHLO each)."""

    sessions = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions += 1
        return await super().handle_EHLO(server, session, envelope, hostname, responses)


@pytest.mark.parametrize(("limit", "connections"), [(1.0, 2), (300.0, 1)])
def test_a_connection_is_reused_for_a_limited_time(limit: float, connections: int) -> None:
    """Found against a real postfix: after ``postfix reload`` added a recipient restriction,
    leadflow's pooled connections stayed with the smtpd processes started before it and kept
    delivering to the refused address, for as long as mail flowed. A connection older than
    the reuse limit (300 s, as Postfix's own client) is QUIT and opened anew at its next use."""
    handler = CountingSessions()
    with smtp_server(handler) as port:
        settings = SmtpSettings.model_validate(
            {"host": "127.0.0.1", "port": port, "connections": 1, "timeout": "2s"}
        )
        transport = SmtpTransport(settings, reuse_time_limit=limit)

        async def run() -> None:
            for pause in (0.1, 1.2, 0.0):  # the third message comes after the limit
                await transport.deliver(
                    MESSAGE,
                    sender="leadflow@example.com",
                    recipients=["jo@acme.example"],
                    message_id="m",
                )
                await asyncio.sleep(pause)
            await transport.close()

        asyncio.run(run())
    assert len(handler.received) == 3
    assert (transport.connections_opened, handler.sessions) == (connections, connections)


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_connection_lost_after_the_final_dot_is_an_unknown_outcome(
    transport: SmtpTransport, handler: ScriptedHandler, pipelining: bool
) -> None:
    """The relay hung up after the whole message, before its reply: it may have queued the
    message (RFC 1047), so the failure says the outcome is unknown; the next message goes over
    a new connection."""
    handler.pipelining = pipelining
    handler.script = ["drop"]
    assert send(transport, ("jo@acme.example", MESSAGE), ("jo@acme.example", MESSAGE)) == [
        "DeliveryError transient: outcome unknown: the connection failed before the reply to "
        "the end of DATA: Unexpected EOF received; the relay may have delivered m",
        "",
    ]
    assert transport.connections_opened == 2


def test_a_refused_message_is_not_an_unknown_outcome(
    transport: SmtpTransport, handler: ScriptedHandler
) -> None:
    """A reply to the end of DATA, even a refusal, is the relay's word: the outcome is known."""
    handler.script = ["451 4.3.0 try later"]

    async def run() -> bool:
        try:
            await transport.deliver(
                MESSAGE,
                sender="leadflow@example.com",
                recipients=["jo@acme.example"],
                message_id="m",
            )
        except DeliveryError as exc:
            return exc.outcome_unknown
        finally:
            await transport.close()
        raise AssertionError("delivered")

    assert asyncio.run(run()) is False
