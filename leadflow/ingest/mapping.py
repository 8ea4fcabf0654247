"""From a file's header and the configured mapping to a plan that reads each row into fields.

A header column is taken, in this order, from ``import.mappings.KIND.columns`` (a field, a list
of fields, or ``skip``), else by its own name if that is one of the kind's fields, else as a
declared attribute (``attributes.leads`` / ``attributes.deals``), else by its name written as a
field's or attribute's is (:func:`field_name`: ``Lead Source`` and ``LeadSource`` are
``lead_source``, ``Do Not Email`` is ``do_not_email``), as a CRM's importer matches headers to
properties; a header written as a mapping's target (``attributes.region`` when declared, an
activity's ``properties.url``) is that target. Anything else is an unknown column: a
file-level error naming the column and its close matches, before any row is read.

The plan made (:class:`~leadflow.ingest.column_plan.ColumnPlan`) reads the rows; the parser
of each field type is in :mod:`leadflow.ingest.field_parsers`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from leadflow.errors import Problem, ProblemsError
from leadflow.ingest import json_values, values
from leadflow.ingest.column_plan import ColumnPlan, Target
from leadflow.ingest.field_parsers import (
    attribute_parser,
    derived_outcome,
    field_parser,
    folded_values,
    renaming,
    stage_outcomes,
)
from leadflow.ingest.names import long_name_problem, quoted
from leadflow.ingest.nesting import nested_field_hint
from leadflow.settings import AttributeType, ImportKind, ImportMapping, Settings
from leadflow.suggestions import did_you_mean

SKIP = "skip"

KIND_FIELDS: Mapping[ImportKind, Mapping[str, str]] = {
    "reps": {
        "external_id": "text",
        "name": "text",
        "email": "email",
        "manager": "text",
        "pools": "list",
        "capacity": "integer",
        "active": "boolean",
        "timezone": "timezone",
    },
    "leads": {
        "external_id": "text",
        "email": "lead_email",
        "name": "text",
        "company": "text",
        "score": "integer",
        "stage": "text",
        "owner": "text",
        "timezone": "timezone",
        "unsubscribed": "boolean",
        "do_not_email": "boolean",
        "last_activity_at": "datetime",
        "stage_entered_at": "datetime",
    },
    "deals": {
        "external_id": "text",
        "lead": "text",
        "account": "text",
        "product": "text",
        "owner": "text",
        "stage": "text",
        "outcome": "outcome",
        "amount": "number",
        "engaged_at": "datetime",
        "closed_at": "datetime",
        "last_activity_at": "datetime",
    },
    "activities": {
        "external_id": "text",
        "lead": "text",
        "deal": "text",
        "type": "text",
        "actor": "text",
        "occurred_at": "datetime",
        "properties": "object",
    },
}
"""Each kind's importable fields and how their cells are read."""

REFERENCES = frozenset({"lead", "deal", "owner", "actor", "manager"})
"""The fields naming another record by its id (a rep's may be its name or email): read as
text, and refused in Excel's scientific notation as an ``external_id`` is."""

REQUIRED: Mapping[ImportKind, tuple[tuple[str, ...], ...]] = {
    "reps": (("name",),),
    "leads": (("external_id",),),
    "deals": (("external_id",), ("stage",)),
    "activities": (("type",), ("occurred_at",), ("lead", "deal")),
}
"""Columns a file must have; an inner tuple means "at least one of"."""

GROUPS: Mapping[ImportKind, str] = {"leads": "attributes", "deals": "attributes"}
"""Kinds with typed attributes; activities have free-form ``properties.NAME`` instead."""

SPARE_COLUMNS = 100
"""Columns over what a kind can take (:func:`too_many_columns`) still named one by one."""

NAMED_UNKNOWN = 20
"""At most this many unknown columns are named, each with its suggestion; the rest counted."""


