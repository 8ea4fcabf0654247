"""Typed attributes inside the JSON column, read with a literal path so they can be indexed.

SQLAlchemy's ``attributes["x"].as_string()`` binds the JSON path as a parameter, which no
expression index can match. :class:`AttributeValue` renders ``json_extract(attributes,
'$.x')`` on SQLite and ``(attributes ->> 'x')`` (cast for numbers and booleans) on
PostgreSQL, and :func:`leadflow.store.database.ensure_attribute_indexes` builds indexes on exactly those expressions
for the attributes ``attributes.indexed`` names, so rules filtering on them use an index.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement, literal_column
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Boolean, Float, Integer, String, TypeEngine

ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SQL_TYPES: dict[str, TypeEngine[Any]] = {
    "string": String(),
    "integer": Integer(),
    "number": Float(),
    "boolean": Boolean(),
    "datetime": String(),
    "date": String(),
}
_PG_CASTS = {"integer": "bigint", "number": "double precision", "boolean": "boolean"}


class AttributeValue(FunctionElement[Any]):
    """The value of one declared attribute of a row, typed."""

    inherit_cache = True
    name = "attribute_value"

    def __init__(self, column: ColumnElement[Any], key: str, kind: str) -> None:
        if not ATTRIBUTE_NAME.match(key):
            msg = f"attribute name {key!r} must be letters, digits and underscores"
            raise ValueError(msg)
        # The key and kind travel as literal arguments so they are part of the cache key.
        super().__init__(column, literal_column(f"'{key}'"), literal_column(f"'{kind}'"))
        self.type = _SQL_TYPES[kind]


def _parts(element: AttributeValue, compiler: SQLCompiler, **kw: Any) -> tuple[str, str, str]:
    column, key, kind = list(element.clauses)
    return compiler.process(column, **kw), str(key).strip("'"), str(kind).strip("'")


@compiles(AttributeValue, "sqlite")
def _sqlite(element: AttributeValue, compiler: SQLCompiler, **kw: Any) -> str:
    column, key, _kind = _parts(element, compiler, **kw)
    return f"json_extract({column}, '$.{key}')"


@compiles(AttributeValue, "postgresql")
def _postgresql(element: AttributeValue, compiler: SQLCompiler, **kw: Any) -> str:
    column, key, kind = _parts(element, compiler, **kw)
    text = f"({column} ->> '{key}')"
    return f"({text}::{_PG_CASTS[kind]})" if kind in _PG_CASTS else text


def attribute_value(table: Table, key: str, kind: str) -> AttributeValue:
    return AttributeValue(table.c.attributes, key, kind)
