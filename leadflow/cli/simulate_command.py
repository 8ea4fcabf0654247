"""``leadflow simulate``: the rules over a time range, on a copy of the store, day by day.

``--format json`` prints the same day rows and totals as one document, for scripts.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leadflow.cli.console import FormatOption, OutputFormat, data_console, print_json
from leadflow.cli.context import cli_context
from leadflow.cli.report_command import ReportFormat, check_writable, file_format, write_report
from leadflow.clock import SettableClock, outside_the_calendar, parse_instant
from leadflow.durations import parse_duration
from leadflow.errors import DurationError, UserInputError
from leadflow.funnel.period import Period

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from leadflow.engine.simulation import DayReport
    from leadflow.settings import Settings

FIELDS = (
    "mqls",
    "queued",
    "escalations",
    "reassigned",
    "recycled",
    "nurture_sent",
    "nurture_skipped",
    "emails_queued",
)
"""The DayReport counts a row shows, in the order of COLUMNS after the day."""
KEYS = (
    "mqls_assigned",
    "mqls_waiting",
    "sla_escalations",
    "reassigned",
    "deals_recycled",
    "nurture_emails",
    "nurture_skipped",
    "emails_queued",
)
"""The same counts' keys in ``--format json``."""
COLUMNS = (
    "day",
    "MQLs assigned",
    "MQLs waiting",
    "SLA escalations",
    "reassigned",
    "deals recycled",
    "nurture emails",
    "nurture skipped",
    "emails queued",
)


def simulate_range(
    ctx: typer.Context,
    start: Annotated[str, typer.Option("--from", help="First instant (ISO date or time, UTC).")],
    end: Annotated[str, typer.Option("--to", help="End of the range (exclusive).")],
    step: Annotated[str, typer.Option("--step", help="Clock step, e.g. 15m, 1h.")] = "1h",
    rules: Annotated[
        Path | None, typer.Option("--rules", help="Rules folder (default: paths.rules).")
    ] = None,
    output: FormatOption = OutputFormat.table,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Also write the funnel report of the simulated range to FILE "
            "(.txt, .csv, .json or .html, as leadflow report --format).",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show info log events on a terminal too.")
    ] = False,
) -> None:
    """Run the rules from --from to --to on a copy of the store and print what would have happened."""
    context = cli_context(ctx)
    context.render_for_person(verbose=verbose)
    try:
        first, last = parse_instant(start), parse_instant(end)
    except ValueError as exc:
        raise UserInputError(str(exc)) from None
    try:
        stride = parse_duration(step)
    except (ValueError, DurationError) as exc:
        raise UserInputError(f"--step: {exc}") from None
    for option, text, instant in (("--from", start, first), ("--to", end, last)):
        # As run --now: near the calendar's last day the SLA deadlines and the next step do
        # not exist (OverflowError), and each tick's timers failed on their own first. A step
        # is at most 100 years: from LATEST_NOW the last one still lands inside the calendar.
        outside = outside_the_calendar(instant)
        if outside is not None:
            raise UserInputError(f"{option} {text}: {outside}")
    if last <= first:
        msg = f"--to {end} must be after --from {start}"
        raise UserInputError(msg)
    if (last - first) / stride > 100_000:
        msg = f"--step {step} over that range is more than 100,000 steps; take a larger step"
        raise UserInputError(msg)
    report_format = _report_format(report)
    from leadflow.engine.runtime import Runtime
    from leadflow.engine.simulation import RuleFailures, copy_store, tick_over_range

    with tempfile.TemporaryDirectory(prefix="leadflow-simulate-") as folder:
        copy = copy_store(context.reading_engine, Path(folder) / "copy.db")
        runtime = Runtime.build(copy, context.settings, SettableClock(first))
        rule_set = runtime.load_rules(rules)
        failures: dict[str, RuleFailures] = {}
        reports = tick_over_range(runtime, rule_set, first, last, stride, failures=failures)
        if report is not None and report_format is not None:
            simulated = Period(first, last, now=runtime.clock.now())
            _write_funnel_report(copy, context.settings, simulated, report, report_format)
        copy.dispose()
    if output is OutputFormat.json:
        document = simulation_document(reports, rule_set.version, first, last, step)
        document["failures"] = [tally.text() for tally in failures.values()]
        print_json(document)
    else:
        _print(reports, rule_set.version, report_file=report)
        for tally in failures.values():
            typer.echo(f"failed: {tally.text()}", err=True)
    if any(tally.external for tally in failures.values()):
        raise typer.Exit(3)  # the database or the mail server failed, not the rules
    if failures:
        raise typer.Exit(1)  # as run --once: a rule, or a firing of one, failed


def _report_format(path: Path | None) -> ReportFormat | None:
    """Checked before simulating, so a wrong name costs no simulation."""
    if path is None:
        return None
    check_writable(path, "--report")
    return file_format(path, "--report")


def _write_funnel_report(
    copy: Engine,
    settings: Settings,
    period: Period,
    path: Path,
    report_format: ReportFormat,
) -> None:
    """``leadflow report`` of ``period`` over the simulated copy, written to ``path``: what is
    open measured by the simulated clock (``period.now``), not the wall clock."""
    from leadflow.clock import SystemClock
    from leadflow.funnel.report import build_report

    report = build_report(copy, settings, period, SystemClock().now())
    write_report(report, path, report_format, "--report")


def simulation_document(
    reports: list[DayReport], version: str, first: datetime, last: datetime, step: str
) -> dict[str, Any]:
    """``simulate --format json``: each day's counts and the totals, with stable keys."""
    return {
        "rule_version": version,
        "from": first,
        "to": last,
        "step": step,
        "days": [
            {
                "date": report.date,
                **{key: getattr(report, name) for key, name in zip(KEYS, FIELDS, strict=True)},
            }
            for report in reports
        ],
        "totals": {
            key: sum(getattr(report, name) for report in reports)
            for key, name in zip(KEYS, FIELDS, strict=True)
        },
    }


def _print(reports: list[DayReport], version: str, *, report_file: Path | None) -> None:
    from rich.table import Table

    table = Table(*COLUMNS, title=f"What the rules (version {version}) would have done", box=None)
    for report in reports:
        table.add_row(report.day, *(str(getattr(report, name)) for name in FIELDS))
    totals = [sum(getattr(r, name) for r in reports) for name in FIELDS]
    table.add_row("total", *(str(value) for value in totals), style="bold")
    console = data_console(min_width=150)
    console.print(table)
    console.print(
        "Simulated on a copy of the store: nothing was written to it and no email was sent."
    )
    if report_file is not None:
        console.print(f"The funnel report of the simulated range: {report_file}", soft_wrap=True)
