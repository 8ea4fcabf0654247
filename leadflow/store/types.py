"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, DateTime, Float, cast, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python; ``timestamptz`` on PostgreSQL.

    SQLite stores naive UTC text in one fixed format, so comparing two stored times as strings
    orders them correctly and rule conditions can use an index on them.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = f"naive datetime {value!r} reached the store; every stored time must be UTC"
            raise ValueError(msg)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDocument: Any = JSON().with_variant(JSONB(), "postgresql")
"""A JSON column: JSONB on PostgreSQL (indexable, comparable), JSON text on SQLite."""


def sqlite_timestamp(value: datetime) -> str:
    """The exact text :class:`UTCDateTime` stores on SQLite, for bulk paths that skip the ORM.

    SQLAlchemy writes ``%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d
    .%(microsecond)06d``, which is ``isoformat`` with a space (strftime's ``%Y`` would not pad a
    year before 1000, and costs more).
    """
    if value.tzinfo is UTC:  # an import's times mostly are: the text without its +00:00
        return value.isoformat(" ", "microseconds")[:-6]
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


MS_PER_DAY = 86_400_000.0


def days_between(dialect: str, later: Any, earlier: Any) -> ColumnElement[Any]:
    """``later - earlier`` in days, fractional, the same number on both stores.

    PostgreSQL subtracts the times exactly. SQLite's ``julianday`` is a double near 2.46
    million, good to about 20 microseconds, so the difference of two was off by up to 40 (173
    hours from 2026-03-01 00:00 came out 7.208333333488554 days): it is rounded to whole
    milliseconds, the precision SQLite reads a time to, so a duration of whole milliseconds
    is the double PostgreSQL gives."""
    if dialect == "sqlite":
        difference = func.julianday(later) - func.julianday(earlier)
        return func.round(difference * MS_PER_DAY) / MS_PER_DAY
    return cast(func.extract("epoch", later - earlier), Float) / 86400.0
