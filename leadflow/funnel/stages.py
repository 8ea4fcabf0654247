"""Stage counts and stage-to-stage conversion, by period and by cohort (docs/report.md).

- **entered**: entries into the stage in the period (a lead entering twice counts twice); the
  deals' entries into their stages are counted apart (:func:`deal_entries_by_stage`);
- **period conversion A -> B**: entries into B in the period / entries into A in the period;
- **cohort conversion A -> B**: of the leads that entered A in the period (their first such
  entry), the share with an entry into B after it, up to the period's end;
- **recycled**: entries into ``recycled`` in the period; **re-qualified**: of the leads recycled
  in the period (first such entry), those that entered the MQL stage after it by the end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    Select,
    Subquery,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)

from leadflow.funnel.groups import deal_group_of, labelled, lead_group
from leadflow.funnel.history import is_entry
from leadflow.funnel.period import ALL, Grouping, Period
from leadflow.funnel.sql import instant, share
from leadflow.store.tables import DEALS, STAGE_CHANGES

BY_ENTRY = (Grouping.rep, Grouping.week)
"""Groupings that depend on the cohort's entry (its owner, its week), not on the lead alone."""

BY_LEAD_LOOKUP = (Grouping.source, Grouping.segment, Grouping.pool)
"""Groupings looked up for each lead (in its attributes, its assignments)."""


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
    if period.by is Grouping.week:
        return _entries_by_week(connection, period)
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
    expression = lead_group(
        period.by,
        entries.c.subject_id,
        entries.c.owner_id,
        entries.c.entered,
        connection.dialect.name,
        instant(period.cutoff),
    )
    grp = labelled(expression)
    # Not grouped (one group): by stage alone, where a constant key made SQLite's sort for
    # the grouping carry it for every entry (half of this count's time).
    keys = [entries.c.stage] if expression is None else [grp, entries.c.stage]
    query = select(grp, entries.c.stage, func.count()).group_by(*keys)
    return {(row[0], row[1]): int(row[2]) for row in connection.execute(query)}


