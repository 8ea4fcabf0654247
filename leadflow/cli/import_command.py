"""``leadflow import KIND FILE``: bring a CRM export in; rejected rows listed as FILE:LINE.

Exit 0 when every row landed, 1 when any row was rejected (the valid rows still land unless
``--strict``), 1 for a file that cannot be read at all, 3 when the store fails, 130 when
stopped by Ctrl-C (SIGINT).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from leadflow.cli.console import data_console
from leadflow.cli.context import cli_context
from leadflow.clock import SystemClock
from leadflow.errors import UserInputError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from leadflow.ingest import ImportReport
    from leadflow.ingest.runner import Progress as ProgressCallback
    from leadflow.settings import ImportKind, Settings

PROGRESS_MIN_BYTES = 5_000_000
SAMPLE_ORDER: tuple[ImportKind, ...] = ("reps", "leads", "deals", "activities")


class KindChoice(StrEnum):
    reps = "reps"
    leads = "leads"
    deals = "deals"
    activities = "activities"
    sample = "sample"


class FormatChoice(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def import_records(
    ctx: typer.Context,
    kind: Annotated[
        KindChoice,
        typer.Argument(
            help="reps, leads, deals or activities; 'sample' imports the bundled sample."
        ),
    ],
    file: Annotated[Path | None, typer.Argument(help="The CSV or JSONL export.")] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="All or nothing: one rejected row rolls back the file.")
    ] = False,
    file_format: Annotated[
        FormatChoice | None,
        typer.Option("--format", help="csv or jsonl (default: from the file's extension)."),
    ] = None,
) -> None:
    """Upsert reps, leads, deals or activities from a CSV or JSONL file by external id."""
    sample = kind is KindChoice.sample
    if sample:
        jobs = [(k, sample_file(k)) for k in SAMPLE_ORDER]
    elif file is None:
        msg = f"give the file to import: leadflow import {kind.value} FILE"
        raise UserInputError(msg)
    else:
        jobs = [(next(k for k in SAMPLE_ORDER if k == kind.value), file)]
    rejected = 0
    for job_kind, path in jobs:
        report = _run_one(
            ctx, job_kind, path, strict=strict, file_format=file_format, sample=sample
        )
        rejected += report.rejected
    if rejected:
        raise typer.Exit(1)


def sample_file(kind: ImportKind) -> Path:
    """The bundled sample export of ``kind`` (``leadflow/samples/KIND.csv``)."""
    from importlib import resources

    return Path(str(resources.files("leadflow.samples").joinpath(f"{kind}.csv")))


def _run_one(
    ctx: typer.Context,
    kind: ImportKind,
    path: Path,
    *,
    strict: bool,
    file_format: FormatChoice | None,
    sample: bool = False,
) -> ImportReport:
    from leadflow.ingest import ImportInterruptedError, import_file
    from leadflow.scoring.ownership import import_score_column

    context = cli_context(ctx)
    settings = _for_sample(context.settings) if sample else context.settings
    try:
        with _progress_bar(path) as progress:
            report = import_file(
                context.engine,
                settings,
                kind,
                path,
                strict=strict,
                file_format=file_format.value if file_format else None,
                clock=SystemClock(),
                progress=progress,
                leads_plan=import_score_column(settings),
            )
    except ImportInterruptedError as interrupted:
        _tell_interrupted(kind, path, interrupted.report)
        raise
    if report.spaced_pools:
        _note_spaced_pools(report, settings)
    # In file order: a note on a superseded row sits among the rejections around it.
    for line in sorted((*report.notes, *report.problems), key=lambda problem: problem.line):
        print(line, file=sys.stderr)
    if report.unlisted:
        print(f"{path}: ... and {report.unlisted} more rejected rows", file=sys.stderr)
    if report.rolled_back:
        print(f"{path}: --strict: nothing was imported because rows were rejected", file=sys.stderr)
    print(f"{kind} {report.file}: {report.summary}")
    if kind in ("leads", "activities") and not report.rolled_back:
        _score_imported(context.engine, settings, kind, report.file)
    return report


def _score_imported(engine: Engine, settings: Settings, kind: ImportKind, file: str) -> None:
    """With the rules folder's model enabled, score at once the leads the import wrote (its
    writes marked them due), as the API scores posted records: a lead imported is never left
    at score 0 for the rules until the next pass. Says how many scores changed; a folder that
    does not load scores nothing (the daemon's next tick does)."""
    from leadflow.engine.scoring_step import score_due_leads
    from leadflow.scoring.ownership import model_in_folder
    from leadflow.scoring.rescoring import ScoringFailedError

    model, _unreadable = model_in_folder(settings)
    if model is None or not model.enabled:
        return
    try:
        changed = score_due_leads(engine, model, SystemClock().now(), logged=False)
    except ScoringFailedError as exc:  # the rows are in; the next pass tries the scores again
        print(f"{kind} {file}: not scored: {exc}", file=sys.stderr)
        return
    print(f"{kind} {file}: scored by the model, {changed} score(s) changed")


def _tell_interrupted(kind: ImportKind, path: Path, report: ImportReport) -> None:
    """What an import stopped by Ctrl-C committed (whole batches; nothing of a bulk or
    ``--strict`` import), and that importing the file again finishes it."""
    for line in sorted((*report.notes, *report.problems), key=lambda problem: problem.line):
        print(line, file=sys.stderr)
    print(
        f"{kind} {report.file}: interrupted; committed before: {report.summary}; "
        f"import the file again to finish",
    )


def _note_spaced_pools(report: ImportReport, settings: Settings) -> None:
    """Note (on stderr with the others, and in the log) each pool name with a space or comma
    that no rule routes to: the row landed as written, but ``;`` separates pools. The rules
    are read as they are; a folder that does not load routes to no pool here."""
    import structlog

    from leadflow.engine.pool_staffing import spaced_pool_notes
    from leadflow.errors import Problem
    from leadflow.rule_language.loader import check_rule_set

    try:
        rule_set, _problems = check_rule_set(settings.path(settings.paths.rules), settings)
    except UserInputError:
        rule_set = None
    rules = rule_set.rules if rule_set is not None else ()
    log = structlog.get_logger("leadflow.ingest")
    for line, note in spaced_pool_notes(report.spaced_pools, rules):
        log.warning("import_pool_name_spaced", file=report.file, line=line, note=note)
        report.notes.append(Problem(report.file, line, 0, note))


def _for_sample(settings: Settings) -> Settings:
    """The bundled sample's leads carry a ``region`` (the shipped config.yaml declares it and
    the MQL rule's pools read it); a configuration without that attribute imports the sample
    with the column skipped instead of refusing the file."""
    from leadflow.ingest.mapping import SKIP
    from leadflow.settings import ImportMapping

    if "region" in settings.attributes.leads:
        return settings
    mappings = dict(settings.imports.mappings)
    leads = mappings.get("leads", ImportMapping())
    mappings["leads"] = leads.model_copy(update={"columns": {**leads.columns, "region": SKIP}})
    imports = settings.imports.model_copy(update={"mappings": mappings})
    return settings.model_copy(update={"imports": imports})


@contextmanager
def _progress_bar(path: Path) -> Iterator[ProgressCallback | None]:
    """A rich progress bar on stderr for large files when stderr is a terminal."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    if not sys.stderr.isatty() or size < PROGRESS_MIN_BYTES:
        yield None
        return
    columns = (BarColumn(), DownloadColumn(), TimeRemainingColumn())
    # Refreshed by each update, not by rich's refresh thread: a large file's rows are read in
    # a forked process, and a fork should not copy a thread's state (a lock it held).
    console = data_console(stderr=True)
    with Progress(*columns, console=console, transient=True, auto_refresh=False) as bar:
        task = bar.add_task(str(path), total=size)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, refresh=True)

        yield advance
