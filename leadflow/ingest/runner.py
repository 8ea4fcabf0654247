"""One import: check the file, plan its columns, stream it in batches, record the run.

Each batch is written in its own transaction, so the valid rows of a file land even when some
are rejected; with ``strict`` the whole file is one transaction that is rolled back if any row
is rejected. The run (kind, file, counts, status) is recorded in ``import_runs`` either way.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import replace
from datetime import datetime
from functools import partial
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple, cast

from sqlalchemy import Connection, Engine

from leadflow.clock import Clock
from leadflow.collector_pause import collector_paused
from leadflow.errors import ImportRowError, Problem, UserInputError
from leadflow.ingest.activity_rows import ActivityWriter
from leadflow.ingest.column_plan import ColumnPlan
from leadflow.ingest.deal_rows import DealWriter
from leadflow.ingest.feeder import Send, can_fork, fed
from leadflow.ingest.import_report import MAX_KEPT_PROBLEMS, ImportReport, same_content
from leadflow.ingest.import_runs import finish_run, record_refused, start_run
from leadflow.ingest.index_builds import (
    bulk_tables,
    estimated_rows,
    holds_fewer,
    indexes_built_after,
)
from leadflow.ingest.interruption import ctrl_c_held_back_when_shielded, shielded
from leadflow.ingest.kind_writer import Checked, KindWriter, Record
from leadflow.ingest.lead_rows import LeadWriter
from leadflow.ingest.mapping import KIND_FIELDS, compile_plan, unknown_keys
from leadflow.ingest.nesting import nested_objects
from leadflow.ingest.readers import FooterNote, RowSource, check_text_file, format_of
from leadflow.ingest.references import RepDirectory
from leadflow.ingest.repeats import Later, Sources, superseded_lines
from leadflow.ingest.reps import RepWriter
from leadflow.ingest.writers import (
    Counts,
    DriverForm,
    DriverRow,
    Prepared,
    Superseded,
    TableWriter,
    latest_per_key,
)
from leadflow.settings import ImportKind, ImportMapping, Settings
from leadflow.store.database import transaction

WRITERS: dict[ImportKind, type[KindWriter]] = {
    "reps": RepWriter,
    "leads": LeadWriter,
    "deals": DealWriter,
    "activities": ActivityWriter,
}
FED_MIN_ROWS = 100_000
"""From this many rows (estimated) a file's rows are read in a process of their own."""
FED_PART_ROWS = 5_000
"""Rows per part the reading process sends; the writer commits a batch's worth of parts."""
SQLITE_CACHE_KB = 64 * 1024
Progress = Callable[[int, int], None]
"""Called after each batch with (bytes read, file size)."""


LeadsPlan = Callable[[ColumnPlan], tuple[ColumnPlan, str | None]]
"""What an edge does to a leads file's column plan before its rows are read, and the note
saying so (None: nothing to say); see :func:`leadflow.scoring.ownership.import_score_column`."""


def import_file(
    engine: Engine,
    settings: Settings,
    kind: ImportKind,
    path: Path,
    *,
    clock: Clock,
    strict: bool = False,
    file_format: str | None = None,
    progress: Progress | None = None,
    leads_plan: LeadsPlan | None = None,
) -> ImportReport:
    """Import ``path`` as ``kind``; file-level problems raise before any row is written.

    A refused file (unreadable, bad header, unknown column) is still a run: it is recorded in
    ``import_runs`` with status ``refused``, so ``leadflow status`` shows it as the last import.
    ``leads_plan``: what the caller does to a leads file's plan before its rows are read
    (``leadflow import`` leaves the ``score`` column out while the rules folder's scoring model
    is enabled); a rule test's given file is taken as written.
    """
    now = clock.now()
    report = ImportReport(kind, shown_path(path))
    try:
        with ctrl_c_held_back_when_shielded():
            _import(
                engine,
                settings,
                path,
                report,
                now,
                clock,
                strict,
                file_format,
                progress,
                leads_plan,
            )
    except UserInputError:
        if report.run_id is None:
            record_refused(engine, report, now)
        raise
    except KeyboardInterrupt:
        _in_file_order(report)
        raise ImportInterruptedError(report) from None
    _in_file_order(report)
    return report