def compile_plan(
    kind: ImportKind,
    header: Sequence[str],
    settings: Settings,
    file: str,
    lines: Mapping[str, int] | None = None,
    *,
    required: bool = True,
) -> ColumnPlan:
    """The plan for ``header``; raises :class:`ProblemsError` listing every column problem.

    ``lines``: a JSONL file's line each key is first seen on (its header is every line's
    keys), where a column's problem is located; a CSV header's are all on line 1. Two keys
    setting one field are located where the later one is first seen: the line that disagrees
    with the file so far, not line 1 that set the field first. ``required=False`` leaves the
    required columns to the caller (:func:`missing_columns`): a posted record lacking one is
    still read, so its other bad fields are named with it.
    """
    mapping = settings.imports.mappings.get(kind, ImportMapping())
    declared: Mapping[str, AttributeType] = (
        getattr(settings.attributes, kind) if kind in GROUPS else {}
    )
    fields = KIND_FIELDS[kind]
    too_many = too_many_columns(kind, len(header), settings)
    if too_many is not None:
        raise ProblemsError([Problem(file, 1, 0, too_many)])
    located: list[Problem] = []
    unknown = _UnknownColumns(kind, mapping, declared)
    chosen: dict[str, tuple[int, str]] = {}
    first_seen: Mapping[str, int] = lines or {}
    for index, column in enumerate(header):
        at = first_seen.get(column, 1)
        too_long = long_name_problem(column)
        if too_long is not None:  # a posted key: a file's header refused it already
            located.append(Problem(file, at, 0, f"column {quoted(column)}: {too_long}"))
            continue
        problems: list[str] = []
        for field in _fields_of(kind, column, mapping, declared, problems, unknown):
            if field in chosen:
                earlier = chosen[field][1]
                # A JSONL file's columns come from different lines: say where the other is.
                first = first_seen.get(earlier, 1)
                where = f" (line {first})" if first != at else ""
                problems.append(
                    f"columns {earlier!r}{where} and {column!r} both set {field}; map one of "
                    f"them to skip under import.mappings.{kind}.columns (a field takes one column)"
                )
            chosen[field] = (index, column)
        located += [Problem(file, at, 0, p) for p in problems]
    joins = _joins(kind, header, mapping, declared, chosen, located, file, first_seen)
    problems = unknown.left_unnamed()
    if required:
        problems += _missing(kind, chosen.keys(), mapping)
    problems += _unstorable_renames(kind, mapping)
    located += [Problem(file, 1, 0, p) for p in problems]
    if located:
        raise ProblemsError(located)
    targets = [
        _target(kind, field=field, index=index, fields=fields, declared=declared, mapping=mapping)
        for field, (index, _column) in chosen.items()
    ]
    if kind == "deals" and "outcome" not in chosen and "stage" in chosen:
        # The CRM's stage says the outcome (``Won``): read it through values.outcome.
        targets.append(
            Target("outcome", chosen["stage"][0], derived_outcome, stage_outcomes(mapping))
        )
    targets.sort(key=lambda t: t.field)
    empty = frozenset(value.strip().casefold() for value in mapping.empty_values)
    return ColumnPlan(kind, tuple(header), tuple(targets), empty, tuple(joins))


def _joins(
    kind: ImportKind,
    header: Sequence[str],
    mapping: ImportMapping,
    declared: Mapping[str, AttributeType],
    chosen: dict[str, tuple[int, str]],
    located: list[Problem],
    file: str,
    first_seen: Mapping[str, int],
) -> list[tuple[int, ...]]:
    """The fields ``import.mappings.KIND.combine`` fills from several columns, put in
    ``chosen`` at the index past the header their joined cell is read at
    (:attr:`ColumnPlan.joins`). A field none of whose columns the file has is not set, as a
    column the file lacks; one the file has some of is joined from those."""
    positions = {column: index for index, column in enumerate(header)}
    joins: list[tuple[int, ...]] = []
    for field, columns in mapping.combine.items():
        setting = f"import.mappings.{kind}.combine.{field}"
        problem = _check_field(kind, field, declared, setting)
        if problem is not None:
            located.append(Problem(file, 1, 0, problem))
            continue
        present = tuple(positions[column] for column in columns if column in positions)
        if not present:
            continue
        at = max(first_seen.get(header[index], 1) for index in present)
        if field in chosen:
            earlier = chosen[field][1]
            located.append(
                Problem(
                    file,
                    at,
                    0,
                    f"column {earlier!r} and {setting} both set {field}; map {earlier!r} to "
                    f"skip under import.mappings.{kind}.columns, or remove {setting}",
                )
            )
            continue
        chosen[field] = (len(header) + len(joins), " + ".join(columns))
        joins.append(present)
    return joins


