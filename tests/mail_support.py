"""Shared by the mail tests: a scriptable real SMTP server (aiosmtpd) and store helpers."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import Engine, insert, select

from leadflow.outbox.store import message_id_for
from leadflow.store.database import transaction
from leadflow.store.models import Lead, OutboxMessage, Rep
from leadflow.store.tables import OUTBOX


@dataclass
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str] = field(default_factory=list)

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.content.replace(b"\r\n", b"\n"), policy=default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class ScriptedHandler:
    """Answers each DATA from ``script`` (then 250): a reply line, or ``drop`` to hang up.

    ``reject`` maps recipient addresses to the reply their RCPT gets; ``delay`` (seconds) is
    slept before every MAIL, RCPT and DATA reply, as a distant relay would. ``pipelining``:
    advertise PIPELINING, as relays do (aiosmtpd reads pipelined commands in order but does
    not say so by itself).
    """

    script: list[str] = field(default_factory=list)
    reject: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    data_commands: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    refuse_sender: str | None = None
    """The reply the next MAIL gets instead of 250 (once)."""
    pipelining: bool = True
    pipelined: list[bool] = field(default_factory=list)
    """Per MAIL: whether the commands after it had arrived with it (the client pipelined)."""

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.pipelined.append(b"DATA" in bytes(server._reader._buffer))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.refuse_sender is not None:
            reply, self.refuse_sender = self.refuse_sender, None
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.data_commands += 1
            action = self.script.pop(0) if self.script else "250 OK"
            if action == "drop":
                server.transport.abort()
                return "250 never seen"
            if action.startswith("250"):
                self.received.append(
                    Received(
                        envelope.mail_from,
                        list(envelope.rcpt_tos),
                        envelope.original_content,
                        list(envelope.mail_options),
                    )
                )
            return action


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def smtp_server(handler: ScriptedHandler) -> Iterator[int]:
    """Run ``handler`` on a real SMTP server on 127.0.0.1; yield its port."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def add_rep(engine: Engine, now: datetime, **fields: Any) -> int:
    values: dict[str, Any] = {
        "external_id": "rep-anna",
        "name": "Anna Berg",
        "email": "anna@example.com",
        "timezone": "Europe/Berlin",
    }
    values.update(fields)
    with transaction(engine) as session:
        rep = Rep(created_at=now, updated_at=now, **values)
        session.add(rep)
        session.flush()
        assert rep.id is not None
        return rep.id


def add_lead(engine: Engine, now: datetime, **fields: Any) -> int:
    values: dict[str, Any] = {
        "external_id": "L-1",
        "email": "jo@acme.example",
        "name": "Jo Doe",
        "company": "Acme",
        "score": 80,
        "stage": "nurture",
        "timezone": "Europe/Berlin",
    }
    values.update(fields)
    with transaction(engine) as session:
        lead = Lead(stage_entered_at=now, created_at=now, updated_at=now, **values)
        session.add(lead)
        session.flush()
        assert lead.id is not None
        return lead.id


def outbox_rows(engine: Engine) -> list[OutboxMessage]:
    with transaction(engine) as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def write_templates(folder: Path, parts: Mapping[str, str] | None = None) -> None:
    """Template files into ``folder``: ``parts`` (file name -> text), or by default two small
    templates the mail tests render, one operational, one marketing."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = parts or {
        "notify.subject.txt": "New MQL: {{ lead.name }}",
        "notify.txt": "Hi {{ rep.first_name }},\n{{ lead.name }} is yours: {{ lead.crm_url }}\n",
        "notify.html": "<p>Hi {{ rep.first_name }}, <b>{{ lead.name }}</b> is yours.</p>\n",
        "nurture.subject.txt": "Hello {{ lead.first_name }}",
        "nurture.txt": "Read on.\nUnsubscribe: {{ unsubscribe_url }}\n",
    }
    for name, text in parts.items():
        (folder / name).write_text(text, encoding="utf-8")


def queue_backlog(store: Engine, count: int, now: datetime | None = None) -> None:
    """``count`` emails due at ``now`` (default: the wall clock's) in the outbox, as a campaign
    leaves them."""
    now = now or datetime.now(UTC)
    rows = [
        {
            "idempotency_key": f"backlog-{n}",
            "message_id": message_id_for(f"backlog-{n}", "example.com"),
            "channel": "email",
            "category": "operational",
            "recipient": f"rep{n}@example.com",
            "subject": f"Backlog {n}",
            "body_text": "hello",
            "headers": {},
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for n in range(count)
    ]
    with store.begin() as connection:
        connection.execute(insert(OUTBOX), rows)
