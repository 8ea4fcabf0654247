"""``leadflow report``: the funnel measured over a period (docs/report.md), as a terminal table,
CSV, JSON or one self-contained HTML file with charts."""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leadflow.cli.context import cli_context
from leadflow.errors import UserInputError
from leadflow.funnel.period import Grouping
from leadflow.suggestions import did_you_mean

if TYPE_CHECKING:
    from leadflow.funnel.period import Period
    from leadflow.funnel.report import Report
    from leadflow.funnel.sections import Row


class ReportFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    html = "html"


def show_report(
    ctx: typer.Context,
    start: Annotated[
        str, typer.Option("--from", help="First day (2017-01-01) or instant of the period.")
    ],
    end: Annotated[
        str,
        typer.Option("--to", help="Last day, included (2017-12-31), or instant, excluded."),
    ],
    by: Annotated[Grouping, typer.Option("--by", help="Group the metrics by.")] = (Grouping.none),
    given_format: Annotated[
        ReportFormat | None,
        typer.Option(
            "--format",
            help="table, csv, json or html (default: table; with --output, the one its "
            "extension names: .txt .csv .json .html).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (html: required).")
    ] = None,
    stall: Annotated[
        list[str] | None,
        typer.Option(
            "--stall",
            help="STAGE=AGE: an open stay older than AGE is a stall (e.g. mql=2d); "
            "'*=AGE' for every other stage (default 30d).",
        ),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="Read the store as of this instant when the period ends later (default: the "
            "clock's now): nothing after it is counted; e.g. the last instant of `leadflow "
            "demo`'s days. Not before --from.",
        ),
    ] = None,
) -> None:
    """Measure the funnel over a period: conversion, velocity, SLA, pipeline, attribution.

    Stage counts and conversion, time in stage and stalls, SLA compliance per rep and pool,
    pipeline and sales velocity, attribution to source and campaign (docs/report.md)."""
    from leadflow.clock import SystemClock, parse_instant
    from leadflow.funnel.report import build_report
    from leadflow.funnel.sections import sections

    period = _period(start, end, by, stall or [])
    context = cli_context(ctx)
    if output is None:
        output_format = given_format or ReportFormat.table
    else:
        output_format = _output_format(output, given_format)
    if output_format is ReportFormat.html and output is None:
        msg = "--format html writes a file: give --output report.html"
        raise UserInputError(msg)
    if output is not None:
        check_writable(output, "--output")
    try:
        as_of = parse_instant(now) if now else SystemClock().now()
    except ValueError as exc:
        raise UserInputError(f"--now: {exc}") from None
    if as_of < period.start:
        # Nothing of the period has happened by then: every figure would be empty, and before
        # the report counted only up to now, the open ages came out negative (-10,061 days).
        given = f"--now {now}" if now else f"now ({as_of:%Y-%m-%dT%H:%M:%SZ})"
        msg = f"{given} is before --from {start}: the period has not begun by then"
        raise UserInputError(msg)
    # Made now by the wall clock, whatever instant --now reads the store as of.
    report = build_report(
        context.reading_engine,
        context.settings,
        period,
        as_of,
        generated_at=SystemClock().now(),
    )
    rows = sections(report)
    stages = context.settings.stages
    _note_unknown_stall_stages(period, stages.all(), rows["time_in_stage"], stages.deal_open)
    if output is not None:
        write_report(report, output, output_format, "--output", rows)
    elif output_format is ReportFormat.table:
        from leadflow.funnel.text import render_tables

        render_tables(report, rows, None)
    else:
        typer.echo(report_text(report, rows, output_format), nl=False)


def _output_format(output: Path, given: ReportFormat | None) -> ReportFormat:
    """The format of ``--output``: its extension names it, as ``simulate --report``'s does
    (``week.html`` alone is the HTML report). Another extension is refused, and so is one that
    names another format than ``--format``: box-drawn tables written to ``out.pdf`` or
    ``tables.html`` made a file nothing opens as its name says. A name without an extension
    (``/dev/stdout``) takes ``--format``, else the tables."""
    if not output.suffix:
        return given or ReportFormat.table
    found = file_format(output, "--output")
    if given is not None and given is not found:
        extension = next(ext for ext, named in FILE_FORMATS.items() if named is given)
        msg = (
            f"--output {output}: its extension names the {found.value} format, not --format "
            f"{given.value}; give a file name ending in {extension}"
        )
        raise UserInputError(msg)
    return found