def _combined_columns(mapping: ImportMapping) -> frozenset[str]:
    """The columns ``combine`` reads: known, though they may fill no field of their own."""
    return frozenset(column for columns in mapping.combine.values() for column in columns)


def too_many_columns(kind: ImportKind, count: int, settings: Settings) -> str | None:
    """Why a header (a posted object's keys) of ``count`` columns is refused outright, or None.

    A readable header has at most one column per field, declared attribute and mapped column;
    one far over that is refused by its count alone, before any column is looked at, so a body
    with 200 000 unknown keys costs no more than its parsing (docs/import.md).
    """
    mapping = settings.imports.mappings.get(kind, ImportMapping())
    declared = getattr(settings.attributes, kind) if kind in GROUPS else {}
    usable = (
        len(KIND_FIELDS[kind])
        + len(declared)
        + len(mapping.columns)
        + len(_combined_columns(mapping))
    )
    if count <= usable + SPARE_COLUMNS:
        return None
    return (
        f"{count} columns, but {kind} have only {usable} fields, declared attributes and "
        f"mapped columns; remove the columns leadflow does not read (more than "
        f"{usable + SPARE_COLUMNS} are not looked at one by one)"
    )


class _UnknownColumns:
    """The problem of each unknown column: the first :data:`NAMED_UNKNOWN` named with their
    suggestions, the others only counted (a suggestion is the costly part)."""

    def __init__(
        self, kind: ImportKind, mapping: ImportMapping, declared: Mapping[str, AttributeType]
    ) -> None:
        self.kind, self.mapping, self.declared = kind, mapping, declared
        self.unnamed = 0
        self.named = 0

    def problem(self, column: str) -> str | None:
        if self.named >= NAMED_UNKNOWN:
            self.unnamed += 1
            return None
        self.named += 1
        return _unknown_column(self.kind, column, self.mapping, self.declared)

    def left_unnamed(self) -> list[str]:
        if not self.unnamed:
            return []
        return [f"unknown columns: {self.unnamed} more, not named here"]


def unknown_columns(
    kind: ImportKind, header: Sequence[str], settings: Settings
) -> tuple[dict[str, str | None], list[str]]:
    """The columns of ``header`` that are no field, mapped column or declared attribute, each
    with :func:`compile_plan`'s problem (None past the first :data:`NAMED_UNKNOWN`, which are
    only counted), and the problem counting those (``unknown columns: N more``).

    For posted records, each rejected at its own index for the unknown keys it holds. A name
    too long to look at, and a header with too many columns, are left to :func:`compile_plan`.
    """
    mapping = settings.imports.mappings.get(kind, ImportMapping())
    declared: Mapping[str, AttributeType] = (
        getattr(settings.attributes, kind) if kind in GROUPS else {}
    )
    if too_many_columns(kind, len(header), settings) is not None:
        return {}, []
    unknown = _UnknownColumns(kind, mapping, declared)
    found: dict[str, str | None] = {}
    combined = _combined_columns(mapping)
    for column in header:
        if long_name_problem(column) is not None:
            continue
        if column in mapping.columns or column in combined:
            continue
        if named_field(kind, column, declared) is not None:
            continue
        found[column] = unknown.problem(column)
    return found, unknown.left_unnamed()


