"""``leadflow send`` drains the outbox; ``leadflow outbox`` shows it and requeues failures.

The listing is cut at ``--limit`` rows and says how many it left out: an operator reading 50 of
143 rows must not take them for the whole queue.
"""

from __future__ import annotations

import contextlib
import signal
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leadflow.cli.console import FormatOption, OutputFormat, data_console, print_json
from leadflow.cli.context import cli_context
from leadflow.clock import SystemClock

if TYPE_CHECKING:
    from rich.table import Table
    from sqlalchemy import Engine

    from leadflow.outbox.delivery import DrainReport
    from leadflow.outbox.store import OutboxLine
    from leadflow.settings import Settings


def send(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, then exit.")
    ] = False,
) -> None:
    """Deliver due outbox messages (until Ctrl-C or SIGTERM, or once with --once)."""
    import asyncio

    context = cli_context(ctx)
    engine, settings = context.existing_engine, context.settings
    report = asyncio.run(_send(engine, settings, once=once))
    console = data_console(stderr=True)
    for outbox_id, error in report.failures:
        console.print(f"failed: outbox message {outbox_id}: {error}")
    if report.held:
        # Cut off at the stop (the relay still owed its reply past scheduler.shutdown_grace):
        # said, as the daemon says it, or the operator reads "sent 0" and looks for a fault.
        from leadflow.durations import format_duration

        until, grace = report.leased_until(), settings.scheduler.shutdown_grace
        when = f" until {until.isoformat()}" if until is not None else ""
        console.print(
            f"stopped past scheduler.shutdown_grace ({format_duration(grace)}): "
            f"{len(report.held)} message(s) in flight stay sending{when}, then are sent again "
            "with the same Message-ID",
            soft_wrap=True,
        )
    data_console().print(
        f"sent {report.sent}, retry later {report.retried}, failed {report.failed} "
        f"(transport {settings.mail.transport})"
    )
    if once and (report.retried or report.failed):
        # Something could not be delivered by this run: the relay (or a recipient's server)
        # refused or was unreachable. Scripts and cron see it; the rows wait for a retry.
        raise typer.Exit(3)


async def _send(engine: Engine, settings: Settings, *, once: bool) -> DrainReport:
    import asyncio

    from leadflow.outbox.delivery import DrainReport
    from leadflow.service.channels import drain_configured  # the service package loads on use

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    report = DrainReport()
    sending = asyncio.ensure_future(
        drain_configured(engine, settings, SystemClock(), once=once, stop=stop, report=report)
    )
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sending, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not sending.done():
            # As the daemon stops: the deliveries in flight get scheduler.shutdown_grace, not
            # mail.smtp.data_done_timeout (10 minutes) for a relay still owing its reply.
            grace = settings.scheduler.shutdown_grace.total_seconds()
            await asyncio.wait({sending}, timeout=grace)
        if not sending.done():
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
            return report
        return sending.result()
    finally:
        stopping.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def outbox(
    ctx: typer.Context,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed messages.")] = False,
    retry: Annotated[
        int | None, typer.Option("--retry", help="Requeue this failed message now.")
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Requeue every failed message now (see --since)."),
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="With --retry-failed: only messages failed from this time."),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            "--limit", min=0, help="Show at most this many messages; 0: every one (as run's)."
        ),
    ] = 50,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Show outbox depth and the messages not yet sent; requeue failed ones.

    --retry ID requeues one failed message, --retry-failed every failed one (after a relay's
    outage, say)."""
    from leadflow.outbox.store import (
        FAILED,
        SENT,
        outbox_lines,
        requeue_all_failed,
        requeue_failed,
        status_counts,
    )
    from leadflow.store.database import transaction

    context = cli_context(ctx)
    console = data_console(min_width=190)  # a pipe or a log is 80 columns: no cell cut
    failed_since = _failed_since(since, retry_failed=retry_failed, retry=retry)
    # Only requeueing writes: the listing reads the store as it is, never migrating it.
    writes = retry_failed or retry is not None
    engine = context.existing_engine if writes else context.reading_engine
    with transaction(engine) as session:
        if retry_failed:
            count = requeue_all_failed(session, SystemClock().now(), failed_since)
            if output is OutputFormat.json:
                print_json({"requeued_count": count})
                return
            console.print(f"requeued {count} failed outbox message{'' if count == 1 else 's'}")
            return
        if retry is not None:
            line = requeue_failed(session, retry, SystemClock().now())
            if output is OutputFormat.json:
                print_json({"requeued": asdict(line)})
                return
            console.print(f"requeued outbox message {line.id} to {line.recipient}: {line.subject}")
            return
        counts = status_counts(session)
        lines = outbox_lines(session, failed_only=failed, limit=limit or None)
    # The rows outbox_lines lists: the failed ones, or every one not yet sent.
    total = counts[FAILED] if failed else sum(n for status, n in counts.items() if status != SENT)
    if output is OutputFormat.json:
        print_json(outbox_document(counts, lines, total=total, failed=failed))
        return
    console.print(", ".join(f"{status} {count}" for status, count in counts.items()))
    if lines:
        console.print(_outbox_table(lines))
    if total > len(lines):
        console.print(f"... and {total - len(lines)} more (use --limit)")


def _failed_since(since: str | None, *, retry_failed: bool, retry: int | None) -> Any:
    from leadflow.clock import parse_instant
    from leadflow.errors import UserInputError

    if retry_failed and retry is not None:
        raise UserInputError("give --retry ID or --retry-failed, not both")
    if since is None:
        return None
    if not retry_failed:
        raise UserInputError("--since goes with --retry-failed")
    try:
        return parse_instant(since)
    except ValueError as exc:
        raise UserInputError(f"--since: {exc}") from None


def outbox_document(
    counts: dict[str, int], lines: list[OutboxLine], *, total: int, failed: bool
) -> dict[str, Any]:
    """``outbox --format json``: the counts and the rows listed, with stable keys."""
    return {
        "by_status": counts,
        "listing": "failed" if failed else "not_sent",
        "total": total,
        "shown": len(lines),
        "messages": [asdict(line) for line in lines],
    }


def _outbox_table(lines: list[OutboxLine]) -> Table:
    from datetime import UTC

    from rich.table import Table

    from leadflow.outbox.claimers import parse_claimer

    table = Table("id", "status", "kind", "to", "subject", "tries", "next (UTC)", "rule", "why")
    for line in lines:
        next_at, why = line.next_attempt_at, line.detail or ""
        if line.lease_until is not None:
            # A sending row is next tried when its lease ends (its sender gone): after a
            # kill -9 it stays sending until then, and must not look like one being sent.
            # Its previous error stays in the JSON's detail: one line must hold the claim.
            next_at = line.lease_until
            until = line.lease_until.astimezone(UTC)
            why = f"claimed by {line.claimed_by or '?'} until {until:%H:%M:%S} UTC"
            gone = parse_claimer(line.claimed_by) if line.claimer_gone else None
            if gone is not None:
                why = (
                    f"claimed by a process that is gone (host {gone.host}, pid {gone.pid}): "
                    f"retried at {until:%H:%M:%S} UTC"
                )
        table.add_row(
            str(line.id),
            line.status,
            line.category,
            line.recipient,
            line.subject,
            str(line.attempts),
            (next_at if next_at.tzinfo is None else next_at.astimezone(UTC)).strftime(
                "%Y-%m-%d %H:%M"
            ),
            line.rule_id or "",
            why,
        )
    return table
