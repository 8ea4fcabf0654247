"""The stage history (``stage_changes``): every entry of a lead or deal into a stage, and every
change of a lead's or deal's owner, with its time and cause, written in the change's own
transaction.

Rule firings and SLA reassignments know each change as they make it and note a row
(:func:`change_row`). Imports and the HTTP API upsert whole batches in SQL, so they reconcile
instead (:func:`record_written`): one ``INSERT ... SELECT`` adds a row for each written lead or
deal whose stage differs from the last one its history holds. That is set-based, needs no old
values carried through the upsert, and is correct as long as every other path records its
changes, which is what this table is for. A row the batch created has no history to compare
with: its first stage is recorded without looking (the bulk of a large import). A written deal
whose owner differs from the one its history last holds gets an owner change (same stage before
and after), so the report can group it by its owner as of an earlier instant.

A deal's stage in the history is its outcome once closed (``won``, ``lost``, ``recycled``),
its pipeline stage while open: the funnel counts a close as the deal's last entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Connection,
    Text,
    and_,
    any_,
    bindparam,
    case,
    cast,
    insert,
    literal,
    select,
)
from sqlalchemy.orm import aliased

from leadflow.store.id_ranges import PER_STATEMENT, among, chunks, id_array
from leadflow.store.tables import DEALS, LEADS, STAGE_CHANGES
from leadflow.store.types import UTCDateTime

CAUSES = ("rule", "import", "api", "reassignment", "migration")


def change_row(
    *,
    at: datetime,
    to_stage: str,
    from_stage: str | None,
    cause: str,
    lead_id: int | None = None,
    deal_id: int | None = None,
    from_owner_id: int | None = None,
    to_owner_id: int | None = None,
    rule_id: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """One ``stage_changes`` row as values for the Core table (every column given, so a batch's
    rows insert with one statement)."""
    return {
        "lead_id": lead_id,
        "deal_id": deal_id,
        "at": at,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "from_owner_id": from_owner_id,
        "to_owner_id": to_owner_id,
        "cause": cause,
        "rule_id": rule_id,
        "source": _kept(source),
    }


def deal_position() -> ColumnElement[str]:
    """A deal's stage as the history has it: its outcome once closed, else its stage."""
    return case((DEALS.c.outcome.is_not(None), DEALS.c.outcome), else_=DEALS.c.stage)


def record_written(
    connection: Connection,
    kind: str,
    created: Sequence[int],
    changed: Sequence[int],
    *,
    cause: str,
    source: str | None,
    now: datetime,
    deal_open_stage: str | None = None,
) -> None:
    """Record the stage entries of a written batch of leads or deals, by row id: each of the
    ``created`` rows enters its first stage; each of the ``changed`` ones its current stage if
    its history does not end there. ``created`` is a ``range`` on SQLite (its new rows take the
    ids after the largest), a list of ids on PostgreSQL (its upsert's), one statement for all.

    A deal created already closed (historical data: the file gives only its outcome) with an
    ``engaged_at`` no later than its ``closed_at`` first enters ``deal_open_stage`` at
    ``engaged_at``, so its stay in the pipeline from engagement to close is measured as an open
    deal's would be; None records the outcome alone."""
    if isinstance(created, range) or connection.dialect.name == "postgresql":
        parts: list[Sequence[int]] = [created] if created else []
    else:
        parts = list(chunks(sorted(created)))
    for part in parts:
        if kind == "deals" and deal_open_stage is not None:
            # Before the outcome's row: an engagement and a close at the same instant keep
            # their order by id.
            connection.execute(_open_before_close(deal_open_stage, cause, source, part))
        connection.execute(
            _entries(kind, cause, source, now, created=part, deal_open_stage=deal_open_stage)
        )
    for chunk in chunks(sorted(changed)):
        connection.execute(_entries(kind, cause, source, now, ids=chunk))
        if kind == "deals":
            connection.execute(_deal_owner_changes(cause, source, now, chunk))


