"""Many rows at once, straight to the driver: values bound as SQLAlchemy would bind them, and
PostgreSQL's one-statement insert of a whole batch.

A batch of firings writes thousands of rows of a few kinds. SQLAlchemy's per-row parameter
work, and psycopg parsing a 1,000-row ``INSERT ... VALUES`` afresh for every batch, were most of
that write's time; here each column's values go through its type's bind processing once per
distinct value, and PostgreSQL takes a whole column as one array.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Connection, Row, Table
from sqlalchemy.engine import Dialect

from leadflow.store.id_ranges import array_element


def bound_values(
    dialect: Dialect,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    documents_as_text: bool = False,
) -> list[tuple[Any, ...]]:
    """Each row's values of ``columns``, through each column type's own bind processing (JSON,
    times), as SQLAlchemy would hand them to the driver.

    A batch's rows repeat their values (every row of a batch has the same ``now``, most timers
    the same due time; a firing's audit rows share one evidence, a batch's timers one ladder):
    a time is processed once per statement, a document (JSON) once per object.

    With ``documents_as_text`` a JSON column's dicts and lists are given as their JSON text
    (PostgreSQL's COPY parses it), not as the driver's wrapper that serialises each of them
    again for every row it is in; on SQLite that text is what SQLAlchemy would send, without
    its checks per value."""
    by_column = []
    for name in columns:
        kind_of_column = table.c[name].type.dialect_impl(dialect)
        process: Callable[[Any], Any] | None = kind_of_column.bind_processor(dialect)
        if documents_as_text and process is not None and isinstance(kind_of_column, JSON):
            process = _as_text(process, getattr(dialect, "_json_serializer", None) or json.dumps)
        given = [row[name] for row in rows]
        if process is not None:
            seen: dict[Any, Any] = {}
            processed = []
            for value in given:
                kind = type(value)
                # A document is known by its identity: the rows hold every one of them alive
                # until the statement is done, so no two of them share an id.
                key = value if kind is datetime else id(value) if kind in _DOCUMENTS else None
                if key is None:
                    processed.append(process(value))
                    continue
                if key not in seen:
                    seen[key] = process(value)
                processed.append(seen[key])
            given = processed
        by_column.append(given)
    return list(zip(*by_column, strict=True))


_DOCUMENTS = frozenset({dict, list})


def _as_text(
    process: Callable[[Any], Any], serialise: Callable[[Any], str]
) -> Callable[[Any], Any]:
    """``process`` for a JSON column, giving documents as their JSON text by the dialect's
    serialiser, as SQLAlchemy's own processing does on SQLite (None and SQL NULLs as
    ``process`` gives them)."""

    def as_text(value: Any) -> Any:
        return serialise(value) if type(value) in _DOCUMENTS else process(value)

    return as_text


def insert_new_postgres(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    unique: str,
    returning: Sequence[str],
) -> list[Row[Any]]:
    """INSERT ``rows`` (each with the same keys) on PostgreSQL, skipping those whose ``unique``
    value exists (``ON CONFLICT DO NOTHING``, so also one a concurrent transaction has just
    inserted); return ``returning`` of the rows inserted.

    One statement of one array per column (``unnest``), whatever the number of rows: the
    driver parses and the server plans a short statement, not one placeholder per value.
    """
    if not rows:
        return []
    dialect = connection.dialect
    columns = list(rows[0])
    values = bound_values(dialect, table, columns, rows, documents_as_text=True)
    arrays = [array_parameter(column) for column in zip(*values, strict=True)]
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(name) for name in columns)
    unnest = ", ".join(f"%s::{table.c[name].type.compile(dialect)}[]" for name in columns)
    sql = (
        f"INSERT INTO {quote(table.name)} ({names}) SELECT * FROM unnest({unnest})"
        f" ON CONFLICT ({quote(unique)}) DO NOTHING"
        f" RETURNING {', '.join(quote(name) for name in returning)}"
    )
    return list(connection.exec_driver_sql(sql, tuple(arrays)).all())


def insert_new_sqlite(
    connection: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    unique: str,
    returning: Sequence[str],
) -> list[Row[Any]]:
    """:func:`insert_new_postgres` on SQLite: a multi-row ``INSERT ... VALUES`` as many rows at
    a time as SQLite's limit on a statement's parameters allows, the values bound here once
    per column, not by SQLAlchemy's per-row parameter work."""
    if not rows:
        return []
    dialect = connection.dialect
    columns = list(rows[0])
    values = bound_values(dialect, table, columns, rows)
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(name) for name in columns)
    one = "(" + ", ".join("?" * len(columns)) + ")"
    per_statement = max(1, _parameter_limit(connection) // len(columns))
    inserted: list[Row[Any]] = []
    for start in range(0, len(values), per_statement):
        part = values[start : start + per_statement]
        sql = (
            f"INSERT INTO {quote(table.name)} ({names}) VALUES {', '.join([one] * len(part))}"
            f" ON CONFLICT ({quote(unique)}) DO NOTHING"
            f" RETURNING {', '.join(quote(name) for name in returning)}"
        )
        flat = tuple(value for row in part for value in row)
        inserted += connection.exec_driver_sql(sql, flat).all()
    return inserted


def _parameter_limit(connection: Connection) -> int:
    """How many parameters one SQLite statement may have (32,766 since SQLite 3.32)."""
    driver = connection.connection.dbapi_connection
    return int(driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))  # type: ignore[union-attr]


def update_by_id_postgres(
    connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Set ``columns`` of each row ``id`` to its values in ``rows`` (each with ``id`` and
    ``columns``), in one ``UPDATE ... FROM unnest(...)`` on PostgreSQL."""
    if not rows:
        return
    dialect = connection.dialect
    given = [*columns, "id"]
    values = bound_values(dialect, table, given, rows, documents_as_text=True)
    arrays = [array_parameter(column) for column in zip(*values, strict=True)]
    quote = dialect.identifier_preparer.quote
    unnest = ", ".join(f"%s::{table.c[name].type.compile(dialect)}[]" for name in given)
    names = ", ".join(quote(name) for name in given)
    assignments = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in columns)
    sql = (
        f"UPDATE {quote(table.name)} AS t SET {assignments}"
        f" FROM unnest({unnest}) AS v({names}) WHERE t.id = v.id"
    )
    connection.exec_driver_sql(sql, tuple(arrays))


def array_parameter(values: Sequence[Any]) -> Any:
    """A column's bound ``values`` as one parameter for a ``%s::type[]`` cast: PostgreSQL's text
    form of the array (``{1,NULL,"a b"}``), joined here, for the values of the kinds a batch
    writes (texts, whole numbers, aware times, truth values, None); other kinds as a list for
    psycopg to dump. psycopg dumps a list element by element in Python with a regular
    expression per element, which was most of the client's time for a batch's outbox insert
    and lead update (see :func:`leadflow.store.id_ranges.id_array`)."""
    elements = []
    times: dict[datetime, str] = {}  # a batch's rows share a few times (its ``now``)
    for value in values:
        kind = type(value)
        if value is None:
            elements.append("NULL")
        elif kind is str:
            elements.append(array_element(value))
        elif kind is int:
            elements.append(str(value))
        elif kind is bool:
            elements.append("t" if value else "f")
        elif kind is datetime and value.tzinfo is not None:
            spelled = times.get(value)
            if spelled is None:
                spelled = times[value] = f'"{value.isoformat()}"'
            elements.append(spelled)
        else:
            return list(values)
    return "{" + ",".join(elements) + "}"
