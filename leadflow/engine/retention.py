"""Retention: what the store lets go of, in bounded batches, the audit archived first.

Two tables grow with every action and every email: the outbox keeps each settled message
(``sent``, ``failed``, ``suppressed``) and the audit each action. :func:`prune` deletes

- outbox rows settled and older than ``mail.keep_sent`` (created and, when sent, sent before
  the cut-off); ``pending`` and ``sending`` rows never, however old;
- audit rows whose ``at`` is older than ``audit.keep`` (never with ``forever``), after writing
  them to ``audit.archive``;
- score changes whose ``at`` is older than ``audit.keep_score_changes`` (never with
  ``forever``), not archived: the score's history behind ``leadflow score explain`` and the
  dashboard's timeline, written for every lead a rescoring pass changes (decay alone changes
  thousands an hour), which nothing decides by.

Each batch of at most ``scheduler.retention_batch`` rows is one transaction, so no lock is held
long and a stop between batches loses nothing.

The audit archive is crash-safe without duplicates. A batch's rows are read and locked, written
to ``audit-<first id>-<last id>.pending.jsonl.gz`` (written to a temporary name, fsynced,
renamed, the folder fsynced) and only then deleted; once the delete committed the file is
renamed to ``audit-<first id>-<last id>.jsonl.gz``. A crash before the commit leaves the rows in
the store and their ``.pending`` file on disk: the next run first deletes whatever rows of each
``.pending`` file are still in the store (they are archived) and renames the file, so every row
ends up in exactly one file and is deleted only once a file holding it is durable.

Tables that are not pruned, and why: ``rule_firings`` is what ``reentry: once`` and
``once_per`` check (deleting a firing would let the rule act on that lead again);
``nurture_enrollments`` and ``sla_timers`` are the state that keeps a stream or an escalation
from starting over; ``rule_runs`` holds one row per rule and does not grow; ``import_runs``
grows by one row per import; ``stage_changes`` is the history the funnel report counts
conversions and times in stage from.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import (
    ARRAY,
    Engine,
    Integer,
    any_,
    bindparam,
    delete,
    func,
    literal,
    or_,
    select,
    text,
)

from leadflow.engine.runtime import StopSignal
from leadflow.outbox.store import FAILED, SENT, SUPPRESSED
from leadflow.settings import FOREVER, Settings
from leadflow.store.database import transaction
from leadflow.store.id_ranges import chunks
from leadflow.store.tables import AUDIT, OUTBOX, SCORE_CHANGES
from leadflow.store.types import UTCDateTime

log = structlog.get_logger("leadflow.engine")

SETTLED = (SENT, FAILED, SUPPRESSED)
"""Outbox statuses that end a message's life; only these are ever deleted."""
PENDING_SUFFIX = ".pending.jsonl.gz"
ARCHIVE_SUFFIX = ".jsonl.gz"

BeforeDelete = Callable[[Sequence[int], Path | None], None]
"""Called inside an audit batch's transaction after its archive file is durable and before the
delete (tests raise here to simulate a crash)."""


@dataclass
class PruneReport:
    """What one retention run deleted (or, on a dry run, would delete)."""

    dry_run: bool
    outbox_cutoff: datetime
    audit_cutoff: datetime | None
    """None: ``audit.keep`` is ``forever``."""
    score_changes_cutoff: datetime | None = None
    """None: ``audit.keep_score_changes`` is ``forever``."""
    outbox_deleted: int = 0
    audit_deleted: int = 0
    score_changes_deleted: int = 0
    audit_recovered: int = 0
    """Rows of an interrupted run's archive file still in the store, deleted first."""
    archive_files: list[Path] = field(default_factory=list)
    batches: int = 0
    stopped: bool = False
    """The stop signal came between two batches; the rest waits for the next run."""
    seconds: float = 0.0


def cutoffs(settings: Settings, now: datetime) -> tuple[datetime, datetime | None]:
    """The outbox and audit cut-offs of a run at ``now`` (rows older than these go)."""
    return now - settings.mail.keep_sent, _cutoff(settings.audit.keep, now)


def _cutoff(keep: timedelta | str, now: datetime) -> datetime | None:
    return None if keep == FOREVER or not isinstance(keep, timedelta) else now - keep