def missing_columns(kind: ImportKind, plan: ColumnPlan, settings: Settings) -> list[str]:
    """The problems of the required columns ``plan`` (compiled ``required=False``) lacks."""
    mapping = settings.imports.mappings.get(kind, ImportMapping())
    return _missing(kind, {target.field for target in plan.targets}, mapping)


def unknown_keys(kind: ImportKind, keys: Sequence[str], settings: Settings) -> dict[str, str]:
    """JSONL keys that are no field, mapped column or declared attribute, each with what to do.

    A key first seen after a file's first line rejects the lines holding it, at their line,
    rather than the file at line 1 (docs/import.md).
    """
    mapping = settings.imports.mappings.get(kind, ImportMapping())
    declared: Mapping[str, AttributeType] = (
        getattr(settings.attributes, kind) if kind in GROUPS else {}
    )
    found: dict[str, str] = {}
    if too_many_columns(kind, len(keys), settings) is not None:
        return found  # compile_plan refuses the file by its count, at once
    combined = _combined_columns(mapping)
    for key in keys:
        too_long = long_name_problem(key, "a key")
        if too_long is not None:  # the reader refuses such a key first; never suggested for
            found[key] = too_long
            continue
        if key in mapping.columns or key in combined:
            continue
        if named_field(kind, key, declared) is not None:
            continue
        reason = _unknown_column(kind, key, mapping, declared)
        found[key] = "not a field of " + kind + reason.removeprefix(f"unknown column {key!r}")
    return found


def _fields_of(
    kind: ImportKind,
    column: str,
    mapping: ImportMapping,
    declared: Mapping[str, AttributeType],
    problems: list[str],
    unknown: _UnknownColumns,
) -> list[str]:
    mapped = mapping.columns.get(column)
    if mapped is None:
        named = named_field(kind, column, declared)
        if named is not None:
            return [named]
        if column in _combined_columns(mapping):
            return []  # read by the join only
        problem = unknown.problem(column)
        if problem is not None:
            problems.append(problem)
        return []
    wanted = [mapped] if isinstance(mapped, str) else list(mapped)
    found = []
    for field in wanted:
        if field == SKIP:
            continue
        problem = _check_field(kind, field, declared, f"import.mappings.{kind}.columns.{column}")
        if problem:
            problems.append(problem)
        else:
            found.append(field)
    return found


def named_field(kind: ImportKind, column: str, declared: Mapping[str, AttributeType]) -> str | None:
    """The field an unmapped column names, as written or written out (:func:`field_name`): one
    of the kind's fields, or ``attributes.NAME`` of a declared attribute; None for neither.

    A column may also name its target as a mapping would (docs/import.md's field table):
    ``attributes.NAME`` of a declared attribute, an activity's ``properties.KEY``.
    """
    group, dot, name = column.partition(".")
    if dot and name:
        if group == GROUPS.get(kind) and name in declared:
            return column
        if kind == "activities" and group == "properties":
            return column
    for name in (column, field_name(column)):
        if name in KIND_FIELDS[kind]:
            return name
        if name in declared:
            return f"attributes.{name}"
    return None