class ImportInterruptedError(KeyboardInterrupt):
    """Ctrl-C stopped the import; ``report`` counts what it committed before."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__()
        self.report = report


def _in_file_order(report: ImportReport) -> None:
    # Rows are rejected while read and while written (references); report them in file order,
    # as the notes (a superseded row is noted at its later row's line, once that is known).
    report.problems.sort(key=lambda problem: problem.line)
    report.notes.sort(key=lambda problem: problem.line)


def _import(
    engine: Engine,
    settings: Settings,
    path: Path,
    report: ImportReport,
    now: datetime,
    clock: Clock,
    strict: bool,
    file_format: str | None,
    progress: Progress | None,
    leads_plan: LeadsPlan | None,
) -> None:
    kind = report.kind
    mapping = settings.imports.mappings.get(kind, ImportMapping())
    chosen = format_of(path, file_format)
    check_text_file(path, mapping.encoding, f"import.mappings.{kind}")
    nests = nested_objects(KIND_FIELDS[kind], mapping.columns) if chosen == "jsonl" else ()
    footer = mapping.footer == "after_blank_line"
    opened = partial(
        RowSource, path, chosen, mapping.encoding, mapping.delimiter, kind, nests, footer
    )
    with opened() as source:
        if chosen == "jsonl":
            unknown = unknown_keys(kind, source.header, settings)
            # A key on the first object's line is the file's header, as a CSV column would be:
            # one refusal, not every line rejected. One seen later rejects only its lines.
            first = source.first_object_line
            late = {key: why for key, why in unknown.items() if source.key_lines[key] > first}
            source.refuse_keys(late)
        lines = source.key_lines if chosen == "jsonl" else None
        plan = compile_plan(kind, source.header, settings, str(path), lines)
        report.columns = plan.columns_named_otherwise()
        report.notes += source.notes
        if kind == "leads" and leads_plan is not None:
            plan, note = leads_plan(plan)
            if note is not None:
                report.notes.append(Problem(report.file, 1, 0, note))
        with engine.connect() as connection:
            reps = RepDirectory.load(connection, mapping.rep_reference)
        writer = WRITERS[kind](plan, settings, now, reps)
        writer.cause, writer.source = "import", report.file
        # The report keeps the first problems only: a row rejected beyond them is counted, and
        # its fields are not all checked again for messages no one reads.
        writer.problems_to_name = MAX_KEPT_PROBLEMS

        @contextmanager
        def again() -> Iterator[RowSource]:
            with opened() as reread:
                reread.refuse_keys(source.refused_keys)
                yield reread

        if isinstance(writer, RepWriter):
            with again() as reread:
                writer.survey(_noting_spaced_pools(plan, reread, report.spaced_pools))
        status = "failed"
        run_id: int | None = None
        try:
            with shielded():  # a Ctrl-C now comes once the run's row is there to finish
                report.run_id = run_id = start_run(engine, report, now)
            # Paused for the whole import; _stream collects young objects per batch. A batch's
            # tens of thousands of short-lived objects, traversed by the automatic collector,
            # cost half the time of a large import.
            with collector_paused():
                status = _load(engine, writer, source, again, report, strict, progress)
        except KeyboardInterrupt:
            status = "interrupted"  # Ctrl-C, as a killed import shows: not a failure of the file
            with shielded():  # its counts, recorded and printed, are of committed batches
                report.back_to_committed()
            raise
        finally:
            if run_id is not None:
                with shielded():  # a second Ctrl-C does not leave the run `running`
                    finish_run(engine, run_id, report, status, clock.now())


def shown_path(path: Path) -> str:
    """The file's name as text a store and a terminal take: an undecodable byte as ``\\xff``.

    A name that is not valid UTF-8 reaches Python with lone surrogates in it, which neither
    ``import_runs.file`` nor the summary line on stdout can encode.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@contextmanager
def _writing(engine: Engine, report: ImportReport) -> Iterator[Connection]:
    """A writing transaction's connection, with the page cache a large import needs.

    Its begin, commit and rollback are shielded from Ctrl-C (:mod:`.interruption`): a Ctrl-C
    during the rows rolls the transaction back and takes back the counts it had added to
    ``report``; a commit marks the report committed (:meth:`ImportReport.mark_committed`), so
    an interrupted import's counts, rejected rows included, are what it committed.
    """
    committed = replace(report.counts)
    with ExitStack() as held:
        with shielded():
            session = held.enter_context(transaction(engine))
            connection = session.connection()
            if connection.dialect.name == "sqlite":
                # The unique and secondary indexes of a large table outgrow SQLite's default
                # 2 MB page cache; re-reading their pages made a 1M-row import I/O bound.
                connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KB}")
            ending = held.pop_all()
        try:
            yield connection
        except BaseException:
            with shielded():
                report.counts = committed
                if not ending.__exit__(*sys.exc_info()):
                    raise
        else:
            with shielded():
                ending.close()  # commits
                report.mark_committed()


