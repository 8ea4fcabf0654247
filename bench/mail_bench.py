"""Outbox sender throughput against a local SMTP sink, as a share of what the sink itself can take.

    .venv/bin/python bench/mail_bench.py            # about 2-4 minutes on 2 shared cores

Per scenario (a sink answering at once, then one that delays every reply by 50 ms as a distant
relay does) it starts an aiosmtpd sink in a separate process on 127.0.0.1 and measures, in
alternating rounds over the same number of messages:

- capacity: a minimal client, one persistent aiosmtplib connection per worker, blasting one
  pre-built message with no database: the most the sink can take over that many connections.
  Three such clients run each round: one calling ``sendmail``, one sending bare MAIL, RCPT and
  DATA commands one by one (``sendmail`` parses each address twice with email.utils), and one
  pipelining them (RFC 2920) over plain asyncio streams, as leadflow's transport does where
  the server advertises PIPELINING (the sink does, as relays do); the capacity of the round
  is the fastest of the three;
- leadflow: the same number of rows queued in a SQLite outbox with ``enqueue_email`` (rendered
  templates), then ``drain(once=True)`` through the pooled SMTP transport, every row marked sent.

Both timings are symmetric: each starts before the first connection is opened and ends once the
last message is accepted (for leadflow: recorded as sent) and every connection has been closed
with QUIT. Each round yields one share, leadflow / capacity; the medians and the spread
(min-max) of the rounds are printed, with the machine and its load average, and the CPU each
side spends per message (less sensitive to other load than the rates).

The 50 ms sink is the fair yardstick for a real relay: there a sender can only be as fast as the
relay lets its connections be (32 connections x 1 message per 4 delayed replies = 160 msg/s at
most), and what counts is the share of that capacity the sender reaches.

Target: leadflow >= 85% of capacity in the median of rounds, for both sinks. Options:
``--messages``, ``--delayed-messages``, ``--connections``, ``--delayed-connections``,
``--rounds``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402  (beside this file, found through the line above)

FROM = "leadflow@example.com"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TO = "rep@example.com"


# --- the sink (runs in its own process) -------------------------------------------------------


def run_sink(port: int, delay: float) -> None:
    """An SMTP server that accepts everything, each final reply line ``delay`` seconds late."""
    from aiosmtpd.smtp import SMTP

    class Accept:
        async def handle_EHLO(  # noqa: N802
            self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            session.host_name = hostname
            return [*responses[:-1], "250-PIPELINING", responses[-1]]

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            return "250 2.0.0 queued"

    class DelayedSMTP(SMTP):  # type: ignore[misc]
        async def push(self, status: Any) -> None:
            text = status if isinstance(status, str) else status.decode()
            if delay and text[3:4] != "-":  # a multi-line reply is delayed once, at its end
                await asyncio.sleep(delay)
            await super().push(status)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: DelayedSMTP(Accept(), hostname="sink.local"), "127.0.0.1", port
        )
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


class Sink:
    def __init__(self, delay: float) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--sink", str(self.port), str(delay)]
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        msg = "the SMTP sink did not start"
        raise RuntimeError(msg)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- the two senders ----------------------------------------------------------------------------


def sample_message() -> bytes:
    from leadflow.clock import SystemClock
    from leadflow.mail.context import sample_context
    from leadflow.mail.message import build_message
    from leadflow.mail.templates import TemplateCatalog
    from leadflow.outbox.store import ClaimedMessage
    from leadflow.settings import Settings

    settings = Settings(root=ROOT)
    rendered = TemplateCatalog(ROOT / "templates", settings).render(
        "mql_assigned", sample_context(settings)
    )
    claimed = ClaimedMessage(
        1,
        "<bench@leadflow>",
        "operational",
        None,
        None,
        TO,
        rendered.subject,
        rendered.text,
        rendered.html,
        {},
        1,
    )
    return build_message(claimed, settings, SystemClock().now())


async def blast(
    port: int, connections: int, total: int, message: bytes, *, commands: bool = False
) -> float:
    """Messages per second of ``connections`` persistent connections sending ``total``, timed
    from before the first connection to the last QUIT.

    ``commands``: each message as bare MAIL, RCPT and DATA commands, as leadflow's transport
    sends them, instead of ``sendmail`` (which parses both addresses twice with email.utils).
    """
    import aiosmtplib

    remaining = total
    mail_from = b"FROM:<%s>" % FROM.encode()
    rcpt_to = b"TO:<%s>" % TO.encode()

    async def worker() -> None:
        nonlocal remaining
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
        await client.connect()
        await client.ehlo()
        while remaining > 0:
            remaining -= 1
            # Like leadflow's transport: no timer per command (aiosmtplib's wait_for costs an
            # extra turn of the event loop per reply), the whole run bounded instead.
            if commands:
                await client.execute_command(b"MAIL", mail_from, timeout=None)
                await client.execute_command(b"RCPT", rcpt_to, timeout=None)
                await client.data(message, timeout=None)
            else:
                await client.sendmail(FROM, [TO], message, timeout=None)
        await client.quit()

    started = time.perf_counter()
    async with asyncio.timeout(600):
        await asyncio.gather(*(worker() for _ in range(connections)))
    return total / (time.perf_counter() - started)


async def blast_pipelined(port: int, connections: int, total: int, message: bytes) -> float:
    """As :func:`blast`, each message as one pipelined MAIL/RCPT/DATA group and then the
    message, over plain asyncio streams: the least a pipelining client can do."""
    remaining = total
    group = b"MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n" % (FROM.encode(), TO.encode())
    body = message.replace(b"\r\n.", b"\r\n..") + b".\r\n"

    async def reply(reader: asyncio.StreamReader) -> bytes:
        while (line := await reader.readline())[3:4] == b"-":
            pass
        return line

    async def worker() -> None:
        nonlocal remaining
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reply(reader)
        writer.write(b"EHLO bench\r\n")
        assert (await reply(reader)).startswith(b"250")
        while remaining > 0:
            remaining -= 1
            writer.write(group)
            codes = [(await reply(reader))[:3] for _ in range(3)]
            assert codes == [b"250", b"250", b"354"], codes
            writer.write(body)
            assert (await reply(reader)).startswith(b"250")
        writer.write(b"QUIT\r\n")
        await reply(reader)
        writer.close()
        await writer.wait_closed()

    started = time.perf_counter()
    async with asyncio.timeout(600):
        await asyncio.gather(*(worker() for _ in range(connections)))
    return total / (time.perf_counter() - started)


def bench_settings(port: int, connections: int) -> Any:
    from leadflow.settings import Settings

    return Settings.model_validate(
        {
            "root": str(ROOT),
            "mail": {
                "from": FROM,
                "batch_size": 500,
                # twice the connections: a message is built while another is on the wire
                "concurrency": 2 * connections,
                "smtp": {
                    "host": "127.0.0.1",
                    "port": port,
                    "connections": connections,
                    "rate_per_second": 1_000_000,
                },
            },
        }
    )


def queued_outbox(total: int, folder: Path) -> tuple[Path, float]:
    """A SQLite store with ``total`` messages queued by ``enqueue_email``; rows per second."""
    from leadflow.store.database import create_store_engine, migrate

    path = folder / "queued.db"
    engine = create_store_engine(f"sqlite:///{path}")
    migrate(engine)
    rate = queue(engine, bench_settings(25, 1), NOW, total)
    engine.dispose()
    return path, rate


def leadflow_drain(port: int, connections: int, queued: Path, folder: Path) -> float:
    """Messages per second of ``drain(once=True)`` over a copy of the queued store."""
    from sqlalchemy import func, select

    from leadflow.clock import SettableClock
    from leadflow.mail.transports.smtp import SmtpTransport
    from leadflow.outbox.delivery import drain
    from leadflow.service.channels import channels_for
    from leadflow.store.database import create_store_engine, transaction
    from leadflow.store.models import OutboxMessage

    settings = bench_settings(port, connections)
    path = folder / "drain.db"
    shutil.copy(queued, path)
    engine = create_store_engine(f"sqlite:///{path}")
    with transaction(engine) as session:
        total = session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()

    async def run() -> float:
        # Timed like ``blast``: from before the first connection (opened by the drain) to the
        # last QUIT, after the last outcome was recorded.
        started = time.perf_counter()
        transport = SmtpTransport(settings.mail.smtp)
        channels = channels_for(settings, transport)
        report = await drain(engine, settings, SettableClock(NOW), channels, once=True)
        await transport.close()
        elapsed = time.perf_counter() - started
        assert report.sent == total, report
        return total / elapsed

    rate = asyncio.run(run())
    with transaction(engine) as session:
        sent = session.execute(
            select(func.count()).where(OutboxMessage.status == "sent")  # type: ignore[arg-type]
        ).scalar_one()
    engine.dispose()
    path.unlink()
    assert sent == total, (sent, total)
    return rate


def queue(engine: Any, settings: Any, now: datetime, total: int) -> float:
    """Queue ``total`` rendered messages with the real API; return rows per second."""
    from leadflow.mail.context import sample_context
    from leadflow.mail.enqueue import enqueue_email
    from leadflow.mail.templates import TemplateCatalog
    from leadflow.store.database import transaction

    catalog = TemplateCatalog(ROOT / "templates", settings)
    context = sample_context(settings)
    started = time.perf_counter()
    for start in range(0, total, 2000):
        with transaction(engine) as session:
            for n in range(start, min(total, start + 2000)):
                enqueue_email(
                    session,
                    key=f"bench:{n}",
                    template="mql_assigned",
                    context=context,
                    to=TO,
                    category="operational",
                    now=now,
                    catalog=catalog,
                    settings=settings,
                )
    return total / (time.perf_counter() - started)


# --- the run ------------------------------------------------------------------------------------


REPLIES_PER_MESSAGE = 4
"""Delayed replies in one aiosmtplib ``sendmail``: MAIL, RCPT, DATA (354) and the final 250."""


@dataclass
class Row:
    sink: str
    delay: float
    connections: int
    messages: int
    by_sendmail: list[float]
    by_commands: list[float]
    by_pipelined: list[float]
    """The bare clients' rates of each round: ``sendmail``, bare MAIL/RCPT/DATA commands, and
    the same pipelined."""
    drains: list[float]
    """leadflow's rate of each round, in order, each measured right after the clients'."""
    queued: float
    sendmail_cpu: list[float]
    commands_cpu: list[float]
    pipelined_cpu: list[float]
    drain_cpu: list[float]
    """CPU seconds per message of this process (the sink runs in its own), by round."""

    @property
    def capacities(self) -> list[float]:
        """The sink's capacity in each round: the fastest of the bare clients."""
        return [
            max(rates)
            for rates in zip(self.by_sendmail, self.by_commands, self.by_pipelined, strict=True)
        ]

    @property
    def shares(self) -> list[float]:
        return [d / c for d, c in zip(self.drains, self.capacities, strict=True)]


