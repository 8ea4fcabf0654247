"""What rule firings and nurture steps write, gathered in memory and written for a whole
batch in a few statements.

A firing (or a nurture step) decides in Python (which rep, which email, which timer) and
notes its writes here; its batch then writes every item's rows with one multi-row statement
per kind (lead updates, rule firings, stage changes, SLA timers, enrollments, outbox rows,
audit rows), in
the batch's transaction. So a batch of 5,000 firings costs a handful of round trips, not 14
per firing.

The order of the statements is the order a single firing would write in: running timers are
cancelled before new ones start, enrollments end and pending marketing email is suppressed
before new rows are queued, and audit rows come last because ``email_queued`` names the
outbox row it queued.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Table, update
from sqlalchemy.orm import Session

from leadflow.logs import error_text, is_outage
from leadflow.mail.enqueue import cancel_pending_marketing
from leadflow.outbox.store import enqueue_rows
from leadflow.store.bulk_rows import bound_values, update_by_id_postgres
from leadflow.store.id_ranges import among, chunks
from leadflow.store.tables import (
    AUDIT,
    DEALS,
    FIRINGS,
    LEADS,
    NURTURE,
    SCORE_CHANGES,
    SLA_TIMERS,
    STAGE_CHANGES,
)

log = structlog.get_logger("leadflow.engine")


@dataclass
class QueuedAudit:
    """An audit row waiting for the outbox to say what became of the row it queued.

    ``fields`` maps a parameter of the row to the :class:`EnqueueResult` attribute it shows.
    """

    row: dict[str, Any]
    outbox_key: str
    fields: Mapping[str, str]


EMAIL_QUEUED = {"outbox_id": "outbox_id", "status": "status", "reason": "reason", "new": "inserted"}
"""What an ``email_queued`` audit row says of its email."""
NURTURE_EMAIL = {"email": "status", "outbox_id": "outbox_id"}
"""What a ``nurture_step`` audit row says of its email: its status when queued and, as an
``email_queued`` row, its outbox id, by which the audit's views show what became of it."""


@dataclass
class BatchWrites:
    """The rows one firing (or, merged, a whole batch) writes."""

    rule_firings: list[dict[str, Any]] = field(default_factory=list)
    lead_changes: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Changed columns by lead id, with their final values."""
    deal_changes: dict[int, dict[str, Any]] = field(default_factory=dict)
    enrollment_changes: dict[int, dict[str, Any]] = field(default_factory=dict)
    cancelled_slas: list[tuple[int, str, str]] = field(default_factory=list)
    """(lead id, SLA name, reason): the lead's running timer of that name is cancelled."""
    sla_timers: list[dict[str, Any]] = field(default_factory=list)
    left_nurture: list[tuple[int, str]] = field(default_factory=list)
    """(lead id, reason): every active enrollment ends, pending marketing is suppressed."""
    moved_enrollments: list[tuple[int, str]] = field(default_factory=list)
    """(enrollment id, reason): one enrollment ends for another stream."""
    enrollments: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any] | QueuedAudit] = field(default_factory=list)
    score_changes: list[dict[str, Any]] = field(default_factory=list)
    stage_changes: list[dict[str, Any]] = field(default_factory=list)
    """``stage_changes`` rows: the stage entries and owner changes of the firings."""

    def merge(self, other: BatchWrites) -> None:
        self.rule_firings += other.rule_firings
        for lead_id, changes in other.lead_changes.items():
            self.lead_changes.setdefault(lead_id, {}).update(changes)
        for deal_id, changes in other.deal_changes.items():
            self.deal_changes.setdefault(deal_id, {}).update(changes)
        for enrollment_id, changes in other.enrollment_changes.items():
            self.enrollment_changes.setdefault(enrollment_id, {}).update(changes)
        self.cancelled_slas += other.cancelled_slas
        self.sla_timers += other.sla_timers
        self.left_nurture += other.left_nurture
        self.moved_enrollments += other.moved_enrollments
        self.enrollments += other.enrollments
        self.outbox += other.outbox
        self.audit += other.audit
        self.score_changes += other.score_changes
        self.stage_changes += other.stage_changes


def write(session: Session, writes: BatchWrites, now: datetime) -> None:
    """Write ``writes`` in the caller's transaction, a few statements per kind of row."""
    _insert(session, FIRINGS, writes.rule_firings)
    _update_rows(session, LEADS, writes.lead_changes)
    _insert(session, SCORE_CHANGES, writes.score_changes)
    _update_rows(session, DEALS, writes.deal_changes)
    _insert(session, STAGE_CHANGES, writes.stage_changes)
    _cancel_slas(session, writes.cancelled_slas, now)
    _insert(session, SLA_TIMERS, writes.sla_timers)
    _update_rows(session, NURTURE, writes.enrollment_changes)
    for reason, lead_ids in _grouped(writes.left_nurture).items():
        _leave_nurture(session, lead_ids, reason, now)
    for reason, enrollment_ids in _grouped(writes.moved_enrollments).items():
        for chunk in chunks(enrollment_ids):
            session.execute(
                update(NURTURE)
                .where(among(NURTURE.c.id, chunk, _dialect(session)))
                .values(status="exited", exit_reason=reason, exited_at=now)
            )
    _insert(session, NURTURE, writes.enrollments)
    queued = enqueue_rows(session, writes.outbox) if writes.outbox else {}
    _insert(session, AUDIT, [_settled(entry, queued) for entry in writes.audit])