def entries_and_weekly(
    connection: Connection, period: Period
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """:func:`entries_by_stage` of ``period`` and of ``period`` by week, which a report reads
    both: not grouped (or by week), the period's entries are its weeks' added up (every entry
    of the period is in one of its weeks, as :func:`_entries_by_week` clips them), so the
    period's entries are not counted a second time (at a million leads, 0.35 s of SQLite's
    CPU)."""
    weekly = entries_by_stage(connection, replace(period, by=Grouping.week))
    if period.by is Grouping.week:
        return weekly, weekly
    if period.by is not Grouping.none:
        return entries_by_stage(connection, period), weekly
    summed: Counter[tuple[str, str]] = Counter()
    for (_week, stage), count in weekly.items():
        summed[(ALL, stage)] += count
    return dict(summed), weekly


def deal_entries_by_stage(connection: Connection, period: Period) -> dict[tuple[str, str], int]:
    """(group, stage) -> entries of deals into the stage in the period: a CRM export of deals
    alone (no lead history) still shows its flow, e.g. deals engaged, won and lost. A deal is
    grouped as the pipeline groups it (its product, its owner, its lead's source), by week
    on the week of the entry. Read on the deals' history index (``deal_id, at, ...``), which
    holds every column counted: the deals' rows are a small part of the history."""
    changes = STAGE_CHANGES.c
    dialect = connection.dialect.name
    end = instant(period.cutoff)
    expression = deal_group_of(period.by, changes.deal_id, changes.at, dialect, end)
    grp = labelled(expression)
    keys = [changes.to_stage] if expression is None else [grp, changes.to_stage]
    # Both stores read the deals' history index (deal_id, at, ...), which holds every column
    # counted. PostgreSQL does so for "deal_id IS NOT NULL", knowing from its statistics how
    # few rows are a deal's; SQLite, which does not, read the period's range of the (at, ...)
    # index instead, every lead entry with it and its deal id from the table (0.8 s of CPU at
    # 300,000 leads to find none), so it is led deal by deal, one range of the index each;
    # spelled so on PostgreSQL, a hash join over every history row took 0.2 s at 200,000.
    of_a_deal = (
        changes.deal_id.in_(select(DEALS.c.id))
        if dialect == "sqlite"
        else changes.deal_id.is_not(None)
    )
    query = (
        select(grp, changes.to_stage, func.count())
        .where(of_a_deal, is_entry(), _within(changes.at, period))
        .group_by(*keys)
    )
    return {(row[0], row[1]): int(row[2]) for row in connection.execute(query)}


WEEKS_PER_STATEMENT = 100
"""Weeks counted by one statement (SQLite allows 500 ``UNION ALL`` parts at most)."""


def _entries_by_week(connection: Connection, period: Period) -> dict[tuple[str, str], int]:
    """:func:`entries_by_stage` by week: each week of the period (from its Monday, UTC, as
    :func:`~leadflow.funnel.sql.week_of` names it) counted over its own range of the ``at``
    index, not every entry's week worked out from its time and the entries sorted by it (two
    thirds of this count's time on SQLite).

    Only the weeks from the period's first lead entry to its last are counted (a week without
    an entry has no row either way): each bound is one look-up in the ``at`` index, so a period
    from the year 1 costs what its entries cost, not a statement per week of two thousand
    years (a minute of CPU and 700 MB on SQLite for a report of three rows)."""
    changes = STAGE_CHANGES.c
    earliest, last = _first_and_last_entry(connection, period)
    if earliest is None or last is None:
        return {}
    monday = datetime.combine(earliest.date(), time(), UTC) - timedelta(days=earliest.weekday())
    weeks = []
    # Up to the last entry, before the report's as-of instant: a week after now has no entries
    # yet, not zero of them.
    while monday <= last:
        following = monday + timedelta(weeks=1)
        week = Period(max(monday, period.start), min(following, period.cutoff))
        counted = (
            select(literal(monday.date().isoformat()), changes.to_stage, func.count())
            .where(changes.lead_id.is_not(None), is_entry(), _within(changes.at, week))
            .group_by(changes.to_stage)
        )
        weeks.append(counted)
        monday = following
    found: dict[tuple[str, str], int] = {}
    for first in range(0, len(weeks), WEEKS_PER_STATEMENT):
        part = weeks[first : first + WEEKS_PER_STATEMENT]
        query = union_all(*part) if len(part) > 1 else part[0]
        found.update({(row[0], row[1]): int(row[2]) for row in connection.execute(query)})
    return found


def _first_and_last_entry(
    connection: Connection, period: Period
) -> tuple[datetime | None, datetime | None]:
    """The times of the first and of the last lead entry in the period (None, None without
    one), each read at one end of the period's range of the ``at`` index."""
    changes = STAGE_CHANGES.c
    entries = select(changes.at).where(
        changes.lead_id.is_not(None), is_entry(), _within(changes.at, period)
    )
    first = entries.order_by(changes.at).limit(1).scalar_subquery()
    last = entries.order_by(changes.at.desc()).limit(1).scalar_subquery()
    row = connection.execute(select(first, last)).one()
    return row[0], row[1]


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
    found = _cohorts(connection, period, pairs, _entered(counts)) if cohorts else []
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
    *found, again = _cohorts(connection, period, [*pairs, requalify], _entered(counts))
    return _with_period(counts, pairs, [c for pair in found for c in pair]), again


def _entered(counts: dict[tuple[str, str], int]) -> set[str]:
    """The stages with an entry in the period, from its :func:`entries_by_stage`."""
    return {stage for (_group, stage), count in counts.items() if count}


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
    connection: Connection,
    period: Period,
    pairs: Sequence[tuple[str, str]],
    entered: Collection[str] | None = None,
) -> list[list[Conversion]]:
    """For each (low, high) of ``pairs``, its conversions by group: of the leads whose first
    entry into ``low`` is in the period, those entering ``high`` after it (later time, or the
    same time recorded after) by the period's end.

    One pass over the period's entries grouped by lead: per pair, the time of the lead's first
    entry into ``low`` and of its last into ``high`` as a ``min`` and a ``max`` of the stored
    time itself (see :func:`_per_lead`); the lead converted if the last is later, and, at the
    same instant, if an entry into ``high`` was recorded after the first entry into ``low``
    (looked up for those leads alone, see :func:`_converted`).

    ``entered``, when known, holds the stages with an entry in the period: a pair whose
    ``low`` is not one has no cohort (no line), and one whose ``high`` is not one converted no
    lead, so the pass reads and steps nothing for them."""
    found: list[list[Conversion]] = [[] for _ in pairs]
    live = [n for n, (low, _high) in enumerate(pairs) if entered is None or low in entered]
    if not live:
        return found
    chosen = [pairs[n] for n in live]
    per_lead = _per_lead(period, chosen, entered)
    if period.by in BY_LEAD_LOOKUP and connection.dialect.name == "postgresql":
        # In lead order, so the grouping's look-up per lead (its attributes, its assignments)
        # walks their indexes in order: a hash aggregate hands the leads over at random, and
        # each look-up cost three times as much (1,000,000 leads, --by source).
        per_lead = per_lead.order_by(per_lead.selected_columns.subject_id)
    if period.by not in BY_ENTRY:
        counted = _counted_at_once(connection, period, chosen, per_lead.subquery("per_lead"))
    else:
        counted = _counted_by_entry(connection, period, chosen, per_lead.cte("per_lead"))
    for n, lines in zip(live, counted, strict=True):
        found[n] = lines
    return found