def scenario(
    label: str, delay: float, messages: int, connections: int, rounds: int, folder: Path
) -> Row:
    """Capacity and leadflow measured alternately ``rounds`` times, over ``messages`` each.

    Alternating them keeps a slow stretch of a shared machine from landing on one side of the
    comparison only; each round's share compares two measurements taken seconds apart.
    """
    # Imported before the first round, which would otherwise time them too.
    import leadflow.mail.transports.smtp
    import leadflow.outbox.delivery
    import leadflow.service.channels  # noqa: F401

    queued, queue_rate = queued_outbox(messages, folder)
    sink = Sink(delay)
    try:
        message = sample_message()
        row = Row(label, delay, connections, messages, [], [], [], [], queue_rate, [], [], [], [])
        for _ in range(rounds):
            for client, rates, cpus in (
                (
                    blast(sink.port, connections, messages, message),
                    row.by_sendmail,
                    row.sendmail_cpu,
                ),
                (
                    blast(sink.port, connections, messages, message, commands=True),
                    row.by_commands,
                    row.commands_cpu,
                ),
                (
                    blast_pipelined(sink.port, connections, messages, message),
                    row.by_pipelined,
                    row.pipelined_cpu,
                ),
            ):
                cpu = time.process_time()
                rates.append(asyncio.run(client))
                cpus.append((time.process_time() - cpu) / messages)
            cpu = time.process_time()
            row.drains.append(leadflow_drain(sink.port, connections, queued, folder))
            row.drain_cpu.append((time.process_time() - cpu) / messages)
    finally:
        sink.stop()
    return row