def prune(
    engine: Engine,
    settings: Settings,
    now: datetime,
    *,
    dry_run: bool = False,
    stop: StopSignal | None = None,
    before_delete: BeforeDelete | None = None,
) -> PruneReport:
    """Delete what retention lets go of as of ``now``; with ``dry_run`` only count it."""
    started = time.perf_counter()
    outbox_cutoff, audit_cutoff = cutoffs(settings, now)
    report = PruneReport(
        dry_run, outbox_cutoff, audit_cutoff, _cutoff(settings.audit.keep_score_changes, now)
    )
    archive = settings.path(settings.audit.archive) if settings.audit.archive else None
    batch = settings.scheduler.retention_batch
    if dry_run:
        _count(engine, report)
    else:
        if archive is not None:
            report.audit_recovered = _recover(engine, archive, batch)
        while not _stopping(stop, report):
            deleted = _outbox_batch(engine, outbox_cutoff, batch)
            report.outbox_deleted += deleted
            report.batches += bool(deleted)
            if deleted < batch:
                break
        while audit_cutoff is not None and not _stopping(stop, report):
            deleted, path = _audit_batch(engine, audit_cutoff, batch, archive, before_delete)
            report.audit_deleted += deleted
            report.batches += bool(deleted)
            if path is not None:
                report.archive_files.append(path)
            if deleted < batch:
                break
        while report.score_changes_cutoff is not None and not _stopping(stop, report):
            deleted = _aged_batch(engine, SCORE_CHANGES, report.score_changes_cutoff, batch)
            report.score_changes_deleted += deleted
            report.batches += bool(deleted)
            if deleted < batch:
                break
    report.seconds = time.perf_counter() - started
    log.info(
        "retention_pruned",
        dry_run=dry_run,
        outbox_deleted=report.outbox_deleted,
        audit_deleted=report.audit_deleted,
        score_changes_deleted=report.score_changes_deleted,
        audit_recovered=report.audit_recovered,
        archive_files=len(report.archive_files),
        batches=report.batches,
        stopped=report.stopped,
        outbox_cutoff=outbox_cutoff.isoformat(),
        audit_cutoff=None if audit_cutoff is None else audit_cutoff.isoformat(),
        seconds=round(report.seconds, 3),
    )
    return report


def _stopping(stop: StopSignal | None, report: PruneReport) -> bool:
    if stop is not None and stop.is_set():
        report.stopped = True
    return report.stopped


def _outbox_settled_before(cutoff: datetime, status: str) -> Any:
    t = OUTBOX
    return (
        (t.c.status == status)
        & (t.c.created_at < cutoff)
        & or_(t.c.sent_at.is_(None), t.c.sent_at < cutoff)
    )


def _count(engine: Engine, report: PruneReport) -> None:
    with engine.connect() as connection:
        report.outbox_deleted = sum(
            connection.execute(
                select(func.count())
                .select_from(OUTBOX)
                .where(_outbox_settled_before(report.outbox_cutoff, status))
            ).scalar_one()
            for status in SETTLED
        )
        if report.audit_cutoff is not None:
            report.audit_deleted = connection.execute(
                select(func.count()).select_from(AUDIT).where(AUDIT.c.at < report.audit_cutoff)
            ).scalar_one()
        if report.score_changes_cutoff is not None:
            report.score_changes_deleted = connection.execute(
                select(func.count())
                .select_from(SCORE_CHANGES)
                .where(SCORE_CHANGES.c.at < report.score_changes_cutoff)
            ).scalar_one()


