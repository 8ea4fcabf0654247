"""The relay down or refusing leadflow is logged as one outage, not a line per message and attempt.

Pins the log flood: while the relay refused leadflow (``outbox_relay_refused``) or could not be
reached (``outbox_retry`` with a connection error), every message logged a warning at every
attempt, thousands of lines a minute with a large outbox. Now: ``outbox_relay_failing`` once,
``outbox_relay_still_failing`` at most once a minute of the outage, ``outbox_relay_recovered``
once, with how long it was down; each message's line at debug level. A real aiosmtpd relay
refuses (or is not there), the sender runs as the daemon's (one drain until stopped), and time
is the injected clock's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine
from structlog.testing import capture_logs

from leadflow.clock import SettableClock
from leadflow.durations import format_duration
from leadflow.mail.transports.smtp import SmtpTransport
from leadflow.outbox.delivery import drain, retry_delay
from leadflow.service.channels import channels_for
from leadflow.settings import Settings
from tests.conftest import T0
from tests.mail_support import (
    ScriptedHandler,
    free_port,
    outbox_rows,
    queue_backlog,
    write_templates,
)

REFUSAL = "554 5.7.1 <rep{n}@example.com>: Relay access denied"
SEED = 11


@contextmanager
def relay_on(port: int, handler: ScriptedHandler) -> Iterator[None]:
    """A real SMTP relay (aiosmtpd) on 127.0.0.1:``port``."""
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


def sender_settings(make_settings: Any, tmp_path: Path, port: int) -> Settings:
    write_templates(tmp_path / "templates")
    settings: Settings = make_settings(
        **{
            "mail.transport": "smtp",
            "mail.from": "Leadflow <leadflow@example.com>",
            "mail.smtp.host": "127.0.0.1",
            "mail.smtp.port": port,
            "mail.smtp.timeout": "2s",
            "mail.smtp.rate_per_second": 1000,
            "mail.concurrency": 1,
            "mail.retry.first_delay": "1m",
            "mail.retry.max_delay": "10m",
            "mail.retry.give_up_after": "1d",
        }
    )
    mail = settings.mail.model_copy(update={"poll_interval": timedelta(seconds=0.01)})
    return settings.model_copy(update={"mail": mail})


def attempts(engine: Engine) -> list[tuple[str, int]]:
    return [(row.status, row.attempts) for row in outbox_rows(engine)]


async def until(engine: Engine, wanted: list[tuple[str, int]]) -> None:
    """Wait (5 s at most) for the outbox rows' (status, attempts) to be ``wanted``."""
    async with asyncio.timeout(5):
        while await asyncio.to_thread(attempts, engine) != wanted:  # noqa: ASYNC110 (the sender writes the rows)
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("trouble", ["refused", "unreachable"])
def test_an_outage_is_told_once_then_a_minute_then_once_recovered(
    engine: Engine,
    make_settings: Any,
    tmp_path: Path,
    clock: SettableClock,
    trouble: str,
) -> None:
    """Three messages fail three rounds over 3 minutes (nine attempts): one line when the
    relay starts failing, one summary in each later round (a minute or more after the previous
    line), one when a message goes out again; the nine attempts at debug level."""
    port = free_port()
    settings = sender_settings(make_settings, tmp_path, port)
    queue_backlog(engine, 3, T0)
    handler = ScriptedHandler()
    if trouble == "refused":
        handler.reject = {f"rep{n}@example.com": REFUSAL.format(n=n) for n in range(3)}
    errors: list[str] = []

    async def round_of(number: int, advance: timedelta, *, fixed: bool = False) -> None:
        clock.advance(advance)
        if fixed:
            await until(engine, [("sent", number)] * 3)
        else:
            await until(engine, [("pending", number)] * 3)
            errors.append(outbox_rows(engine)[0].last_error or "")

    async def scenario(relay: Callable[[], Any]) -> None:
        stop = asyncio.Event()
        transport = SmtpTransport(settings.mail.smtp)
        channels = channels_for(settings, transport)
        sending = asyncio.create_task(
            drain(engine, settings, clock, channels, once=False, stop=stop, rng=random.Random(SEED))
        )
        try:
            with relay():
                await round_of(1, timedelta())
                await round_of(2, timedelta(seconds=61))
                await round_of(3, timedelta(seconds=121))
                handler.reject.clear()
            with relay_on(port, handler):  # refusing no more, or there again
                await round_of(4, timedelta(seconds=241), fixed=True)
        finally:
            stop.set()
            await sending
            await transport.close()

    with capture_logs() as logs:
        if trouble == "refused":
            asyncio.run(scenario(lambda: relay_on(port, handler)))
        else:
            asyncio.run(scenario(nothing_listening))

    # What the seeded jitter made of the retry times, message by message, round by round.
    rng = random.Random(SEED)
    retry = settings.mail.retry
    started = [T0, T0 + timedelta(seconds=61), T0 + timedelta(seconds=182)]
    retry_at = [
        [at + retry_delay(r + 1, retry, rng) for _ in range(3)] for r, at in enumerate(started)
    ]

    told = [
        {k: v for k, v in e.items() if k not in ("log_level",)} | {"level": e["log_level"]}
        for e in logs
        if e["event"].startswith("outbox_") and e["log_level"] != "debug"
    ]
    reason = "refused" if trouble == "refused" else "unreachable"
    assert told == [
        {
            "event": "outbox_relay_failing",
            "level": "warning",
            "channel": "email",
            "reason": reason,
            "error": errors[0],
            "outbox_id": 1,
            "failed_attempts": 1,
            "next_attempt_at": retry_at[0][0].isoformat(),
        },
        {
            "event": "outbox_relay_still_failing",
            "level": "warning",
            "channel": "email",
            "reason": reason,
            "error": errors[1],
            "down_for": "1m1s",
            "failed_attempts": 3,
            "waiting": 3,
            # The other two were due again already, their retry under way.
            "next_attempt_at": started[1].isoformat(),
        },
        {
            "event": "outbox_relay_still_failing",
            "level": "warning",
            "channel": "email",
            "reason": reason,
            "error": errors[2],
            "down_for": "3m2s",
            "failed_attempts": 3,
            "waiting": 3,
            "next_attempt_at": started[2].isoformat(),
        },
        {
            "event": "outbox_relay_recovered",
            "level": "info",
            "channel": "email",
            "down_for": format_duration(timedelta(seconds=423)),
            "failed_attempts": 9,
        },
    ]
    # Each attempt's own line is still there, at debug level, with its retry time.
    per_message = "outbox_relay_refused" if trouble == "refused" else "outbox_retry"
    detail = [
        (e["outbox_id"], e["attempts"], e["retry_at"])
        for e in logs
        if e["event"] == per_message and e["log_level"] == "debug"
    ]
    assert detail == [
        (n + 1, r + 1, retry_at[r][n].isoformat()) for r in range(3) for n in range(3)
    ]
    assert len(handler.received) == 3
    assert sorted(received.rcpt_tos for received in handler.received) == [
        [f"rep{n}@example.com"] for n in range(3)
    ]