def _entries(
    kind: str,
    cause: str,
    source: str | None,
    now: datetime,
    *,
    ids: Sequence[int] | None = None,
    created: Sequence[int] | None = None,
    deal_open_stage: str | None = None,
) -> Any:
    history = aliased(STAGE_CHANGES)
    if kind == "leads":
        subject, key = LEADS, "lead_id"
    else:
        subject, key = DEALS, "deal_id"
    last: ColumnElement[Any] = (
        select(history.c.to_stage)
        .where(history.c[key] == subject.c.id)
        .order_by(history.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    if created is not None:
        # Rows this batch created have no history yet: nothing to look up, first stage only
        # (or the open stage a deal closed on arrival was given just before).
        last = literal(None, STAGE_CHANGES.c.from_stage.type)
        if kind == "deals" and deal_open_stage is not None:
            last = case(
                (_closed_after_engagement(), literal(deal_open_stage)),
                else_=last,
            )
    if kind == "leads":
        stage: ColumnElement[Any] = LEADS.c.stage
        at: ColumnElement[Any] = LEADS.c.stage_entered_at
        owner: ColumnElement[Any] = LEADS.c.owner_id
    else:
        stage = deal_position()
        when_new = case(
            (DEALS.c.engaged_at.is_not(None), DEALS.c.engaged_at), else_=DEALS.c.created_at
        )
        at = case(
            (and_(DEALS.c.outcome.is_not(None), DEALS.c.closed_at.is_not(None)), DEALS.c.closed_at),
            (last.is_(None), when_new),
            else_=literal(now, UTCDateTime()),
        )
        owner = DEALS.c.owner_id
    rows = select(
        subject.c.id,
        at,
        last,
        stage,
        owner,
        owner,
        literal(cause),
        literal(_kept(source), STAGE_CHANGES.c.source.type),
    )
    if created is not None:
        rows = rows.where(_among_created(subject.c.id, created))
    else:
        rows = rows.where(last.is_distinct_from(stage))
    if ids is not None:
        rows = rows.where(among(subject.c.id, ids))
    # Entries numbered in the records' id order, not in the order the rows lie in the table
    # (on PostgreSQL a batch's rows are written in key order, their ids taken in file order).
    return insert(STAGE_CHANGES).from_select(_columns(key), rows.order_by(subject.c.id))


def _deal_owner_changes(cause: str, source: str | None, now: datetime, ids: Sequence[int]) -> Any:
    """An owner change at ``now`` for each deal of ``ids`` whose owner differs from the one its
    history's last row holds (after this batch's entries, which carry the owner they were made
    with): the report groups a deal by its owner as of its instant (``--by rep``), so a deal
    reassigned without moving stage (a CRM's reassignment, imported) must say when."""
    history = aliased(STAGE_CHANGES)
    last = (
        select(history.c.to_owner_id)
        .where(history.c.deal_id == DEALS.c.id)
        .order_by(history.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    recorded = select(history.c.id).where(history.c.deal_id == DEALS.c.id).exists()
    position = deal_position()
    rows = select(
        DEALS.c.id,
        literal(now, UTCDateTime()),
        position,
        position,
        last,
        DEALS.c.owner_id,
        literal(cause),
        literal(_kept(source), STAGE_CHANGES.c.source.type),
    ).where(among(DEALS.c.id, ids), recorded, last.is_distinct_from(DEALS.c.owner_id))
    return insert(STAGE_CHANGES).from_select(_columns("deal_id"), rows)


def _columns(subject: str) -> list[str]:
    """The history columns an insert from a select of a lead's or deal's rows fills, in order."""
    return [
        subject,
        "at",
        "from_stage",
        "to_stage",
        "from_owner_id",
        "to_owner_id",
        "cause",
        "source",
    ]


def _closed_after_engagement() -> ColumnElement[bool]:
    return and_(
        DEALS.c.outcome.is_not(None),
        DEALS.c.closed_at.is_not(None),
        DEALS.c.engaged_at.is_not(None),
        DEALS.c.engaged_at <= DEALS.c.closed_at,
    )


def _open_before_close(stage: str, cause: str, source: str | None, created: Sequence[int]) -> Any:
    """The entry into ``stage`` at ``engaged_at`` of the created deals closed on arrival."""
    rows = select(
        DEALS.c.id,
        DEALS.c.engaged_at,
        literal(None, STAGE_CHANGES.c.from_stage.type),
        literal(stage),
        DEALS.c.owner_id,
        DEALS.c.owner_id,
        literal(cause),
        literal(_kept(source), STAGE_CHANGES.c.source.type),
    ).where(_among_created(DEALS.c.id, created), _closed_after_engagement())
    return insert(STAGE_CHANGES).from_select(_columns("deal_id"), rows.order_by(DEALS.c.id))


def _among_created(column: ColumnElement[int], created: Sequence[int]) -> ColumnElement[bool]:
    if isinstance(created, range):
        return column.between(created.start, created.stop - 1)
    if len(created) > PER_STATEMENT:
        # A whole batch's ids as one array parameter (PostgreSQL): one statement, compiled and
        # planned once, where a thousand ids per IN list took twenty.
        # Bounded by the least and greatest id as :func:`among` does, for the same planner.
        # Its text form, cast by the server: psycopg dumps a list parameter item by item.
        ids = cast(bindparam("created", id_array(created), type_=Text), ARRAY(BigInteger))
        return and_(column.between(min(created), max(created)), column == any_(ids))
    return among(column, created)


def _kept(source: str | None) -> str | None:
    """The end of a long source (a file path): what the column's 400 characters hold."""
    return source[-400:] if source is not None else None
