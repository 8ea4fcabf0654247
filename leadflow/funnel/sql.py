"""SQL both stores answer the same: day differences, weeks, exact percentiles.

SQLite has no percentile function, so :func:`quantiles` computes PostgreSQL's
``percentile_cont`` exactly from window functions: with ``n`` values in order and
``h = (n - 1) * q / 100``, the result is ``v[floor(h) + 1] * (1 - frac(h)) + v[floor(h) + 2] *
frac(h)`` (1-based), i.e. linear interpolation between the two nearest ranks. The median is the
case ``q = 50``: the middle value, or the mean of the two middle values. ``floor`` and ``frac``
come from integer division and remainder (no math functions needed on either store).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Select,
    String,
    Subquery,
    cast,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy import case as sql_case

from leadflow.store.types import UTCDateTime


def days_between(dialect: str, later: Any, earlier: Any) -> ColumnElement[Any]:
    """``later - earlier`` in days, fractional (the sales cycle's own arithmetic)."""
    if dialect == "sqlite":
        return func.julianday(later) - func.julianday(earlier)
    return cast(func.extract("epoch", later - earlier), Float) / 86400.0


def instant(value: datetime) -> ColumnElement[datetime]:
    """A time as a bound value stored the way the columns store times."""
    return literal(value, UTCDateTime())


def week_of(dialect: str, column: Any) -> ColumnElement[Any]:
    """The Monday (UTC) of the ISO week holding ``column``, as ``YYYY-MM-DD``."""
    if dialect == "sqlite":
        return func.date(column, "weekday 0", "-6 days")
    return func.to_char(func.date_trunc("week", func.timezone("UTC", column)), "YYYY-MM-DD")


def quantiles(
    values: Subquery,
    groups: Sequence[str],
    value: str,
    percents: Sequence[int],
    *,
    sums: Sequence[str] = (),
    dialect: str = "sqlite",
) -> Select[Any]:
    """Per group of ``values`` (columns ``groups``): ``size`` (how many), the ``q{p}``
    percentile (percentile_cont) of column ``value`` for each of ``percents``, and the sum of
    each column of ``sums`` under its own name."""
    keys = [values.c[name] for name in groups]
    partition = [_bytewise(key, dialect) for key in keys]
    ranked = select(
        *keys,
        *(func.sum(values.c[name]).over(partition_by=partition).label(name) for name in sums),
        values.c[value].label("v"),
        func.row_number().over(partition_by=partition, order_by=values.c[value]).label("rn"),
        func.count().over(partition_by=partition).label("n"),
    ).subquery()
    bounds = [_bounds(ranked.c.n, percent) for percent in percents]
    # Only the two ranks around each percentile count: the rows of the other ranks are dropped
    # before grouping, so the grouping sorts a few rows per group instead of every value.
    wanted = or_(*(ranked.c.rn == rank for low, _ in bounds for rank in (low, low + 1)))
    columns: list[Any] = [ranked.c[name] for name in groups]
    columns.append(func.max(ranked.c.n).label("size"))
    for percent, (low, fraction) in zip(percents, bounds, strict=True):
        columns.append(
            func.sum(
                sql_case(
                    (ranked.c.rn == low, ranked.c.v * (1.0 - fraction)),
                    (ranked.c.rn == low + 1, ranked.c.v * fraction),
                    else_=0.0,
                )
            ).label(f"q{percent}")
        )
    columns += [func.max(ranked.c[name]).label(name) for name in sums]
    query = select(*columns).where(wanted)
    if groups:
        query = query.group_by(*(ranked.c[name] for name in groups))
    return query


def _bytewise(column: Any, dialect: str) -> Any:
    """A text group key compared byte by byte on PostgreSQL: the groups are the same (equal is
    equal in any deterministic collation), and the percentiles' sort of every value no longer
    asks the locale (``C.UTF-8`` included) to compare each pair of keys."""
    if dialect == "postgresql" and _is_text(column.type):
        return column.collate("C")
    return column


def _is_text(kind: Any) -> bool:
    """Whether a column type holds text (``String``, or a decorator of it like SQLModel's)."""
    return isinstance(getattr(kind, "impl_instance", kind), String)


def _bounds(size: Any, percent: int) -> tuple[Any, Any]:
    """The 1-based rank below the ``percent`` percentile of ``size`` values, and how far the
    percentile lies from it towards the next rank (a fraction)."""
    steps = (size - 1) * percent
    return steps // 100 + 1, cast(steps % 100, Float) / 100.0


SORT_MEMORY = "128MB"
"""PostgreSQL's ``work_mem`` for a report's transaction: the percentiles sort every stay of the
period, which at a million leads spills the default 4MB to disk several times over."""


def settings_for_report(connection: Connection) -> None:
    """On PostgreSQL, for this transaction only (``SET LOCAL``): :data:`SORT_MEMORY` for its
    sorts, and no JIT compilation, which the planner's estimates for the per-conversion probes
    turn on at a cost (about 0.7 s of compiling) that the report's queries never win back."""
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SET LOCAL work_mem = '{SORT_MEMORY}'"))
        connection.execute(text("SET LOCAL jit = off"))


def share(part: int, whole: int) -> float | None:
    """``part / whole``, or None when there is nothing to divide (not 0: unknown, not none)."""
    return part / whole if whole else None