class _StrictRollbackError(Exception):
    """Raised inside a strict import's one transaction to roll all of it back."""


def _noting_spaced_pools(
    plan: ColumnPlan, source: RowSource, spaced: dict[str, int]
) -> Iterator[Record]:
    """The readable records; each pool name with a space or a comma goes into ``spaced`` with
    its first line (a reps file is small: this pass reads it anyway, for the managers)."""
    for line, cells, problem in source.rows():
        if problem is not None:
            continue
        try:
            record = plan.read(cells)
        except ImportRowError:
            continue
        for pool in record.get("pools") or ():  # stripped texts (values.text_list)
            if " " in pool or "," in pool:
                spaced.setdefault(pool, line)
        yield record


def _load(
    engine: Engine,
    writer: KindWriter,
    source: RowSource,
    again: Sources,
    report: ImportReport,
    strict: bool,
    progress: Progress | None,
) -> str:
    """Find the rows a later row of their id supersedes, stream, write, finish; returns the
    run's status.

    Without ``strict`` every batch is a writing transaction of its own, unless the import is
    bulk (:mod:`leadflow.ingest.index_builds`): then the whole file is one, with the tables'
    secondary indexes built after the rows. With ``strict`` the whole file is one, rolled back
    when any row was rejected. Either way a transaction that fails leaves nothing of itself.
    """
    report.mark_committed()  # nothing yet: a Ctrl-C before the first commit kept no row
    with engine.connect() as connection:
        skip = superseded_lines(connection, writer, again, writer.settings.imports.batch_size)
    incoming = estimated_rows(source.path, source.total_bytes)
    bulk = bulk_tables(engine, writer.bulk_tables, incoming)
    with _reading(writer, source, incoming, engine.dialect.name, skip) as feed:
        if not strict and not bulk:
            batch = lambda: _writing(engine, report)  # noqa: E731 - as in _load_whole
            _load_batches(batch, writer, source, report, progress, feed, skip)
            return "rejected rows" if report.rejected else "done"
        return _load_whole(engine, writer, source, report, strict, progress, feed, bulk, skip)


def _load_whole(
    engine: Engine,
    writer: KindWriter,
    source: RowSource,
    report: ImportReport,
    strict: bool,
    progress: Progress | None,
    feed: Iterator[_Read] | None,
    bulk: list[str],
    skip: Mapping[int, Later],
) -> str:
    """The whole file in one transaction (strict, or bulk); returns the run's status."""
    try:
        with _writing(engine, report) as connection, indexes_built_after(connection, bulk):
            batch = lambda: nullcontext(connection)  # noqa: E731 - as in the other branch
            # Held by this transaction since the drops (SQLite's write lock, PostgreSQL's
            # exclusive lock), a table empty now holds only what this import writes.
            empty = writer.table.name in bulk and holds_fewer(connection, writer.table.name, 1)
            _load_batches(batch, writer, source, report, progress, feed, skip, empty)
            if strict:
                _roll_back_if_rejected(report)
    except _StrictRollbackError:
        report.rolled_back = True
        report.counts = Counts()
        return "rolled back"
    except BaseException:
        report.counts = Counts()  # the one transaction rolled back: nothing of the file is in
        raise
    return "rejected rows" if report.rejected else "done"


def _roll_back_if_rejected(report: ImportReport) -> None:
    if report.rejected:
        raise _StrictRollbackError


class _Read(NamedTuple):
    """A part read, checked and hashed by the reading process, its rows in the driver's form
    (plain values, cheap to pickle and written as they are), with the rows it rejected."""

    rows: list[DriverRow]
    lines: list[int]
    """Each row's line in the file."""
    problems: list[tuple[int, str]]
    rejected: int
    """Rows rejected since the previous batch (``problems`` holds the first of them)."""
    superseded: list[Superseded]
    bytes_read: int
    notes: list[tuple[int, str]]
    """What the reading process noted (a skipped footer)."""

    def tell(self, report: ImportReport) -> None:
        for line, note in self.notes:
            report.note(line, note)
        # A row with several bad fields has a problem each, on its line.
        told = 0
        for line, problems in groupby(self.problems, key=itemgetter(0)):
            report.reject(line, *(message for _line, message in problems))
            told += 1
        report.rejected += self.rejected - told
        report.unlisted += self.rejected - told
        report.supersede(self.superseded, same_content(report.kind, self.superseded))