def _outbox_batch(engine: Engine, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` settled rows older than ``cutoff`` in one transaction."""
    t = OUTBOX
    deleted = 0
    with transaction(engine) as session:
        connection = session.connection()
        for status in SETTLED:  # one index range (status, created_at) per status
            room = limit - deleted
            if room <= 0:
                break
            chosen = (
                select(t.c.id)
                .where(_outbox_settled_before(cutoff, status))
                .order_by(t.c.created_at)
                .limit(room)
            )
            if connection.dialect.name == "postgresql":
                chosen = chosen.with_for_update(skip_locked=True)
            ids = list(connection.execute(chosen).scalars())
            if not ids:
                continue
            # Two statements, not DELETE ... WHERE id IN (SELECT ... LIMIT): PostgreSQL may
            # run that subquery more than once and delete more than a batch. The ids go back
            # as one parameter; the status is checked again, so only settled rows go.
            dialect = connection.dialect.name
            result = connection.execute(
                delete(t).where(_ids_in(t.c.id, ids, dialect), t.c.status == status)
            )
            deleted += int(result.rowcount)
    return deleted


def _ids_in(column: Any, ids: Sequence[int], dialect: str) -> Any:
    """``column`` among ``ids``, sent as one parameter (an array, or JSON on SQLite) rather
    than one bind parameter per id."""
    if dialect == "postgresql":
        return column == any_(literal(list(ids), ARRAY(Integer)))
    listed = func.json_each(literal(json.dumps(list(ids)))).table_valued("value")
    return column.in_(select(listed.c.value))


def _archive_lines(dialect: str) -> str:
    """One audit row as one JSON object, built by the database (its JSON columns are copied
    as they are, never parsed and written again in Python)."""
    if dialect == "postgresql":
        at = """to_char(a.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""
        build, params, evidence = "json_build_object", "a.params", "a.evidence"
    else:
        at = "replace(a.at, ' ', 'T') || '+00:00'"
        build, params, evidence = "json_object", "json(a.params)", "json(a.evidence)"
    return (
        f"SELECT a.id, CAST({build}('id', a.id, 'at', {at}, 'source', a.source, "
        "'rule_id', a.rule_id, 'rule_version', a.rule_version, 'lead_id', a.lead_id, "
        "'lead_external_id', l.external_id, 'deal_id', a.deal_id, "
        "'deal_external_id', d.external_id, 'action', a.action, "
        f"'params', {params}, 'evidence', {evidence}) AS TEXT) "
        "FROM audit_log AS a LEFT JOIN leads AS l ON l.id = a.lead_id "
        "LEFT JOIN deals AS d ON d.id = a.deal_id "
        "WHERE a.at < :cutoff ORDER BY a.at, a.id LIMIT :limit"
        + (" FOR UPDATE OF a SKIP LOCKED" if dialect == "postgresql" else "")
    )


def _aged_batch(engine: Engine, table: Any, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` rows of ``table`` whose ``at`` is older than ``cutoff``, oldest
    first, in one transaction (read through the table's ``at`` index)."""
    with transaction(engine) as session:
        connection = session.connection()
        dialect = connection.dialect.name
        chosen = select(table.c.id).where(table.c.at < cutoff).order_by(table.c.at).limit(limit)
        if dialect == "postgresql":
            chosen = chosen.with_for_update(skip_locked=True)
        ids = list(connection.execute(chosen).scalars())
        if not ids:
            return 0
        result = connection.execute(delete(table).where(_ids_in(table.c.id, ids, dialect)))
        return int(result.rowcount)


def _audit_batch(
    engine: Engine,
    cutoff: datetime,
    limit: int,
    archive: Path | None,
    before_delete: BeforeDelete | None,
) -> tuple[int, Path | None]:
    """Archive, then delete, up to ``limit`` audit rows older than ``cutoff``: one transaction
    whose delete commits only after the archive file is on disk."""
    with transaction(engine) as session:
        connection = session.connection()
        dialect = connection.dialect.name
        if archive is None:
            chosen = select(AUDIT.c.id).where(AUDIT.c.at < cutoff).order_by(AUDIT.c.at).limit(limit)
            if dialect == "postgresql":
                chosen = chosen.with_for_update(skip_locked=True)
            rows = [(row_id, "") for row_id in connection.execute(chosen).scalars()]
        else:
            statement = text(_archive_lines(dialect)).bindparams(
                bindparam("cutoff", cutoff, type_=UTCDateTime()), limit=limit
            )
            rows = sorted((row_id, line) for row_id, line in connection.execute(statement))
        if not rows:
            return 0, None
        ids = [row_id for row_id, _ in rows]
        pending = None if archive is None else _write_archive(archive, rows)
        if before_delete is not None:
            before_delete(ids, pending)
        result = connection.execute(delete(AUDIT).where(_ids_in(AUDIT.c.id, ids, dialect)))
        deleted = int(result.rowcount)
    return deleted, None if pending is None else _settle(pending)


def _write_archive(folder: Path, rows: Sequence[tuple[int, str]]) -> Path:
    """``rows`` (id, JSON line), in id order, as one durable ``.pending`` gzip'd JSON Lines
    file named by its id range."""
    folder.mkdir(parents=True, exist_ok=True)
    name = f"audit-{rows[0][0]:012d}-{rows[-1][0]:012d}"
    target = folder / f"{name}{PENDING_SUFFIX}"
    partial = folder / f".{name}.tmp"
    with partial.open("wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as zipped:
            zipped.write("".join(f"{line}\n" for _, line in rows).encode())
        raw.flush()
        os.fsync(raw.fileno())
    partial.replace(target)
    _fsync_folder(folder)
    return target


def _settle(pending: Path) -> Path:
    """The delete of ``pending``'s rows committed: give the file its final name."""
    final = pending.with_name(pending.name.removesuffix(PENDING_SUFFIX) + ARCHIVE_SUFFIX)
    try:
        pending.replace(final)
    except FileNotFoundError:  # another pruner's recovery settled it meanwhile
        return final
    _fsync_folder(pending.parent)
    return final


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_archive(path: Path) -> list[dict[str, Any]]:
    """The rows of one archive file, as written."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def _recover(engine: Engine, folder: Path, batch: int) -> int:
    """Finish what an interrupted run left: delete the rows of each ``.pending`` file that are
    still in the store (they are archived there), then settle the file. Returns rows deleted."""
    if not folder.is_dir():
        return 0
    for partial in folder.glob(".audit-*.tmp"):  # never renamed: its rows were never deleted
        partial.unlink(missing_ok=True)
    deleted = 0
    for pending in sorted(folder.glob(f"audit-*{PENDING_SUFFIX}")):
        ids = [row["id"] for row in read_archive(pending)]
        for chunk in chunks(ids, batch):
            with transaction(engine) as session:
                dialect = session.connection().dialect.name
                result = session.execute(delete(AUDIT).where(_ids_in(AUDIT.c.id, chunk, dialect)))
                deleted += int(result.rowcount)  # type: ignore[attr-defined]
        _settle(pending)
    if deleted:
        log.warning("retention_archive_recovered", audit_deleted=deleted)
    return deleted
