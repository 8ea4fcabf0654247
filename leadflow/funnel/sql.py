"""SQL both stores answer the same: day differences, weeks, exact percentiles.

SQLite has no percentile function, so :func:`quantiles` computes PostgreSQL's
``percentile_cont`` exactly from window functions: with ``n`` values in order and
``h = (n - 1) * q / 100``, the result is ``v[floor(h) + 1] + (v[floor(h) + 2] - v[floor(h) + 1])
* frac(h)`` (1-based), i.e. linear interpolation between the two nearest ranks. The median is the
case ``q = 50``: the middle value, or the mean of the two middle values. ``floor`` and ``frac``
come from integer division and remainder (no math functions needed on either store).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    Connection,
    Float,
    Integer,
    Select,
    String,
    Subquery,
    and_,
    cast,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy import case as sql_case

from leadflow.store.types import UTCDateTime


def instant(value: datetime) -> ColumnElement[datetime]:
    """A time as a bound value stored the way the columns store times."""
    return literal(value, UTCDateTime())


def week_of(dialect: str, column: Any) -> ColumnElement[Any]:
    """The Monday (UTC) of the ISO week holding ``column``, as ``YYYY-MM-DD``."""
    if dialect == "sqlite":
        return func.date(column, "weekday 0", "-6 days")
    return func.to_char(func.date_trunc("week", func.timezone("UTC", column)), "YYYY-MM-DD")


BUCKETS_PER_UNIT = 24
"""Buckets per unit of the measured value (per day for the times in stage: hours). Each
percentile sorts only the values of its bucket, so the finer the cheaper that sort, and the more
(bucket, group) counts the first pass keeps: a day's time in stage spreads over weeks, so hours
leave a few hundred values in a bucket and a few thousand buckets per group."""


def quantiles(
    values: Subquery,
    groups: Sequence[str],
    value: str,
    percents: Sequence[int],
    *,
    sums: Sequence[str] = (),
    dialect: str = "sqlite",
    numbered: Mapping[str, int] | None = None,
) -> Select[Any]:
    """Per group of ``values`` (columns ``groups``, never null): ``size`` (how many), the
    ``q{p}`` percentile (percentile_cont) of column ``value`` for each of ``percents``, and the
    sum of each column of ``sums`` (each a 0/1 flag) under its own name.

    Exact without sorting every value: a first pass counts the values per group and bucket (a
    monotone step of the value, so the buckets come in the values' order), which places each
    bucket's values between two ranks; then only the buckets holding a rank that a percentile
    reads are sorted, each apart, their values ranked from the bucket's first rank.

    On SQLite, whose grouping sorts every value by its group and bucket, the bucket, the groups
    of ``numbered`` (each a whole number ``0 <= g < numbered[g]``) and the flags are one whole
    number to sort by: a sort compares such numbers several times cheaper than rows of several
    columns, text among them (the other groups follow it as columns)."""
    if dialect == "sqlite":
        return _sqlite_quantiles(values, groups, value, percents, sums, numbered or {})
    if dialect == "postgresql":
        # OFFSET 0 keeps PostgreSQL from inlining ``values`` below: the bucket is then worked
        # out from each value, not by evaluating the value's expression a second time.
        values = select(values).offset(0).subquery("valued")
    measured = select(
        *(values.c[name] for name in groups),
        *(values.c[name] for name in sums),
        values.c[value].label("v"),
        _bucket(values.c[value], dialect).label("bucket"),
    ).cte("measured")
    keys = [measured.c[name] for name in groups]
    counts = (
        select(
            *keys,
            measured.c.bucket,
            func.count().label("c"),
            *(func.sum(measured.c[name]).label(name) for name in sums),
        )
        .group_by(*keys, measured.c.bucket)
        .subquery("counts")
    )
    wanted = _wanted_buckets(counts, groups, percents, sums, dialect)
    bucketed = [*(measured.c[name] for name in groups), measured.c.bucket]
    wanted_keys = [*(wanted.c[name] for name in groups), wanted.c.bucket]
    ranked = _ranked_in_buckets(measured.c.v, bucketed, wanted, wanted_keys, groups, sums, dialect)
    return _percentiles(ranked, groups, percents, sums)


def _sqlite_quantiles(
    values: Subquery,
    groups: Sequence[str],
    value: str,
    percents: Sequence[int],
    sums: Sequence[str],
    numbered: Mapping[str, int],
) -> Select[Any]:
    """:func:`quantiles` on SQLite: the values are measured once (a CTE both passes read) as
    ``v`` and one whole number ``k`` holding the numbered groups and the flags (the other
    groups beside it), and counted by ``bucket * width + k``."""
    small = [name for name in groups if name in numbered]
    others = [name for name in groups if name not in numbered]
    flags = 2 ** len(sums)
    kinds = math.prod(numbered[name] for name in small)  # the numbered groups' combinations
    width = kinds * flags
    flagged: Any = _mixed([(values.c[name], numbered[name]) for name in small]) * flags
    for bit, name in enumerate(sums):
        flagged = flagged + values.c[name] * 2**bit
    measured = select(
        flagged.label("k"), *(values.c[name] for name in others), values.c[value].label("v")
    ).cte("measured")
    bucket = _bucket(measured.c.v, "sqlite")
    rest = [measured.c[name] for name in others]
    key = (bucket * width + measured.c.k).label("key")
    keyed = select(key, *rest, func.count().label("c")).group_by(key, *rest).subquery("keyed")
    # The key taken apart again (a remainder that is never negative, so that a negative bucket
    # comes back whole too), and its flagged parts added up per group and bucket.
    low = (keyed.c.key % width + width) % width
    parts: list[Any] = []
    for index, name in enumerate(small):
        stride = math.prod(numbered[later] for later in small[index + 1 :])
        parts.append((low // flags // stride % numbered[name]).label(name))
    by = [
        *parts,
        *(keyed.c[name] for name in others),
        ((keyed.c.key - low) // width).label("bucket"),
    ]
    counts = (
        select(
            *by,
            func.sum(keyed.c.c).label("c"),
            *(
                func.sum(keyed.c.c * (low // 2**bit % 2)).label(name)
                for bit, name in enumerate(sums)
            ),
        )
        .group_by(*by)
        .subquery("counts")
    )
    wanted = _wanted_buckets(counts, groups, percents, sums, "sqlite")
    wanted_kind = _mixed([(wanted.c[name], numbered[name]) for name in small])
    ranked = _ranked_in_buckets(
        measured.c.v,
        [bucket * kinds + measured.c.k // flags, *rest],
        wanted,
        [wanted.c.bucket * kinds + wanted_kind, *(wanted.c[name] for name in others)],
        groups,
        sums,
        "sqlite",
    )
    return _percentiles(ranked, groups, percents, sums)


def _mixed(digits: Sequence[tuple[Any, int]]) -> Any:
    """One whole number from whole numbers ``0 <= d < base``, each ``(d, base)``, the first the
    most significant (0 when there are none)."""
    if not digits:
        return literal(0)
    number: Any = digits[0][0]
    for digit, base in digits[1:]:
        number = number * base + digit
    return number


def _percentiles(
    ranked: Subquery, groups: Sequence[str], percents: Sequence[int], sums: Sequence[str]
) -> Select[Any]:
    """Per group, the size, the percentiles read from the ``ranked`` values around them, and
    the sums."""
    bounds = [_bounds(ranked.c.n, percent) for percent in percents]
    chosen = or_(*(ranked.c.rn == rank for low, _ in bounds for rank in (low, low + 1)))
    columns: list[Any] = [ranked.c[name] for name in groups]
    columns.append(func.max(ranked.c.n).label("size"))
    for percent, (low, fraction) in zip(percents, bounds, strict=True):
        # PostgreSQL's own form, ``low + (high - low) x frac``: ``low x (1 - frac) + high x
        # frac`` gave 107.00000000000001 for two stays of 107 days (0.9 and 0.1 of 107 added).
        lower = func.max(sql_case((ranked.c.rn == low, ranked.c.v)))
        upper = func.coalesce(func.max(sql_case((ranked.c.rn == low + 1, ranked.c.v))), lower)
        columns.append((lower + func.max(fraction) * (upper - lower)).label(f"q{percent}"))
    columns += [func.max(ranked.c[name]).label(name) for name in sums]
    query = select(*columns).where(chosen)
    if groups:
        query = query.group_by(*(ranked.c[name] for name in groups))
    return query


def _wanted_buckets(
    counts: Subquery,
    groups: Sequence[str],
    percents: Sequence[int],
    sums: Sequence[str],
    dialect: str,
) -> CTE:
    """The (group, bucket) of ``counts`` (columns: the groups, ``bucket``, the count ``c`` and
    the sums) holding a rank a percentile reads, with ``before`` (the group's values in lower
    buckets), the group's ``n`` and its ``sums``: a window over the counts only."""
    partition = [_bytewise(counts.c[name], dialect) for name in groups]
    running = func.sum(counts.c.c).over(
        partition_by=partition, order_by=counts.c.bucket, rows=(None, 0)
    )
    placed = select(
        *(counts.c[name] for name in groups),
        counts.c.bucket,
        counts.c.c,
        # Whole numbers on PostgreSQL too (its sum of counts is a numeric), for the ranks'
        # integer division.
        cast(running - counts.c.c, BigInteger).label("before"),
        cast(func.sum(counts.c.c).over(partition_by=partition), BigInteger).label("n"),
        *(func.sum(counts.c[name]).over(partition_by=partition).label(name) for name in sums),
    ).subquery("placed")
    holds = or_(
        *(
            and_(placed.c.before < rank, rank <= placed.c.before + placed.c.c)
            for low, _ in (_bounds(placed.c.n, percent) for percent in percents)
            for rank in (low, low + 1)
        )
    )
    return select(placed).where(holds).cte("wanted")


def _ranked_in_buckets(
    v: Any,
    bucketed: Sequence[Any],
    wanted: CTE,
    wanted_keys: Sequence[Any],
    groups: Sequence[str],
    sums: Sequence[str],
    dialect: str,
) -> Subquery:
    """The values ``v`` of the ``wanted`` buckets with their rank in the group (``rn``), its
    ``n`` and ``sums``: a value's (group, bucket) is ``bucketed``, a wanted bucket's
    ``wanted_keys`` (expressions over ``wanted``, in the same order). The values are picked by
    (group, bucket) before they meet ``wanted``, so that no store scans every value once per
    wanted bucket."""
    keys = [column.label(f"key{index}") for index, column in enumerate(bucketed)]
    partition = [_bytewise(column, dialect) for column in bucketed]
    picked = (
        select(
            *keys,
            v.label("v"),
            func.row_number().over(partition_by=partition, order_by=v).label("nth"),
        )
        .where(tuple_(*bucketed).in_(select(*wanted_keys)))
        .subquery("picked")
    )
    same = [picked.c[key.name] == column for key, column in zip(keys, wanted_keys, strict=True)]
    return (
        select(
            *(wanted.c[name] for name in [*groups, *sums, "n"]),
            picked.c.v,
            (wanted.c.before + picked.c.nth).label("rn"),
        )
        .select_from(picked.join(wanted, and_(*same)))
        .subquery("ranked")
    )


def _bucket(value: Any, dialect: str) -> ColumnElement[Any]:
    """A step of ``value`` that never decreases as it grows (equal values share a bucket)."""
    scaled = value * BUCKETS_PER_UNIT
    if dialect == "sqlite":
        return cast(scaled, Integer)  # truncation: monotone
    return func.floor(scaled)


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
"""PostgreSQL's ``work_mem`` for a report's transaction: the percentiles keep every stay of the
period (to count them, then to pick the few buckets they read), which at a million leads would
spill the default 4MB to disk several times over."""


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
