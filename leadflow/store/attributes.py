"""Typed attributes inside the JSON column, read with a literal path so they can be indexed.

SQLAlchemy's ``attributes["x"].as_string()`` binds the JSON path as a parameter, which no
expression index can match. :class:`AttributeValue` renders ``json_extract(attributes,
'$.x')`` on SQLite and ``(attributes ->> 'x')`` (cast for numbers and booleans, NULL where the
stored value is of another type or does not fit) on PostgreSQL, and :func:`leadflow.store.database.ensure_attribute_indexes` builds indexes on exactly those expressions
for the attributes ``attributes.indexed`` names, so rules filtering on them use an index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement, literal_column
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Boolean, Float, Integer, String, TypeEngine

from leadflow.settings import ATTRIBUTE_NAME

_SQL_TYPES: dict[str, TypeEngine[Any]] = {
    "string": String(),
    "integer": Integer(),
    "number": Float(),
    "boolean": Boolean(),
    "datetime": String(),
    "date": String(),
}
_PG_INTEGER = "^-?[0-9]{1,19}$"
"""JSON text of a whole number short enough to compare with bigint's bounds as numeric."""
_PG_BOUNDS = {
    "integer": ("-9223372036854775808", "9223372036854775807"),
    "number": ("4.9406564584124654e-324", "1.7976931348623157e308"),
}
"""What ``bigint`` and ``double precision`` hold (the magnitude of a non-zero double)."""


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


