"""Stage counts and stage-to-stage conversion, by period and by cohort (docs/report.md).

- **entered**: entries into the stage in the period (a lead entering twice counts twice);
- **period conversion A -> B**: entries into B in the period / entries into A in the period;
- **cohort conversion A -> B**: of the leads that entered A in the period (their first such
  entry), the share with an entry into B after it, up to the period's end;
- **recycled**: entries into ``recycled`` in the period; **re-qualified**: of the leads recycled
  in the period (first such entry), those that entered the MQL stage after it by the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Subquery, and_, case, func, literal, or_, select, union_all

from leadflow.funnel.groups import labelled, lead_group
from leadflow.funnel.history import is_entry
from leadflow.funnel.period import Period
from leadflow.funnel.sql import instant, share
from leadflow.store.tables import STAGE_CHANGES


@dataclass(frozen=True)
class Conversion:
    """``converted`` of ``base`` went from ``from_stage`` to ``to_stage``; ``kind`` is
    ``cohort`` or ``period`` (for ``period``, the counts are entries, not leads)."""

    group: str
    kind: str
    from_stage: str
    to_stage: str
    base: int
    converted: int

    @property
    def rate(self) -> float | None:
        return share(self.converted, self.base)


def entries_by_stage(connection: Connection, period: Period) -> dict[tuple[str, str], int]:
    """(group, stage) -> entries of leads into the stage in the period (from the ``at`` index)."""
    changes = STAGE_CHANGES.c
    entries = (
        select(
            changes.lead_id.label("subject_id"),
            changes.to_stage.label("stage"),
            changes.to_owner_id.label("owner_id"),
            changes.at.label("entered"),
        )
        .where(changes.lead_id.is_not(None), is_entry(), _within(changes.at, period))
        .subquery("entries")
    )
    grp = _group(connection, period, entries, entries.c.entered)
    query = select(grp, entries.c.stage, func.count()).group_by(grp, entries.c.stage)
    return {(row[0], row[1]): int(row[2]) for row in connection.execute(query)}


def conversions(
    connection: Connection,
    period: Period,
    pairs: Sequence[tuple[str, str]],
    *,
    counts: dict[tuple[str, str], int] | None = None,
    cohorts: bool = True,
) -> list[Conversion]:
    """Period (from ``counts``, the :func:`entries_by_stage` when already counted) and, with
    ``cohorts``, cohort conversion for each (from, to) of ``pairs``, per group."""
    if counts is None:
        counts = entries_by_stage(connection, period)
    groups = sorted({group for group, _stage in counts})
    found: list[Conversion] = []
    for group in groups:
        for low, high in pairs:
            base, converted = counts.get((group, low), 0), counts.get((group, high), 0)
            found.append(Conversion(group, "period", low, high, base, converted))
    for low, high in pairs if cohorts else ():
        found += _cohort(connection, period, low, high)
    return sorted(found, key=lambda c: (c.kind, c.group))


def _cohort(connection: Connection, period: Period, low: str, high: str) -> list[Conversion]:
    """Of the leads whose first entry into ``low`` in the period, those entering ``high``
    after it (later time, or the same time recorded after) by the period's end.

    Read from ``stage_changes`` itself, not from the stays: the cohort's rows come from the
    ``(to_stage, at)`` index and each lead's later entries from the ``(lead_id, id)`` one."""
    changes = STAGE_CHANGES.c
    first = (
        select(
            changes.lead_id.label("subject_id"),
            changes.id,
            changes.at.label("entered"),
            changes.to_owner_id.label("owner_id"),
            func.row_number()
            .over(partition_by=changes.lead_id, order_by=(changes.at, changes.id))
            .label("nth"),
        )
        .where(
            changes.lead_id.is_not(None),
            changes.to_stage == low,
            is_entry(),
            _within(changes.at, period),
        )
        .subquery("cohort")
    )
    # The latest entry into ``high`` before the end, per lead: one pass over the (to_stage, at)
    # index joined to the cohort, where a correlated EXISTS made SQLite scan every ``high``
    # entry for each lead. The latest entry is after the cohort's entry if any one is.
    last = (
        select(
            changes.lead_id,
            changes.id,
            changes.at,
            func.row_number()
            .over(partition_by=changes.lead_id, order_by=(changes.at.desc(), changes.id.desc()))
            .label("nth"),
        )
        .where(
            changes.lead_id.is_not(None),
            changes.to_stage == high,
            is_entry(),
            changes.at < instant(period.end),
        )
        .subquery("reached")
    )
    # One row per lead by aggregation (a sort), where a join of the two let SQLite scan one
    # side for each row of the other.
    rows = union_all(
        select(
            first.c.subject_id.label("lead_id"),
            first.c.entered.label("at"),
            first.c.id,
            first.c.owner_id,
            literal(0).label("side"),
        ).where(first.c.nth == 1),
        select(last.c.lead_id, last.c.at, last.c.id, literal(None), literal(1)).where(
            last.c.nth == 1
        ),
    ).subquery("sides")

    def on(side: int, column: Any) -> Any:
        return func.max(case((rows.c.side == side, column), else_=None))

    per_lead = (
        select(
            rows.c.lead_id.label("subject_id"),
            on(0, rows.c.at).label("entered"),
            on(0, rows.c.id).label("id"),
            on(0, rows.c.owner_id).label("owner_id"),
            on(1, rows.c.at).label("last_at"),
            on(1, rows.c.id).label("last_id"),
        )
        .group_by(rows.c.lead_id)
        .subquery("per_lead")
    )
    reached = or_(
        per_lead.c.last_at > per_lead.c.entered,
        and_(per_lead.c.last_at == per_lead.c.entered, per_lead.c.last_id > per_lead.c.id),
    )
    grp = _group(connection, period, per_lead, per_lead.c.entered)
    query = (
        select(grp, func.count(), func.sum(case((reached, 1), else_=0)))
        .where(per_lead.c.entered.is_not(None))
        .group_by(grp)
    )
    return [
        Conversion(row[0], "cohort", low, high, int(row[1]), int(row[2] or 0))
        for row in connection.execute(query)
    ]


def requalified(
    connection: Connection, period: Period, recycled: str, mql: str
) -> list[Conversion]:
    """Leads recycled in the period (their first such entry) that became MQLs again by the end,
    as a cohort conversion ``recycled -> mql``."""
    return _cohort(connection, period, recycled, mql)


def _group(connection: Connection, period: Period, rows: Subquery, at: Any) -> Any:
    dialect = connection.dialect.name
    expression = lead_group(
        period.by, rows.c.subject_id, rows.c.owner_id, at, dialect, instant(period.end)
    )
    return labelled(expression)


def _within(column: Any, period: Period) -> Any:
    return and_(column >= instant(period.start), column < instant(period.end))