@contextmanager
def _reading(
    writer: KindWriter, source: RowSource, incoming: int, dialect: str, skip: Mapping[int, Later]
) -> Iterator[Iterator[_Read] | None]:
    """A reading process's batches for a large file of a kind that prepares alone; else None
    (the rows are read and prepared in this process, between the writes)."""
    if not (writer.prepares_alone and incoming >= FED_MIN_ROWS and can_fork()):
        yield None
        return
    # Parts of a batch: each process holds one or two parts, not batches (memory).
    part_size = min(writer.settings.imports.batch_size, FED_PART_ROWS)
    form = DriverForm(writer.shape(), dialect)

    # A CSV file's cells are text: its parts are read column by column (read_columns).
    by_columns = source.format == "csv"

    def produce(send: Send) -> None:
        local = ImportReport(writer.kind, "")

        superseded: list[Superseded] = []

        def flush(rows: list[tuple[int, str, Record]]) -> None:
            checked, rejected = writer.checked(rows)
            for line, exc in rejected:
                local.reject(line, *exc.messages())
            flush_checked(checked)

        def flush_checked(checked: list[Checked]) -> None:
            checked, replaced = latest_per_key(checked)
            superseded.extend(replaced)
            send_read(form.hashed_rows(checked), [line for line, _key, _values in checked])

        def send_read(driver_rows: list[DriverRow], lines: list[int]) -> None:
            told = [(problem.line, problem.message) for problem in local.problems]
            notes = [(note.line, note.message) for note in local.notes]
            read = _Read(
                driver_rows, lines, told, local.rejected, superseded[:], source.bytes_read, notes
            )
            send(read)
            local.notes.clear()
            local.problems.clear()
            local.rejected = 0
            superseded.clear()

        # No collections in the forked child: one could finalise the writer's connections.
        _stream(
            writer,
            source,
            local,
            part_size,
            flush,
            skip,
            superseded.append,
            flush_checked=flush_checked if by_columns else None,
            collect=False,
        )
        if local.rejected or superseded or local.notes:
            send_read([], [])

    with fed(produce, keep=source.fileno()) as feed:
        yield feed


def _load_batches(
    batch: Callable[[], AbstractContextManager[Connection]],
    writer: KindWriter,
    source: RowSource,
    report: ImportReport,
    progress: Progress | None,
    feed: Iterator[_Read] | None,
    skip: Mapping[int, Later],
    empty: bool = False,
) -> None:
    """``empty``: the table was empty when this import's one transaction locked it."""
    table_writer: TableWriter | None = None

    def table(connection: Connection) -> TableWriter:
        nonlocal table_writer
        table_writer = table_writer or TableWriter(
            connection, writer.shape(), writer.now, only_new=empty
        )
        return table_writer

    def write(connection: Connection, prepared: list[Prepared]) -> None:
        _write(connection, table(connection), writer, prepared, report)

    def write_fed(connection: Connection, read: _Read) -> None:
        writing = table(connection)
        rows = writer.before_fed_write(connection, read.lines, read.rows, writing.form)
        written = writing.write_driver_rows(connection, rows)
        report.counts.add(written.counts)
        writer.after_fed_write(connection, written)
        take_notes(writer, report)

    def flush(rows: list[tuple[int, str, Record]]) -> None:
        with batch() as connection:
            prepared, rejected = writer.prepare(connection, rows)
            for line, exc in rejected:
                report.reject(line, *exc.messages())
            prepared, superseded = latest_per_key(prepared)
            report.supersede(superseded, same_content(report.kind, superseded))
            write(connection, prepared)
        if progress is not None:
            progress(source.bytes_read, source.total_bytes)

    batch_size = writer.settings.imports.batch_size
    if feed is None:

        def supersede(row: Superseded) -> None:
            report.supersede([row], same_content(report.kind, [row]))

        _stream(writer, source, report, batch_size, flush, skip, supersede)
    else:
        _write_fed(feed, batch, write_fed, report, batch_size, progress, source.total_bytes)
    with batch() as connection:
        extra, rejected = writer.finish(connection)
        report.counts.add(extra)
        for line, exc in rejected:
            report.reject(line, *exc.messages())


def _write_fed(
    feed: Iterator[_Read],
    batch: Callable[[], AbstractContextManager[Connection]],
    write: Callable[[Connection, _Read], None],
    report: ImportReport,
    batch_size: int,
    progress: Progress | None,
    total_bytes: int,
) -> None:
    """Write the reading process's parts, ``batch_size`` rows or more per transaction."""
    with ExitStack() as transaction:
        connection: Connection | None = None
        rows = 0
        for read in feed:
            read.tell(report)
            if read.rows:
                connection = connection or transaction.enter_context(batch())
                write(connection, read)
                rows += len(read.rows)
            if rows >= batch_size:
                transaction.close()  # commits
                connection, rows = None, 0
            if progress is not None:
                progress(read.bytes_read, total_bytes)


