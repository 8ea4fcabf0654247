"""``leadflow prune``: one retention run by hand, what the daemon's retention job does hourly.

Settled outbox rows older than ``mail.keep_sent``, audit rows older than ``audit.keep``
(archived first into ``audit.archive``) and score changes older than
``audit.keep_score_changes`` are deleted in batches; ``--dry-run`` only counts them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from leadflow.cli.console import FormatOption, OutputFormat, data_console, print_json
from leadflow.cli.context import cli_context
from leadflow.clock import SystemClock
from leadflow.durations import format_duration


def prune_store(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Delete old sent outbox rows, old audit rows (archived first) and old score changes, as
    the daemon does."""
    from leadflow.engine.retention import prune  # the engine loads on use
    from leadflow.settings import FOREVER

    context = cli_context(ctx)
    settings = context.settings
    # --dry-run only counts: it reads the store as it is, and never migrates it.
    engine = context.reading_engine if dry_run else context.existing_engine
    report = prune(engine, settings, SystemClock().now(), dry_run=dry_run)
    archive = settings.path(settings.audit.archive) if settings.audit.archive else None
    if output is OutputFormat.json:
        print_json(
            {
                "dry_run": report.dry_run,
                "outbox_cutoff": report.outbox_cutoff,
                "audit_cutoff": report.audit_cutoff,
                "outbox_deleted": report.outbox_deleted,
                "audit_deleted": report.audit_deleted,
                "score_changes_cutoff": report.score_changes_cutoff,
                "score_changes_deleted": report.score_changes_deleted,
                "audit_recovered": report.audit_recovered,
                "archive": None if archive is None else str(archive),
                "archive_files": [str(path) for path in report.archive_files],
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    keep_sent = format_duration(settings.mail.keep_sent)
    lines = [
        f"outbox: {verb} {report.outbox_deleted:,} sent, failed or suppressed messages older "
        f"than {keep_sent} (before {report.outbox_cutoff:%Y-%m-%d %H:%M} UTC)"
    ]
    keep = settings.audit.keep
    if report.audit_cutoff is None or keep == FOREVER or isinstance(keep, str):
        lines.append("audit: kept forever (audit.keep: forever)")
    else:
        where = (
            f"; archived first in {archive}/"
            if archive is not None
            else "; not archived (audit.archive is not set)"
        )
        files = "" if dry_run else f" ({len(report.archive_files)} files)"
        lines.append(
            f"audit: {verb} {report.audit_deleted:,} rows older than {format_duration(keep)} "
            f"(before {report.audit_cutoff:%Y-%m-%d %H:%M} UTC){where}{files}"
        )
    keep_changes = settings.audit.keep_score_changes
    if report.score_changes_cutoff is None or isinstance(keep_changes, str):
        lines.append("score changes: kept forever (audit.keep_score_changes: forever)")
    else:
        lines.append(
            f"score changes: {verb} {report.score_changes_deleted:,} rows older than "
            f"{format_duration(keep_changes)} (before {report.score_changes_cutoff:%Y-%m-%d %H:%M}"
            " UTC); not archived"
        )
    if report.audit_recovered:
        lines.append(
            f"audit: {report.audit_recovered:,} rows an interrupted run had archived were deleted"
        )
    console = data_console()
    for line in lines:
        console.print(line, soft_wrap=True)
