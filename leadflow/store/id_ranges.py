"""Sets of ids in SQL: split one statement's worth at a time (:func:`chunks`), and ``column IN
(ids)`` that PostgreSQL answers from an index however stale its statistics (:func:`among`).

A batch asks for the rows of its 1,000 leads in tables the same evaluation keeps growing
(enrollments, SLA timers, the outbox). With statistics from before the evaluation, PostgreSQL
judged a sequential scan cheaper than 1,000 index probes, so every batch read the whole table:
100,000 enrolments ran at a third of the speed of 10,000. The batch's ids come in id order, so
their range bounds the scan: with it the planner walks the index over that range, and an
evaluation reads each row once over all its batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    func,
)

Item = TypeVar("Item")

PER_STATEMENT = 1000
"""Ids (or keys) one statement carries: SQLite's parameter limit and the planner's both sit well
above it, and a batch's leads fit in one."""


def chunks(items: Sequence[Item], size: int = PER_STATEMENT) -> Iterator[Sequence[Item]]:
    """``items`` in consecutive slices of at most ``size``, for one statement each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def among(
    column: ColumnElement[int], ids: Sequence[int], dialect: str | None = None
) -> ColumnElement[bool]:
    """``column`` is one of ``ids`` (and, to say so to the planner, between the least and the
    greatest of them).

    On PostgreSQL (``dialect``) the ids are one array parameter in its text form
    (:func:`id_array`), ``column = ANY(...)``: an ``IN`` list of a batch's 1,000 ids made
    SQLAlchemy expand 1,000 parameters and psycopg parse the 1,000-placeholder statement afresh
    (too long for its cache) and dump each id, for every statement of every batch."""
    bounds = column.between(min(ids), max(ids))
    if dialect == "postgresql":
        listed = cast(bindparam(None, id_array(ids), type_=Text), ARRAY(BigInteger))
        return and_(bounds, column == any_(listed))
    return and_(bounds, column.in_(ids))


def id_array(ids: Iterable[int]) -> str:
    """The ids as PostgreSQL's text form of an array (``{1,2,3}``), for a parameter cast to
    ``bigint[]``: joined in C, where psycopg dumps a list parameter element by element in
    Python (for a large import's batches, more client time than the rest of the write)."""
    return "{" + ",".join(map(str, ids)) + "}"


def text_array(items: Sequence[str]) -> str:
    """The texts as PostgreSQL's text form of an array (``{"a","b"}``), for a parameter cast
    to ``text[]``; see :func:`id_array`. Each item is quoted, so no text reads as ``NULL``."""
    joined = '","'.join(items)
    # Only the separators' quotes and no backslash: no item needs escaping (the usual keys).
    if "\\" in joined or joined.count('"') != 2 * (len(items) - 1):
        return "{" + ",".join(map(array_element, items)) + "}"
    return '{"' + joined + '"}' if items else "{}"


def array_element(text: str) -> str:
    """One text as an element of PostgreSQL's text form of an array: quoted, so that it never
    reads as ``NULL`` or splits at a comma; inside the quotes only a backslash and a double
    quote are special."""
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def among_selected(
    column: ColumnElement[int], ids: Select[Any], dialect: str
) -> ColumnElement[bool]:
    """``column`` is one of the ids ``ids`` selects, each looked up by index on ``column``.

    On PostgreSQL as ``= ANY(ARRAY(...))``: an ``IN (SELECT ...)`` became a hash join that
    read every row of ``column``'s table in range (a sequential scan of all leads, every
    activity of a range) for the few ids selected; the array is an index probe per id."""
    if dialect == "postgresql":
        return column == any_(func.array(ids.scalar_subquery()))
    return column.in_(ids)
