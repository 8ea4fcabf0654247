"""The outbox knows no channel: rows go to the channel registered for their ``channel`` value.

Pins: a channel the outbox has never heard of (a fake ``sms``) delivers its rows beside email
without either knowing of the other; what it withholds at claim time is not leased; a row whose
channel no one registered fails permanently, saying so; two channels may not claim one name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mail_support import outbox_rows
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from leadflow.clock import SettableClock
from leadflow.errors import DeliveryError
from leadflow.mail.transports.maildir import MaildirTransport
from leadflow.outbox.channel import Channel
from leadflow.outbox.delivery import DrainReport, drain
from leadflow.outbox.store import SUPPRESSED, ClaimedMessage, Outcome, enqueue
from leadflow.service.channels import channels_for
from leadflow.settings import Settings
from leadflow.store.database import transaction
from leadflow.store.tables import OUTBOX


class FakeSms:
    """A third channel: remembers what it delivered, withholds recipients it is told to."""

    name = "sms"
    longest_attempt = timedelta(seconds=2)

    def __init__(self, blocked: str = "") -> None:
        self.blocked = blocked
        self.delivered: list[str] = []
        self.closed = False

    def withhold(self, session: Session, due: Sequence[int]) -> set[int]:
        t = OUTBOX
        mine = select(t.c.id).where(
            t.c.id.in_(due), t.c.channel == self.name, t.c.recipient == self.blocked
        )
        ids = set(session.scalars(mine))
        if ids:
            session.execute(update(t).where(t.c.id.in_(ids)).values(status=SUPPRESSED))
        return ids

    async def deliver(self, message: ClaimedMessage, now: datetime) -> None:
        self.delivered.append(message.recipient)

    def is_hard_bounce(self, message: ClaimedMessage, error: DeliveryError) -> bool:
        return False

    def record_hard_bounces(
        self, session: Session, bounces: Sequence[Outcome], now: datetime
    ) -> None:
        raise AssertionError("not a hard bounce")

    async def close(self) -> None:
        self.closed = True


def add_row(engine: Engine, clock: SettableClock, key: str, channel: str, recipient: str) -> int:
    with transaction(engine) as session:
        result = enqueue(
            session,
            key=key,
            channel=channel,
            category="operational",
            recipient=recipient,
            subject=key,
            body_text="hello",
            now=clock.now(),
            message_id_domain="test",
        )
        return result.outbox_id


def drain_once(
    engine: Engine, settings: Settings, clock: SettableClock, channels: Sequence[Channel]
) -> DrainReport:
    return asyncio.run(drain(engine, settings, clock, channels, once=True))


def test_a_new_channel_delivers_its_rows_beside_email(
    engine: Engine, make_settings: Any, clock: SettableClock, tmp_path: Path
) -> None:
    settings: Settings = make_settings()
    sms = FakeSms(blocked="+4900")
    ids = [
        add_row(engine, clock, "sms-1", "sms", "+4911"),
        add_row(engine, clock, "sms-2", "sms", "+4900"),
        add_row(engine, clock, "mail-1", "email", "a@example.com"),
        add_row(engine, clock, "fax-1", "fax", "+4922"),
    ]
    channels = [*channels_for(settings, MaildirTransport(tmp_path / "box")), sms]
    report = drain_once(engine, settings, clock, channels)
    assert (report.claimed, report.sent, report.failed) == (3, 2, 1)
    assert sms.delivered == ["+4911"]
    assert sms.closed
    assert [(r.id, r.status, r.last_error) for r in outbox_rows(engine)] == [
        (ids[0], "sent", None),
        (ids[1], "suppressed", None),
        (ids[2], "sent", None),
        (ids[3], "failed", "no channel delivers 'fax' messages in this sender"),
    ]
    assert len(list((tmp_path / "box" / "new").iterdir())) == 1


def test_two_channels_may_not_share_a_name(
    engine: Engine, make_settings: Any, clock: SettableClock
) -> None:
    with pytest.raises(ValueError, match="two channels deliver the same rows"):
        drain_once(engine, make_settings(), clock, [FakeSms(), FakeSms()])