def _parts(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> tuple[str, str, str]:
    """The column, the key and the kind an :class:`AttributeValue` (or a :class:`ScalarText`
    made from one) carries."""
    column, key, kind = list(element.clauses)
    return compiler.process(column, **kw), str(key).strip("'"), str(kind).strip("'")


@compiles(AttributeValue, "sqlite")
def _sqlite(element: AttributeValue, compiler: SQLCompiler, **kw: Any) -> str:
    column, key, _kind = _parts(element, compiler, **kw)
    return f"json_extract({column}, '$.{key}')"


@compiles(AttributeValue, "postgresql")
def _postgresql(element: AttributeValue, compiler: SQLCompiler, **kw: Any) -> str:
    """The text, or the typed value when the JSON holds one of the right type that fits, else NULL.

    A plain cast (``::bigint``) of one stored value that does not fit or is not a number (written
    before ingest checked it, or by hand) raised for the whole query: the rule then matched no
    lead at all, and an expression index on it could not even be built. Each step is a nested
    CASE because PostgreSQL evaluates the branches of a CASE, unlike the terms of an AND, in order.
    """
    column, key, kind = _parts(element, compiler, **kw)
    text = f"({column} ->> '{key}')"
    json_type = f"jsonb_typeof({column} -> '{key}')"
    if kind == "boolean":
        return f"(CASE WHEN {json_type} = 'boolean' THEN {text}::boolean END)"
    if kind == "integer":
        low, high = _PG_BOUNDS[kind]
        fits = f"{text}::numeric BETWEEN {low} AND {high}"
        return (
            f"(CASE WHEN {json_type} = 'number' AND {text} ~ '{_PG_INTEGER}' "
            f"THEN CASE WHEN {fits} THEN {text}::bigint END END)"
        )
    if kind == "number":
        low, high = _PG_BOUNDS[kind]
        magnitude = f"abs({text}::numeric)"
        fits = f"{magnitude} = 0 OR {magnitude} BETWEEN {low} AND {high}"
        return (
            f"(CASE WHEN {json_type} = 'number' "
            f"THEN CASE WHEN {fits} THEN {text}::double precision END END)"
        )
    return text


class ScalarText(FunctionElement[Any]):
    """A text attribute's (or property's) value for the text operators: NULL where the JSON
    holds a list or an object, which is no text (``{"url": ["/pricing"]}`` does not contain
    ``/pricing``). Rendered apart from :class:`AttributeValue`, whose expression the attribute
    indexes are built on."""

    inherit_cache = True
    name = "scalar_text"
    type = String()

    def __init__(self, value: AttributeValue) -> None:
        super().__init__(*value.clauses)


@compiles(ScalarText, "sqlite")
def _sqlite_scalar(element: ScalarText, compiler: SQLCompiler, **kw: Any) -> str:
    column, key, _kind = _parts(element, compiler, **kw)
    return (
        f"(CASE WHEN json_type({column}, '$.{key}') IN ('array', 'object') THEN NULL "
        f"ELSE json_extract({column}, '$.{key}') END)"
    )


@compiles(ScalarText, "postgresql")
def _postgresql_scalar(element: ScalarText, compiler: SQLCompiler, **kw: Any) -> str:
    column, key, _kind = _parts(element, compiler, **kw)
    return (
        f"(CASE WHEN jsonb_typeof({column} -> '{key}') IN ('array', 'object') THEN NULL "
        f"ELSE ({column} ->> '{key}') END)"
    )


def attribute_value(table: Table, key: str, kind: str) -> AttributeValue:
    return AttributeValue(table.c.attributes, key, kind)


class MergedAttributes(FunctionElement[Any]):
    """A row's stored attributes with ``keys`` replaced by ``incoming``'s values: a key in
    ``keys`` that ``incoming`` lacks is removed, any other stored key kept as it is.

    An import (or a posted record) changes only the attributes it has a column for
    (docs/import.md): one with only ``converted`` keeps the lead's ``region``. ``keys`` are the
    columns; ``incoming`` holds those of them with a value (an empty cell clears its attribute,
    as an empty cell of a plain column clears the field).
    """

    inherit_cache = True
    name = "merged_attributes"

    def __init__(
        self, column: ColumnElement[Any], keys: Sequence[str], incoming: ColumnElement[Any]
    ) -> None:
        for key in keys:
            if not ATTRIBUTE_NAME.match(key):
                msg = f"attribute name {key!r} must be letters, digits and underscores"
                raise ValueError(msg)
        # The keys travel as literal arguments so they are part of the cache key.
        super().__init__(column, incoming, *(literal_column(f"'{key}'") for key in keys))
        self.type = column.type


def _merge_parts(
    element: MergedAttributes, compiler: SQLCompiler, **kw: Any
) -> tuple[str, str, list[str]]:
    column, incoming, *keys = list(element.clauses)
    stored, given = compiler.process(column, **kw), compiler.process(incoming, **kw)
    return stored, given, [str(key).strip("'") for key in keys]


@compiles(MergedAttributes, "sqlite")
def _sqlite_merged(element: MergedAttributes, compiler: SQLCompiler, **kw: Any) -> str:
    # json_patch (RFC 7396) merges objects; the attributes hold no objects or nulls of their own.
    stored, given, keys = _merge_parts(element, compiler, **kw)
    # Anything but an object stored (NULL, JSON null written by hand) counts as no attributes.
    base = f"(CASE WHEN json_type({stored}) = 'object' THEN {stored} ELSE '{{}}' END)"
    if keys:
        paths = ", ".join(f"'$.{key}'" for key in keys)
        base = f"json_remove({base}, {paths})"
    return f"json_patch({base}, {given})"


@compiles(MergedAttributes, "postgresql")
def _postgresql_merged(element: MergedAttributes, compiler: SQLCompiler, **kw: Any) -> str:
    stored, given, keys = _merge_parts(element, compiler, **kw)
    # jsonb's minus raises for a scalar: a JSON null stored by hand would fail the batch.
    base = f"(CASE WHEN jsonb_typeof({stored}) = 'object' THEN {stored} ELSE '{{}}'::jsonb END)"
    if keys:
        names = ", ".join(f"'{key}'" for key in keys)
        base = f"({base} - ARRAY[{names}]::text[])"
    return f"({base} || {given})"