def field_name(column: str) -> str:
    """A header written as our names are: words in lower case joined by ``_``, a capital inside
    a word starting a new one (``Total Time Spent on Website`` -> ``total_time_spent_on_website``,
    ``TotalVisits`` -> ``total_visits``, ``Lead-Source`` -> ``lead_source``)."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", column.strip())
    return "_".join(re.findall(r"[A-Za-z0-9]+", words)).lower()


def _unstorable_renames(kind: ImportKind, mapping: ImportMapping) -> list[str]:
    """Renamed values come from config.yaml, not the file: checked here once, not per row."""
    found = []
    for field, renames in mapping.values.items():
        for value in renames.values():
            problem = json_values.text_problem(value)
            if problem is not None:
                found.append(f"import.mappings.{kind}.values.{field}: {value!r}: {problem}")
    return found


def _unknown_column(
    kind: ImportKind, column: str, mapping: ImportMapping, declared: Mapping[str, AttributeType]
) -> str:
    if column == GROUPS.get(kind):
        # A JSONL object nesting the attributes ({"attributes": {"region": ...}}): the first
        # line's key was refused with the generic advice to declare 'attributes' itself.
        example = next(iter(declared), "industry")
        return (
            f"unknown column {column!r}: write each attribute as a key (or column) of its own, "
            f'named as declared under attributes.{kind} ("{example}" or "attributes.{example}"), '
            "not inside an object"
        )
    named = {name: name for name in KIND_FIELDS[kind]} | {
        name: f"attributes.{name}" for name in declared
    }
    hint = nested_field_hint(column, named, kind)
    if hint is not None:
        return hint
    group, dot, name = column.partition(".")
    if dot and name and group == GROUPS.get(kind):
        # The column already names an attribute: only declaring it (by the bare name) is left.
        return (
            f"unknown column {column!r}: {name} is not declared; add {name} with its type "
            f"(string, integer, number, boolean, datetime, date) under attributes.{kind}, "
            f"or map the column to skip under import.mappings.{kind}.columns"
        )
    known = [*KIND_FIELDS[kind], *declared, *mapping.columns]
    hint = did_you_mean(column, known, n=3, prefix="; ", ignore_case=True)
    where = f"import.mappings.{kind}.columns"
    also = f", declare it under attributes.{kind}" if kind in GROUPS else ""
    return f"unknown column {column!r}{hint} (map it under {where}{also}, or map it to skip)"


def _check_field(
    kind: ImportKind,
    field: str,
    declared: Mapping[str, AttributeType],
    setting: str,
) -> str | None:
    """Why ``field`` (mapped at ``setting``) is no field of ``kind``, or None."""
    group, _, name = field.partition(".")
    if name and group == GROUPS.get(kind):
        if name in declared:
            return None
        return (
            f"{setting}: {field} is not declared; add {name} with its type "
            f"(string, integer, number, boolean, datetime, date) under attributes.{kind}"
        )
    if name and kind == "activities" and group == "properties":
        return None
    if field in KIND_FIELDS[kind]:
        return None
    hint = did_you_mean(field, KIND_FIELDS[kind], suffix=" ")
    choices = ", ".join(KIND_FIELDS[kind])
    return f"{setting}: unknown field {field!r}; {hint}{kind} fields are: {choices}"


def _missing(kind: ImportKind, present: Any, mapping: ImportMapping) -> list[str]:
    problems = []
    for options in REQUIRED[kind]:
        if not any(option in present for option in options):
            names = " or ".join(options)
            problems.append(
                f"missing required column {names} (or map a column to it under "
                f"import.mappings.{kind}.columns)"
            )
    if kind == "reps" and "email" not in present and mapping.email_pattern is None:
        problems.append(
            "missing required column email (or set import.mappings.reps.email_pattern, "
            "e.g. '{first}.{last}@example.com')"
        )
    return problems


def _target(
    kind: ImportKind,
    *,
    field: str,
    index: int,
    fields: Mapping[str, str],
    declared: Mapping[str, AttributeType],
    mapping: ImportMapping,
) -> Target:
    value_map = folded_values(mapping.values.get(field, {}))
    group, _, name = field.partition(".")
    if not name:
        # The key is text in any file or body: a JSON number is not read as its digits.
        if field == "external_id":
            parse: values.Parser = values.parse_identifier
        elif field in REFERENCES:
            parse = values.parse_reference
        else:
            parse = field_parser(fields[field], mapping, kind)
        return Target(field, index, parse, value_map)
    parse = (
        attribute_parser(declared[name], mapping, kind)
        if group == "attributes"
        else values.scalar_text
    )
    if value_map:
        parse = renaming(parse, value_map)
    return Target(field, index, parse, {}, group, name)