@contextmanager
def nothing_listening() -> Iterator[None]:
    """The relay down: nothing listens on its port, every connection is refused."""
    yield


def test_a_relay_refusing_some_domains_is_told_at_most_once_a_minute(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """A relay refusing some recipients (Relay access denied) and delivering the others fails
    and recovers in turn: each outage begun within a minute of the last line is not told, nor
    its end; one that still goes on a minute later is."""
    port = free_port()
    settings = sender_settings(make_settings, tmp_path, port)
    queue_backlog(engine, 4, T0)
    refused = {f"rep{n}@example.com": REFUSAL.format(n=n) for n in (0, 2)}
    handler = ScriptedHandler(reject=refused)

    async def scenario() -> None:
        stop = asyncio.Event()
        transport = SmtpTransport(settings.mail.smtp)
        channels = channels_for(settings, transport)
        sending = asyncio.create_task(
            drain(engine, settings, clock, channels, once=False, stop=stop, rng=random.Random(1))
        )
        try:
            await until(engine, [("pending", 1), ("sent", 1), ("pending", 1), ("sent", 1)])
            clock.advance(timedelta(seconds=61))
            await until(engine, [("pending", 2), ("sent", 1), ("pending", 2), ("sent", 1)])
        finally:
            stop.set()
            await sending
            await transport.close()

    with capture_logs() as logs, relay_on(port, handler):
        asyncio.run(scenario())
    told = [
        (e["event"], e.get("outbox_id"), e.get("down_for"), e.get("failed_attempts"))
        for e in logs
        if e["event"].startswith("outbox_relay_") and e["log_level"] != "debug"
    ]
    assert told == [
        ("outbox_relay_failing", 1, None, 1),  # 09:00:00, rep0 refused
        ("outbox_relay_recovered", None, "0s", 1),  # rep1 delivered
        # rep2 refused and rep3 delivered at once: an outage within the minute, untold
        ("outbox_relay_failing", 1, None, 1),  # 09:01:01, rep0 refused again
    ]


def test_a_message_failing_alone_is_no_outage(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """Greylisting (a 450 to one recipient) is the message's own: logged per attempt as
    before (``outbox_retry``, info for the first attempts), no outage told."""
    port = free_port()
    settings = sender_settings(make_settings, tmp_path, port)
    queue_backlog(engine, 1, T0)
    handler = ScriptedHandler(reject={"rep0@example.com": "450 4.2.0 greylisted, try again"})

    async def scenario() -> None:
        stop = asyncio.Event()
        transport = SmtpTransport(settings.mail.smtp)
        sending = asyncio.create_task(
            drain(engine, settings, clock, channels_for(settings, transport), once=False, stop=stop)
        )
        try:
            await until(engine, [("pending", 1)])
        finally:
            stop.set()
            await sending
            await transport.close()

    with capture_logs() as logs, relay_on(port, handler):
        asyncio.run(scenario())
    assert [
        (e["event"], e["log_level"], e["outbox_id"]) for e in logs if "outbox" in e["event"]
    ] == [("outbox_retry", "info", 1)]