def machine() -> str:
    cpu = cpu_model()
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}"
    )


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--delayed-messages", type=int, default=1_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--delayed-connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="alternations per sink")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"load average at start: {load()}", flush=True)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fast = Path(tmp) / "fast"
        slow = Path(tmp) / "slow"
        fast.mkdir()
        slow.mkdir()
        rows.append(scenario("immediate", 0.0, args.messages, args.connections, args.rounds, fast))
        rows.append(
            scenario(
                "50 ms/reply",
                0.05,
                args.delayed_messages,
                args.delayed_connections,
                args.rounds,
                slow,
            )
        )
    print_table(rows)
    print(f"\nload average at end: {load()}; total {time.perf_counter() - started:.0f} s")


def spread(values: list[float], scale: float = 1.0, unit: str = "") -> str:
    """``median (min-max)``."""
    median, low, high = (scale * v for v in (statistics.median(values), min(values), max(values)))
    return f"{median:.0f}{unit} ({low:.0f}-{high:.0f}{unit})"


def _ms(values: list[float]) -> str:
    median = statistics.median(values)
    return f"{1000 * median:.2f} ({1000 * min(values):.2f}-{1000 * max(values):.2f})"


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'sink':<12} {'conns':>5} {'messages':>8}  {'capacity msg/s':<18} "
        f"{'leadflow msg/s':<18} {'leadflow/capacity':<18} {'queue/s':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.sink:<12} {row.connections:>5} {row.messages:>8}  "
            f"{spread(row.capacities):<18} {spread(row.drains):<18} "
            f"{spread(row.shares, 100, '%'):<18} {row.queued:>8.0f}"
        )
    print("(each cell: median of the rounds, then min-max)")
    for row in rows:
        pairs = ", ".join(
            f"{c:.0f}/{d:.0f} = {100 * d / c:.0f}%"
            for c, d in zip(row.capacities, row.drains, strict=True)
        )
        print(f"\n{row.sink} sink, rounds (capacity/leadflow msg/s): {pairs}")
        print(
            f"  bare clients, msg/s: sendmail {spread(row.by_sendmail)}, "
            f"MAIL/RCPT/DATA commands {spread(row.by_commands)}, "
            f"pipelined {spread(row.by_pipelined)}"
        )
        print(
            f"  CPU ms per message in this process (the sink has its own): sendmail client "
            f"{_ms(row.sendmail_cpu)}, commands client {_ms(row.commands_cpu)}, "
            f"pipelined client {_ms(row.pipelined_cpu)}, "
            f"leadflow {_ms(row.drain_cpu)}"
        )
        if row.delay:
            bound = row.connections / (REPLIES_PER_MESSAGE * row.delay)
            print(
                f"  bound: {row.connections} connections x 1 message per "
                f"{REPLIES_PER_MESSAGE} replies x {1000 * row.delay:.0f} ms = {bound:.0f} msg/s; "
                f"leadflow reaches {spread(row.drains, 100 / bound, '%')} of it"
            )
    print()
    for row in rows:
        met = statistics.median(row.shares) >= 0.85
        print(f">= 85% of capacity, {row.sink} sink: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--sink":
        run_sink(int(sys.argv[2]), float(sys.argv[3]))
    else:
        main()