def _insert(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT ``rows``, grouped by the columns they give: COPY on PostgreSQL, the driver's
    executemany on SQLite."""
    by_columns: dict[tuple[str, ...], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_columns[tuple(row)].append(row)
    for columns, group in by_columns.items():
        names = ", ".join(_quoted(session, name) for name in columns)
        into = f"{_quoted(session, table.name)} ({names})"
        if session.connection().dialect.name == "postgresql":
            _copy(session, table, f"COPY {into} FROM STDIN", columns, group)
            continue
        marks = ", ".join([_mark(session)] * len(columns))
        _execute_many(session, table, f"INSERT INTO {into} VALUES ({marks})", columns, group)


def _copy(
    session: Session,
    table: Table,
    sql: str,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """COPY ``rows`` in (PostgreSQL's fastest way in: a tenth of an INSERT's round trips)."""
    dialect = session.connection().dialect
    values = bound_values(dialect, table, columns, rows, documents_as_text=True)
    cursor = session.connection().connection.cursor()
    try:
        with cursor.copy(sql) as copy:
            for row in values:
                copy.write_row(row)
    finally:
        cursor.close()


def _execute_many(
    session: Session,
    table: Table,
    sql: str,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """Run ``sql`` once per row with the driver's executemany, each of ``columns`` through its
    type's own bind processing (JSON, times) as SQLAlchemy would send it, without SQLAlchemy's
    per-row parameter work, which was most of a batch's write time."""
    session.connection().exec_driver_sql(sql, _processed(session, table, columns, rows))


def _processed(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> list[tuple[Any, ...]]:
    """Each row's values of ``columns``, as SQLAlchemy would hand them to the driver."""
    dialect = session.connection().dialect
    return bound_values(dialect, table, columns, rows, documents_as_text=dialect.name == "sqlite")


def _mark(session: Session) -> str:
    return "?" if session.connection().dialect.paramstyle == "qmark" else "%s"


def _dialect(session: Session) -> str:
    return str(session.connection().dialect.name)


def _quoted(session: Session, name: str) -> str:
    return str(session.connection().dialect.identifier_preparer.quote(name))


def _settled(entry: dict[str, Any] | QueuedAudit, queued: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(entry, QueuedAudit):
        return entry
    result = queued[entry.outbox_key]
    params = dict(entry.row["params"])
    params.update({name: getattr(result, source) for name, source in entry.fields.items()})
    return {**entry.row, "params": params}


def write_batch(
    session: Session,
    items: Sequence[tuple[str, BatchWrites]],
    now: datetime,
    refused: Callable[[str, Exception], None],
) -> int:
    """Write a batch's ``items`` (label, writes) together; should the database refuse them (one
    item's data it cannot take), write them one by one, each in a savepoint, so only what it
    refuses is lost: ``refused`` hears of each. Returns how many items were refused."""
    whole = BatchWrites()
    for _, writes in items:
        whole.merge(writes)
    try:
        with session.begin_nested():
            write(session, whole, now)
    except Exception as exc:
        if is_outage(exc) or not items:
            raise
        log.warning("batch_written_one_by_one", items=len(items), error=error_text(exc))
    else:
        return 0
    failures = 0
    for label, writes in items:
        try:
            with session.begin_nested():
                write(session, writes, now)
        except Exception as exc:
            if is_outage(exc):
                raise
            failures += 1
            refused(label, exc)
    return failures


def _leave_nurture(session: Session, lead_ids: Sequence[int], reason: str, now: datetime) -> None:
    """End the leads' active enrollments and suppress their marketing email not yet sent."""
    for chunk in chunks(lead_ids):
        session.execute(
            update(NURTURE)
            .where(among(NURTURE.c.lead_id, chunk, _dialect(session)), NURTURE.c.status == "active")
            .values(status="exited", exit_reason=reason, exited_at=now, next_step_at=None)
        )
    cancel_pending_marketing(session, lead_ids, reason, now)


def _update_rows(session: Session, table: Table, changes: dict[int, dict[str, Any]]) -> None:
    """One executemany UPDATE per set of changed columns (a batch has one or two)."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row_id, values in changes.items():
        if values:
            by_columns[tuple(sorted(values))].append({**values, "id": row_id})
    for columns, rows in by_columns.items():
        if session.connection().dialect.name == "postgresql":
            update_by_id_postgres(session.connection(), table, columns, rows)
            continue
        mark = _mark(session)
        assignments = ", ".join(f"{_quoted(session, name)} = {mark}" for name in columns)
        sql = f"UPDATE {_quoted(session, table.name)} SET {assignments} WHERE id = {mark}"
        _execute_many(session, table, sql, [*columns, "id"], rows)


def _cancel_slas(session: Session, cancelled: list[tuple[int, str, str]], now: datetime) -> None:
    by_name: dict[tuple[str, str], list[int]] = defaultdict(list)
    for lead_id, name, reason in cancelled:
        by_name[(name, reason)].append(lead_id)
    for (name, reason), lead_ids in by_name.items():
        for chunk in chunks(lead_ids):
            session.execute(
                update(SLA_TIMERS)
                .where(
                    among(SLA_TIMERS.c.lead_id, chunk, _dialect(session)),
                    SLA_TIMERS.c.status == "running",
                    SLA_TIMERS.c.name == name,
                )
                .values(
                    status="cancelled", closed_at=now, close_reason=reason, next_escalation_at=None
                )
            )


def _grouped(pairs: Iterable[tuple[int, str]]) -> dict[str, list[int]]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for row_id, reason in pairs:
        grouped[reason].append(row_id)
    return grouped