def _per_lead(
    period: Period, pairs: Sequence[tuple[str, str]], entered: Collection[str] | None
) -> Select[Any]:
    """One row per lead with an entry into a pair's ``low`` in the period: ``first_{n}``, the
    time of its first entry into pair ``n``'s ``low`` in the period, and ``last_{n}``, of its
    last entry into ``high`` in the period (null without one; null for every lead when
    ``high`` is not one of the ``entered`` stages). By rep, also ``entries_{n}``, its entries
    into ``low`` in the period, and ``owner_{n}``, the owner on one of them: the first's when
    it is the only one (see :func:`_first_owner`).

    Only the period's entries are read: the first entry is in it, and an entry into ``high``
    before the period's start is before the first, so it never decides. They come from the
    ``(at, ...)`` index, which holds every column read here, in the period alone (a week's
    report reads a week), then are grouped by lead. The stored time is the value compared: no
    key is built per row (a text key per row was most of this pass's cost on SQLite)."""
    changes = STAGE_CHANGES.c
    stages = sorted(
        {stage for pair in pairs for stage in pair if entered is None or stage in entered}
    )
    entries = (
        select(changes.lead_id, changes.to_stage, changes.at, changes.to_owner_id)
        .where(
            changes.lead_id.is_not(None),
            is_entry(),
            _within(changes.at, period),
            changes.to_stage.in_(stages),
        )
        .subquery("entries")
    )

    # FILTER, not a CASE inside each aggregate: a row then steps only the aggregates of its own
    # stage, not every one of them with a null. The stage is written into the statement, not
    # bound: SQLite then sees one aggregate where the same one is read twice (``mql`` ends both
    # lead -> mql and recycled -> mql; the HAVING reads each first again), where a parameter
    # each made it step one more per row.
    def of(stage: str) -> ColumnElement[bool]:
        return entries.c.to_stage == literal(stage, literal_execute=True)

    none = cast(null(), changes.at.type)  # a time (PostgreSQL would type a bare NULL text)
    firsts = {low: func.min(entries.c.at).filter(of(low)) for low, _high in pairs}
    lasts: dict[str, Any] = {
        high: func.max(entries.c.at).filter(of(high)) if high in stages else none
        for _low, high in pairs
    }
    columns: list[Any] = [entries.c.lead_id.label("subject_id")]
    for n, (low, high) in enumerate(pairs):
        columns += [firsts[low].label(f"first_{n}"), lasts[high].label(f"last_{n}")]
        if period.by is Grouping.rep:
            columns += [
                func.count().filter(of(low)).label(f"entries_{n}"),
                func.max(entries.c.to_owner_id).filter(of(low)).label(f"owner_{n}"),
            ]
    in_a_cohort = or_(*(first.is_not(None) for first in firsts.values()))
    return select(*columns).group_by(entries.c.lead_id).having(in_a_cohort)


