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

from sqlalchemy import (
    CTE,
    Connection,
    Select,
    Subquery,
    and_,
    case,
    func,
    literal,
    select,
    union_all,
)

from leadflow.funnel.entry_keys import entry_key, key_owner
from leadflow.funnel.groups import labelled, lead_group
from leadflow.funnel.history import is_entry
from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.sql import instant, share
from leadflow.store.tables import STAGE_CHANGES

BY_ENTRY = (Grouping.rep, Grouping.week)
"""Groupings that depend on the cohort's entry (its owner, its week), not on the lead alone."""


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
    found = _cohorts(connection, period, pairs) if cohorts else []
    return _with_period(counts, pairs, [c for pair in found for c in pair])


def conversions_and_requalified(
    connection: Connection,
    period: Period,
    pairs: Sequence[tuple[str, str]],
    requalify: tuple[str, str],
    counts: dict[tuple[str, str], int],
) -> tuple[list[Conversion], list[Conversion]]:
    """:func:`conversions` of ``pairs`` and :func:`requalified` (``requalify`` is its
    (recycled, mql)), with the cohorts of both counted in the same pass over the history."""
    *found, again = _cohorts(connection, period, [*pairs, requalify])
    return _with_period(counts, pairs, [c for pair in found for c in pair]), again


def _with_period(
    counts: dict[tuple[str, str], int],
    pairs: Sequence[tuple[str, str]],
    cohorts: list[Conversion],
) -> list[Conversion]:
    """The period conversions of ``pairs`` from ``counts``, with ``cohorts``, by kind and group."""
    groups = sorted({group for group, _stage in counts})
    found: list[Conversion] = []
    for group in groups:
        for low, high in pairs:
            base, converted = counts.get((group, low), 0), counts.get((group, high), 0)
            found.append(Conversion(group, "period", low, high, base, converted))
    return sorted(found + cohorts, key=lambda c: (c.kind, c.group))


def _cohorts(
    connection: Connection, period: Period, pairs: Sequence[tuple[str, str]]
) -> list[list[Conversion]]:
    """For each (low, high) of ``pairs``, its conversions by group: of the leads whose first
    entry into ``low`` is in the period, those entering ``high`` after it (later time, or the
    same time recorded after) by the period's end.

    One pass over each lead's entries before the end, grouped by lead (the ``(lead_id, at, id,
    ...)`` index hands them over lead by lead, so nothing is sorted): per pair, the first entry
    into ``low`` in the period and the last into ``high`` as the min and max of their
    :func:`entry_key`; the lead converted if the last comes after the first."""
    if not pairs:
        return []
    per_lead = _per_lead(connection, period, pairs)
    if period.by not in BY_ENTRY:
        return _counted_at_once(connection, period, pairs, per_lead.subquery("per_lead"))
    return _counted_by_entry(connection, period, pairs, per_lead.cte("per_lead"))


def _per_lead(
    connection: Connection, period: Period, pairs: Sequence[tuple[str, str]]
) -> Select[Any]:
    """One row per lead: ``first_{n}`` and ``last_{n}`` keys of each pair ``n`` (and
    ``entered_{n}``, the first entry's time, when the grouping reads it)."""
    dialect = connection.dialect.name
    changes = STAGE_CHANGES.c
    start = instant(period.start)
    # Each entry's key worked out once, then read by the aggregates of every pair.
    rows = select(
        changes.lead_id,
        changes.to_stage,
        changes.at,
        entry_key(dialect, changes.at, changes.id, changes.to_owner_id).label("key"),
    ).where(
        changes.lead_id.is_not(None),
        is_entry(),
        changes.at < instant(period.end),
        changes.lead_id.in_(_entering_in_period(period, [low for low, _high in pairs])),
    )
    if dialect == "postgresql":
        # OFFSET 0 keeps PostgreSQL from inlining the key into each aggregate below (it would
        # build a row's key once per pair and side instead of once); in the index's order, so
        # grouping by lead sorts nothing. SQLite reads the subquery flattened, as it should.
        rows = rows.order_by(changes.lead_id).offset(0)
    entries = rows.subquery("entries")
    columns: list[Any] = [entries.c.lead_id.label("subject_id")]
    # FILTER, not a CASE inside each aggregate: a row then steps only the aggregates of its own
    # stage (two or three of the ten or so), not every one of them with a null.
    for n, (low, high) in enumerate(pairs):
        first = and_(entries.c.to_stage == low, entries.c.at >= start)
        columns += [
            func.min(entries.c.key).filter(first).label(f"first_{n}"),
            func.max(entries.c.key).filter(entries.c.to_stage == high).label(f"last_{n}"),
        ]
        if period.by in BY_ENTRY:
            columns.append(func.min(entries.c.at).filter(first).label(f"entered_{n}"))
    return select(*columns).group_by(entries.c.lead_id)


