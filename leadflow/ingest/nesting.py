"""JSONL objects that nest their columns: ``{"attributes": {"industry": "saas"}}`` and
HubSpot's ``{"id": "123", "properties": {"email": "a@b.c"}}``.

Each key of a nested ``attributes`` or ``properties`` object is read as the column
``attributes.KEY`` / ``properties.KEY``, as a CSV header of that name is (a declared attribute,
an activity's property, or a name ``import.mappings.KIND.columns`` maps). One level only: a
line nesting deeper, holding a list there, or giving one column both flat and nested is
rejected at its line, naming the column; the other lines land (docs/import.md).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from leadflow.ingest.names import long_name_problem, quoted

NESTS = ("attributes", "properties")
"""The keys whose object's keys are columns of their own, as ``NEST.KEY``."""


def nested_objects(kind_fields: Collection[str], mapped: Collection[str]) -> tuple[str, ...]:
    """The :data:`NESTS` a kind's JSONL lines are flattened by.

    A nest the kind reads as a field of its own (an activity's ``properties`` object, merged
    with its ``properties.KEY`` columns) or that ``import.mappings.KIND.columns`` names (mapped
    to a field, or to ``skip``) is read as it was: a mapping written for it keeps its meaning.
    """
    return tuple(nest for nest in NESTS if nest not in kind_fields and nest not in mapped)


@dataclass(frozen=True)
class NestingProblem:
    """Why an object's nest cannot be read as columns: a file names it at its line as
    ``column: reason``, the HTTP API at ``["body", column]``."""

    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.column}: {self.reason}"


def flattened(
    value: dict[str, object], nests: tuple[str, ...]
) -> dict[str, object] | NestingProblem:
    """``value`` with each nest's object as its ``NEST.KEY`` keys, in the object's order; or
    its problem when it cannot be read so."""
    flat: dict[str, object] = {}
    for key, item in value.items():
        if key not in nests:
            flat[key] = item
            continue
        if item is None:
            continue  # no attributes: as if the key were absent
        if not isinstance(item, dict):
            kind = "a list" if isinstance(item, list) else type(item).__name__
            return NestingProblem(
                key,
                f'expected an object such as {{"industry": "saas"}} whose keys are '
                f"read as {key}.KEY columns, got {kind}",
            )
        for inner, inner_value in item.items():
            too_long = long_name_problem(inner, "a key")
            if too_long is not None:  # named by its prefix: in a message, in an HTTP loc
                return NestingProblem(f"{key}.{quoted(inner)}", too_long)
            column = f"{key}.{inner}"
            if isinstance(inner_value, dict | list):
                what = "an object" if isinstance(inner_value, dict) else "a list"
                return NestingProblem(
                    column,
                    f"{what} inside '{key}' is nested deeper than one level; give "
                    "it one value (text, a number, true, false or null), or leave it out",
                )
            if column in value:
                return NestingProblem(
                    column,
                    f"given twice on this line, as the key '{column}' and as "
                    f"'{inner}' inside '{key}'; keep one",
                )
            flat[column] = inner_value
    return flat


def nested_field_hint(column: str, names: Mapping[str, str], kind: str) -> str | None:
    """For ``properties.email`` (HubSpot's shape, flattened) where ``email`` is one of the
    kind's fields or declared attributes (``names``: name -> target), how to map it; else None.

    Such a column is read only through a mapping, as a CSV header of that name is; the generic
    "did you mean" finds no name close to ``properties.email``.
    """
    nest, dot, name = column.partition(".")
    target = names.get(name) if dot and nest in NESTS else None
    if target is None:
        return None
    return (
        f"unknown column {column!r}; to read it as {target}, map it under "
        f"import.mappings.{kind}.columns ({column!r}: {target}), or map it to skip"
    )