def _first_entry(lead_id: Any, at: Any, low: str, column: str) -> ColumnElement[Any]:
    """``column`` of the lead's first entry into ``low`` at the instant ``at`` (the first
    recorded, for entries at the same instant): one look-up in the ``(lead_id, at, id, ...)``
    index."""
    entry = STAGE_CHANGES.alias("first_entry")
    return (
        select(entry.c[column])
        .where(
            entry.c.lead_id == lead_id,
            entry.c.at == at,
            entry.c.to_stage == low,
            is_entry(entry),
        )
        .order_by(entry.c.id)
        .limit(1)
        .correlate_except(entry)
        .scalar_subquery()
    )


def _first_owner(per_lead: Any, n: int, low: str) -> ColumnElement[Any]:
    """The owner on the lead's first entry into pair ``n``'s ``low`` in the period: the owner
    on its only one (most leads), else looked up (the first recorded at the first instant)."""
    looked_up = _first_entry(per_lead.c.subject_id, per_lead.c[f"first_{n}"], low, "to_owner_id")
    return case((per_lead.c[f"entries_{n}"] == 1, per_lead.c[f"owner_{n}"]), else_=looked_up)


def _converted(per_lead: Any, n: int, low: str, high: str) -> ColumnElement[bool]:
    """Whether the lead of a ``per_lead`` row converted in pair ``n``: its last entry into
    ``high`` is later than its first into ``low``, or at the same instant and recorded after
    it (by id). Only that tie, rare, looks the entries up."""
    lead, first, last = per_lead.c.subject_id, per_lead.c[f"first_{n}"], per_lead.c[f"last_{n}"]
    later = STAGE_CHANGES.alias("later_entry")
    recorded_after = (
        exists()
        .where(
            later.c.lead_id == lead,
            later.c.at == first,
            later.c.to_stage == high,
            is_entry(later),
            later.c.id > _first_entry(lead, first, low, "id"),
        )
        .correlate_except(later)
    )
    return case((last > first, true()), (last == first, recorded_after), else_=false())


def _counted_by_entry(
    connection: Connection, period: Period, pairs: Sequence[tuple[str, str]], per_lead: CTE
) -> list[list[Conversion]]:
    """The cohorts of each pair grouped apart, by its first entry's owner or week."""
    dialect = connection.dialect.name
    counted = []
    for n, (low, high) in enumerate(pairs):
        first = per_lead.c[f"first_{n}"]
        owner = _first_owner(per_lead, n, low) if period.by is Grouping.rep else None
        expression = lead_group(
            period.by, per_lead.c.subject_id, owner, first, dialect, instant(period.cutoff)
        )
        grp = labelled(expression)
        counted.append(
            select(
                literal(n).label("pair"),
                grp,
                func.count(),
                func.count().filter(_converted(per_lead, n, low, high)),
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
    expression = lead_group(
        period.by, per_lead.c.subject_id, None, None, dialect, instant(period.cutoff)
    )
    grp = labelled(expression)
    counts: list[Any] = []
    for n, (low, high) in enumerate(pairs):
        counts.append(func.count(per_lead.c[f"first_{n}"]))
        counts.append(func.count().filter(_converted(per_lead, n, low, high)))
    query = select(grp, *counts)
    if expression is not None:
        # Not grouped, one row: SQLite would sort every lead's row by the constant group.
        query = query.group_by(grp)
    found: list[list[Conversion]] = [[] for _ in pairs]
    for row in sorted(connection.execute(query), key=lambda r: r[0]):
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
        period.by, rows.c.subject_id, rows.c.owner_id, at, dialect, instant(period.cutoff)
    )
    return labelled(expression)


def _within(column: Any, period: Period) -> Any:
    """In the period, up to its as-of instant: an entry after now has not happened (a store of
    historical data read with an earlier ``--now`` holds it)."""
    return and_(column >= instant(period.start), column < instant(period.cutoff))
