"""``leadflow send`` drains the outbox; ``leadflow outbox`` shows it and requeues failures."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import Engine

from leadflow.cli.console import data_console
from leadflow.cli.context import cli_context
from leadflow.clock import SystemClock
from leadflow.outbox.delivery import DrainReport
from leadflow.outbox.store import outbox_lines, requeue_failed, status_counts
from leadflow.settings import Settings
from leadflow.store.database import transaction


def send(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, then exit.")
    ] = False,
) -> None:
    """Deliver due outbox messages (until Ctrl-C or SIGTERM, or once with --once)."""
    context = cli_context(ctx)
    engine, settings = context.engine, context.settings
    report = asyncio.run(_send(engine, settings, once=once))
    console = data_console(stderr=True)
    for outbox_id, error in report.failures:
        console.print(f"failed: outbox message {outbox_id}: {error}")
    data_console().print(
        f"sent {report.sent}, retry later {report.retried}, failed {report.failed} "
        f"(transport {settings.mail.transport})"
    )
    if once and (report.retried or report.failed):
        # Something could not be delivered by this run: the relay (or a recipient's server)
        # refused or was unreachable. Scripts and cron see it; the rows wait for a retry.
        raise typer.Exit(3)


async def _send(engine: Engine, settings: Settings, *, once: bool) -> DrainReport:
    from leadflow.service.channels import drain_configured  # the service package loads on use

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await drain_configured(engine, settings, SystemClock(), once=once, stop=stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def outbox(
    ctx: typer.Context,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed messages.")] = False,
    retry: Annotated[
        int | None, typer.Option("--retry", help="Requeue this failed message now.")
    ] = None,
) -> None:
    """Show outbox depth and the messages not yet sent; --retry ID requeues a failed one."""
    context = cli_context(ctx)
    console = data_console()
    with transaction(context.engine) as session:
        if retry is not None:
            line = requeue_failed(session, retry, SystemClock().now())
            console.print(f"requeued outbox message {line.id} to {line.recipient}: {line.subject}")
            return
        counts = status_counts(session)
        lines = outbox_lines(session, failed_only=failed)
    console.print(", ".join(f"{status} {count}" for status, count in counts.items()))
    if not lines:
        return
    table = Table("id", "status", "kind", "to", "subject", "tries", "next", "rule", "why")
    for line in lines:
        table.add_row(
            str(line.id),
            line.status,
            line.category,
            line.recipient,
            line.subject,
            str(line.attempts),
            line.next_attempt_at.strftime("%Y-%m-%d %H:%M"),
            line.rule_id or "",
            line.detail or "",
        )
    console.print(table)