def _stream(
    writer: KindWriter,
    source: RowSource,
    report: ImportReport,
    batch_size: int,
    flush: Callable[[list[tuple[int, str, Record]]], None],
    skip: Mapping[int, Later],
    supersede: Callable[[Superseded], None],
    *,
    flush_checked: Callable[[list[Checked]], None] | None = None,
    collect: bool = True,
) -> None:
    """Read the rows into batches for ``flush``; a line in ``skip`` is superseded unread.

    A batch is ``batch_size`` rows that read. With ``flush_checked`` (a CSV file read by a
    process of its own), a batch's cells are read and checked column by column
    (:meth:`KindWriter.checked_columns`) and go to it; a batch with a row that does not read
    or pass is read row by row, as without it. Either way a full batch is flushed when the
    next row that reads comes (or the file ends), with the rows rejected before that one.
    """
    # The rows a later row of their id supersedes were found before (repeats.py), in any
    # batch; latest_per_key after each batch's check finds the same within it.
    batches = _Batches(writer, report, batch_size, flush, flush_checked, collect)
    pending: list[tuple[int, list[object]]] = []
    for line, cells, problem in source.rows():
        later = skip.get(line)
        if later is not None:
            supersede((line, later.line, later.key))
            continue
        if isinstance(problem, FooterNote):
            report.note(line, problem)
            continue
        if problem is not None:
            report.reject(line, problem)
            continue
        pending.append((line, cells))
        if len(pending) >= batches.wanted:
            batches.read(pending)
            pending = []
    batches.read(pending)
    batches.finish()


class _Batches:
    """:func:`_stream`'s batches: rows read one by one or a batch's worth at once."""

    def __init__(
        self,
        writer: KindWriter,
        report: ImportReport,
        batch_size: int,
        flush: Callable[[list[tuple[int, str, Record]]], None],
        flush_checked: Callable[[list[Checked]], None] | None,
        collect: bool,
    ) -> None:
        self.writer, self.report, self.size = writer, report, batch_size
        self.flush, self.flush_checked, self.collect = flush, flush_checked, collect
        self.batch: list[tuple[int, str, Record]] = []
        self.due: Callable[[], None] | None = None
        """A full batch's flush, run when the next row that reads comes."""

    @property
    def wanted(self) -> int:
        """How many rows' cells to read at once: what the batch lacks, or one at a time."""
        return 1 if self.flush_checked is None else self.size - len(self.batch)

    def read(self, rows: list[tuple[int, list[object]]]) -> None:
        if not rows:
            return
        if self.flush_checked is not None and not self.batch:
            lines = [line for line, _cells in rows]
            texts = cast("list[list[str]]", [cells for _line, cells in rows])
            checked = self.writer.checked_columns(lines, texts)
            if checked is not None:
                self.flush_due()
                self.due = partial(self.flush_checked, checked)
                return
        plan, key_of = self.writer.plan, self.writer.key
        for line, cells in rows:
            try:
                record = plan.read(cells)
                key = key_of(record)
            except ImportRowError as exc:
                self.report.reject(line, *exc.messages())
                continue
            self.flush_due()
            self.batch.append((line, key, record))
            if len(self.batch) >= self.size:
                self.due = partial(self.flush, self.batch)
                self.batch = []

    def flush_due(self) -> None:
        if self.due is not None:
            due, self.due = self.due, None
            due()
            if self.collect:
                # Only now, with the batch freed, so that the collection does not traverse it.
                gc.collect(1)

    def finish(self) -> None:
        self.flush_due()
        if self.batch:
            self.flush(self.batch)


def _write(
    connection: Connection,
    table_writer: TableWriter,
    writer: KindWriter,
    prepared: list[Prepared],
    report: ImportReport,
) -> None:
    if not prepared:
        return
    prepared = writer.before_write(connection, prepared)
    written = table_writer.write(connection, prepared)
    report.counts.add(written.counts)
    writer.after_write(connection, prepared, written)
    take_notes(writer, report)


def take_notes(writer: KindWriter, report: ImportReport) -> None:
    """The writer's notes on the rows just written, into the report (at their lines)."""
    for line, field, reason in writer.notes:
        report.note(line, f"{field}: {reason}")
    writer.notes.clear()