def _note_unknown_stall_stages(
    period: Period, lead_stages: tuple[str, ...], stays: list[Row], deal_open: str | None = None
) -> None:
    """A note on stderr for a ``--stall`` stage that is no lead stage and held no stay: a typo
    (``--stall mq=2d``) otherwise changed nothing, silently. Deals' stages are the CRM's own, so
    one the report did not meet is named, not refused."""
    known = set(lead_stages) | {str(row["stage"]) for row in stays}
    # The configured open deal stage is suggested too: ``Enagaging`` in a report with no stay.
    choices = sorted(known | ({deal_open} if deal_open else set()))
    for stage in sorted(set(period.stall_after) - known):
        others = [name for name in choices if name != stage]
        hint = did_you_mean(stage, others, suffix=" ", ignore_case=True)
        typer.echo(
            f"note: --stall {stage}=...: no lead stage is named {stage!r} and no deal stayed in "
            f"such a stage; {hint}lead stages are {', '.join(lead_stages)}",
            err=True,
        )


def check_writable(output: Path, option: str) -> None:
    """Refuse an output the report could not be written to before spending time on it."""
    folder = output.parent
    if output.is_dir():
        msg = f"{option} {output} is a folder: give a file name"
    elif not folder.is_dir():
        msg = f"{option} {output}: the folder {folder} does not exist"
    elif not os.access(folder, os.W_OK) or (output.exists() and not os.access(output, os.W_OK)):
        msg = f"{option} {output}: not writable"
    else:
        return
    raise UserInputError(msg)


def _period(start: str, end: str, by: Any, stalls: list[str]) -> Period:
    from leadflow.durations import parse_duration
    from leadflow.funnel.period import Period

    first = _instant(start, "--from", end_of_day=False)
    last = _instant(end, "--to", end_of_day=True)
    if last <= first:
        msg = f"--to {end} is not after --from {start}"
        raise UserInputError(msg)
    ages: dict[str, timedelta] = {}
    default = timedelta(days=30)
    for given in stalls:
        stage, sep, age = given.partition("=")
        if not (sep and stage):
            msg = f"--stall {given!r}: write STAGE=AGE, e.g. mql=2d"
            raise UserInputError(msg)
        try:
            parsed = parse_duration(age)
        except ValueError as exc:
            msg = f"--stall {given!r}: {exc}"
            raise UserInputError(msg) from None
        if stage == "*":
            default = parsed
        else:
            ages[stage.strip()] = parsed
    return Period(first, last, by, ages, default)


def _instant(text: str, option: str, *, end_of_day: bool) -> datetime:
    """A date is the day's start in UTC (``--to``: the next day's start, so the day counts)."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        day = None
    if day is not None:
        from leadflow.funnel.period import day_start

        return day_start(day, after=end_of_day)
    from leadflow.clock import parse_instant

    try:
        return parse_instant(text)
    except ValueError as exc:
        msg = f"{option}: {exc}"
        raise UserInputError(msg) from None


def report_text(report: Report, rows: dict[str, list[Row]], output_format: ReportFormat) -> str:
    """The report as a CSV, JSON or HTML document (the table goes through a console)."""
    from leadflow.funnel import files

    return {
        ReportFormat.csv: files.csv_text,
        ReportFormat.json: files.json_text,
        ReportFormat.html: files.html_text,
    }[output_format](report, rows)


FILE_FORMATS = {
    ".txt": ReportFormat.table,
    ".csv": ReportFormat.csv,
    ".json": ReportFormat.json,
    ".html": ReportFormat.html,
}
"""``--output FILE`` (report), ``--report FILE`` (simulate): the format its extension names."""


def file_format(path: Path, option: str) -> ReportFormat:
    """The format of a report file by its extension; a clear error for any other."""
    found = FILE_FORMATS.get(path.suffix.lower())
    if found is None:
        known = ", ".join(FILE_FORMATS)
        msg = f"{option} {path}: name the format by the file's extension, one of {known}"
        raise UserInputError(msg)
    return found


def write_report(
    report: Report,
    path: Path,
    output_format: ReportFormat,
    option: str,
    rows: dict[str, list[Row]] | None = None,
) -> None:
    """Write ``report`` to ``path`` as ``leadflow report --format F --output path`` does; a
    file that cannot be written (a read-only file system, a full disk, a path the checks
    before could not foresee) is one line naming ``option``, not a traceback."""
    from leadflow.funnel.sections import sections

    rows = sections(report) if rows is None else rows
    try:
        if output_format is ReportFormat.table:
            from leadflow.funnel.text import render_tables

            render_tables(report, rows, path)
        else:
            path.write_text(report_text(report, rows, output_format), encoding="utf-8")
    except OSError as exc:
        msg = f"{option} {path}: cannot write it: {exc.strerror or exc}"
        raise UserInputError(msg) from None
