"""How the cells of each field type are read: a kind's field (``integer``, ``datetime``,
``outcome``, a JSON ``object``), a declared attribute (times as ISO text), and values renamed
by ``import.mappings.KIND.values``. :func:`~leadflow.ingest.mapping.compile_plan` picks one per
column; the :class:`~leadflow.ingest.column_plan.ColumnPlan` calls it per cell.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from leadflow.ingest import date_cells, json_values, number_cells, values
from leadflow.ingest.names import quoted
from leadflow.settings import AttributeType, ImportKind, ImportMapping

ATTRIBUTE_TEXT_LENGTH = 2_000
"""The most characters a ``string`` attribute's value may have, in a file and in a posted record
alike (names and companies hold 300, external ids 200): longer is refused, naming the field,
rather than stored in every read of the lead's attributes."""

OUTCOMES = frozenset({"won", "lost"})
DEFAULT_OUTCOMES = {"won": "won", "closed won": "won", "lost": "lost", "closed lost": "lost"}


def renaming(parse: values.Parser, value_map: Mapping[str, str]) -> values.Parser:
    def renamed(raw: object) -> object:
        if isinstance(raw, str):
            raw = value_map.get(raw.strip().casefold(), raw)
        return parse(raw)

    return renamed


def stage_outcomes(mapping: ImportMapping) -> dict[str, str]:
    """A deal's stage (stripped, case folded) -> its outcome: ``Won``, ``Closed Lost`` and what
    ``values.outcome`` adds."""
    return DEFAULT_OUTCOMES | folded_values(mapping.values.get("outcome", {}))


def folded_values(value_map: Mapping[str, str]) -> dict[str, str]:
    """A ``values`` mapping keyed as cells are looked up: stripped and case folded."""
    return {key.strip().casefold(): value for key, value in value_map.items()}


def field_parser(type_name: str, mapping: ImportMapping, kind: ImportKind) -> values.Parser:
    simple: dict[str, values.Parser] = {
        "text": values.parse_text,
        "email": values.email_address,
        "lead_email": values.lead_email,
        "timezone": values.timezone_name,
        "list": values.text_list,
        "object": parse_object,
        "outcome": _parse_outcome,
    }
    if type_name in simple:
        return simple[type_name]
    if type_name == "number":
        return number_cells.number_parser(mapping.decimal_separator)
    if type_name == "integer":
        return number_cells.integer_parser(mapping.decimal_separator)
    if type_name == "boolean":
        return values.boolean_parser(mapping.true_values, mapping.false_values)
    return date_cells.datetime_parser(mapping.date_formats, mapping.timezone, _date_formats(kind))


def _date_formats(kind: ImportKind) -> str:
    """The setting a date that does not read is to be configured under."""
    return f"import.mappings.{kind}.date_formats"


def attribute_parser(
    type_name: AttributeType, mapping: ImportMapping, kind: ImportKind
) -> values.Parser:
    """Attributes live in a JSON column: times become ISO 8601 text (UTC), dates too."""
    if type_name == "string":
        return _attribute_text
    if type_name == "datetime":
        read_time = date_cells.datetime_from_text(
            mapping.date_formats, mapping.timezone, _date_formats(kind)
        )
        return date_cells.cached_text_parser(lambda text: read_time(text).isoformat())
    if type_name == "date":
        read_date = date_cells.datetime_from_text(mapping.date_formats, "UTC", _date_formats(kind))
        return date_cells.cached_text_parser(lambda text: read_date(text).date().isoformat())
    if type_name == "integer":
        # Rules compare integer attributes as 64-bit integers; a larger one would be stored
        # but could never be compared (and on PostgreSQL would fail the rule's query).
        return number_cells.within(
            *number_cells.INTEGER_RANGE, number_cells.integer_parser(mapping.decimal_separator)
        )
    return field_parser(type_name, mapping, kind)


def _attribute_text(raw: object) -> str | None:
    """A ``string`` attribute's text, as :func:`~leadflow.ingest.values.parse_text` reads it,
    of at most :data:`ATTRIBUTE_TEXT_LENGTH` characters."""
    text = values.parse_text(raw)
    reason = None if text is None else values.longer_than(ATTRIBUTE_TEXT_LENGTH, text)
    if reason is not None:
        raise ValueError(reason)
    return text


def _parse_outcome(raw: object) -> str | None:
    text = values.parse_text(raw)
    if text is None:
        return None
    if text.casefold() in OUTCOMES:
        return text.casefold()
    msg = (
        f"expected won, lost or empty (open), got {quoted(text)}; "
        "map it under import.mappings.deals.values.outcome"
    )
    raise ValueError(msg)


def derived_outcome(raw: object) -> str | None:
    # The stage's own parser names a stage that is not text; its outcome is just none.
    text = raw.strip() if isinstance(raw, str) else None
    return text if text in OUTCOMES else None


def parse_object(raw: object) -> dict[str, Any] | None:
    if isinstance(raw, dict):
        return raw
    if raw is not None and not isinstance(raw, str):
        msg = f'expected a JSON object such as {{"page": "/pricing"}}, got {json_values.json_shown(raw)}'
        raise ValueError(msg)
    text = values.parse_text(raw)
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested beyond what Python reads
        parsed = None
    if not isinstance(parsed, dict):
        msg = f'expected a JSON object such as {{"page": "/pricing"}}, got {text[:40]!r}'
        raise ValueError(msg)  # noqa: TRY004 (a JSON value of the wrong type is a bad cell)
    return parsed