def _entering_in_period(period: Period, stages: Sequence[str]) -> Select[Any]:
    """The leads with an entry into one of ``stages`` in the period: only they can be in a
    cohort, so only their histories are read (from the ``(at, to_stage, ...)`` index), not
    every lead's; over a quarter of a year's history, a third of the rows or less."""
    inside = STAGE_CHANGES.alias("entering")
    return select(inside.c.lead_id).where(
        inside.c.at >= instant(period.start),
        inside.c.at < instant(period.end),
        inside.c.to_stage.in_(sorted(set(stages))),
        inside.c.lead_id.is_not(None),
        is_entry(inside),
    )


def _counted_by_entry(
    connection: Connection, period: Period, pairs: Sequence[tuple[str, str]], per_lead: CTE
) -> list[list[Conversion]]:
    """The cohorts of each pair grouped apart, by its first entry's owner or week."""
    dialect = connection.dialect.name
    counted = []
    for n in range(len(pairs)):
        first, last = per_lead.c[f"first_{n}"], per_lead.c[f"last_{n}"]
        expression = lead_group(
            period.by,
            per_lead.c.subject_id,
            key_owner(dialect, first),
            per_lead.c[f"entered_{n}"],
            dialect,
            instant(period.end),
        )
        grp = labelled(expression)
        counted.append(
            select(
                literal(n).label("pair"),
                grp,
                func.count(),
                func.sum(case((last > first, 1), else_=0)),
            )
            .where(first.is_not(None))
            .group_by(grp)
        )
    found: list[list[Conversion]] = [[] for _ in pairs]
    for row in sorted(connection.execute(union_all(*counted)), key=lambda row: (row[0], row[1])):
        low, high = pairs[row[0]]
        found[row[0]].append(Conversion(row[1], "cohort", low, high, int(row[2]), int(row[3] or 0)))
    return found


def _counted_at_once(
    connection: Connection, period: Period, pairs: Sequence[tuple[str, str]], per_lead: Subquery
) -> list[list[Conversion]]:
    """The cohorts of every pair counted in one grouping of ``per_lead``, for a grouping that
    depends on the lead alone (not on the cohort's entry): a pair whose cohort is empty in a
    group has no line there, as when each pair is grouped apart."""
    dialect = connection.dialect.name
    grp = labelled(
        lead_group(period.by, per_lead.c.subject_id, None, None, dialect, instant(period.end))
    )
    sums: list[Any] = []
    for n in range(len(pairs)):
        first, last = per_lead.c[f"first_{n}"], per_lead.c[f"last_{n}"]
        sums.append(func.sum(case((first.is_not(None), 1), else_=0)))
        sums.append(func.sum(case((last > first, 1), else_=0)))
    found: list[list[Conversion]] = [[] for _ in pairs]
    for row in sorted(connection.execute(select(grp, *sums).group_by(grp)), key=lambda r: r[0]):
        for n, (low, high) in enumerate(pairs):
            base, converted = int(row[1 + 2 * n] or 0), int(row[2 + 2 * n] or 0)
            if base:
                found[n].append(Conversion(row[0], "cohort", low, high, base, converted))
    return found


def requalified(
    connection: Connection, period: Period, recycled: str, mql: str
) -> list[Conversion]:
    """Leads recycled in the period (their first such entry) that became MQLs again by the end,
    as a cohort conversion ``recycled -> mql``."""
    return _cohorts(connection, period, [(recycled, mql)])[0]


def _group(connection: Connection, period: Period, rows: Subquery, at: Any) -> Any:
    dialect = connection.dialect.name
    expression = lead_group(
        period.by, rows.c.subject_id, rows.c.owner_id, at, dialect, instant(period.end)
    )
    return labelled(expression)


def _within(column: Any, period: Period) -> Any:
    return and_(column >= instant(period.start), column < instant(period.end))
