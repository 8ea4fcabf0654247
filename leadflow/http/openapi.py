"""The OpenAPI description of the posted records, built from the same tables the import uses.

The properties of each kind are its import fields (``KIND_FIELDS``), its declared attributes and
the names ``import.mappings.KIND.columns`` maps; nothing else is accepted. The server reads the
values with the import's parsers, which also take the spellings a CRM export uses (``yes`` for
true, day-first dates when configured), so the types here describe the JSON form.

The server holds posted records to the JSON types documented here (:func:`type_errors`, run
before the import's parsers), so the document and the server agree: a CSV cell is always text,
but a JSON ``"external_id": 0`` is a number, and was taken as ``"0"`` while the document said
text. ``external_id`` is a non-empty string when present, never ``null``.

An ``attributes`` or ``properties`` object is described as the server reads it, flattened to
its ``NEST.KEY`` columns (:mod:`leadflow.ingest.nesting`): an object of one-level keys, each a
declared attribute or a mapped ``NEST.KEY`` column. Two keys setting one field (``region`` and
``{"attributes": {"region": ...}}``, a mapped ``id`` and ``external_id``) are refused by the
server, in one record or across a list's records, and the document says so in one ``not``.

The answers no route declares and the public routes of tracked email are described in
:mod:`leadflow.http.openapi_public`.
"""

from __future__ import annotations

from typing import Any

from leadflow.ingest.field_parsers import ATTRIBUTE_TEXT_LENGTH
from leadflow.ingest.mapping import GROUPS, KIND_FIELDS, REQUIRED, SKIP, named_field
from leadflow.ingest.nesting import nested_objects
from leadflow.settings import ImportKind, ImportMapping, Settings

_NULLABLE_TEXT: dict[str, Any] = {"type": ["string", "null"]}
_FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "text": _NULLABLE_TEXT,
    "email": {**_NULLABLE_TEXT, "description": "one plain address, e.g. ann@example.com"},
    "lead_email": {
        **_NULLABLE_TEXT,
        "description": "one plain address, e.g. ann@example.com; text without an @ means none",
    },
    "timezone": {**_NULLABLE_TEXT, "description": "an IANA name such as Europe/Berlin"},
    "integer": {"type": ["integer", "string", "null"]},
    "number": {"type": ["number", "string", "null"]},
    "boolean": {"type": ["boolean", "string", "null"]},
    "datetime": {**_NULLABLE_TEXT, "description": "ISO 8601, e.g. 2026-03-02T09:00:00Z"},
    "list": {"type": ["array", "string", "null"], "items": {"type": "string"}},
    "object": {"type": ["object", "null"]},
    "outcome": {**_NULLABLE_TEXT, "description": "won, lost, or null while open"},
}
_ATTRIBUTE_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {**_NULLABLE_TEXT, "maxLength": ATTRIBUTE_TEXT_LENGTH},
    "integer": _FIELD_SCHEMAS["integer"],
    "number": _FIELD_SCHEMAS["number"],
    "boolean": _FIELD_SCHEMAS["boolean"],
    "datetime": _FIELD_SCHEMAS["datetime"],
    "date": {**_NULLABLE_TEXT, "description": "a date, e.g. 2026-03-02"},
}


_CONTROL = (
    r"\u0000-\u001f\u007f-\u009f\u2028\u2029"
    r"\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
)
_BLANKS = r"[\s\u001c-\u001f\u0085]"
"""What ``str.strip`` takes off: the white space of JSON Schema's (ECMA 262) patterns, and
the separators Python also counts as blanks."""
_ID_TEXT = rf"[^{_CONTROL}]"
_ID_CHAR = rf"[^\s{_CONTROL}]"
_NOT_BLANK = r"\S"
"""A required text: blank text is read as an empty cell, which is missing."""
_EXTERNAL_ID: dict[str, Any] = {
    "type": "string",
    # Not blank, and one line: no control character (C0, DEL, C1), line or paragraph separator
    # nor invisible format character (a right-to-left override, a zero-width space: see
    # leadflow.ingest.json_values.identifier_problem) once the blanks around it, which
    # the server strips as Python does, are gone.
    "pattern": rf"^{_BLANKS}*{_ID_CHAR}(?:{_ID_TEXT}*{_ID_CHAR})?{_BLANKS}*$",
    "description": "the record's id in the CRM: one line of text with at least one "
    "non-space character, without tabs, other control characters or invisible format "
    "characters (direction marks and overrides, zero-width characters)",
}
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def record_schema(kind: ImportKind, settings: Settings) -> dict[str, Any]:
    """The JSON schema of one posted record of ``kind``."""
    mapping = settings.imports.mappings.get(kind, ImportMapping())
    properties: dict[str, Any] = {
        field: dict(_FIELD_SCHEMAS[type_name]) for field, type_name in KIND_FIELDS[kind].items()
    }
    properties["external_id"] = dict(_EXTERNAL_ID)
    if kind in GROUPS:
        declared: dict[str, str] = getattr(settings.attributes, kind)
        for name, type_name in declared.items():
            properties.setdefault(
                name, {**_ATTRIBUTE_SCHEMAS[type_name], "description": f"attribute ({type_name})"}
            )
    for column, target in mapping.columns.items():
        described = {"description": f"mapped to {target} by import.mappings.{kind}"}
        # A mapped key is held to its field's type, as the field's own key is: a HubSpot
        # ``id`` mapped to external_id is text, never a number.
        properties[column] = {**_target_schema(kind, target, settings), **described}
    for field, columns in mapping.combine.items():
        for column in columns:
            # A column mapped (or named as a field) keeps its own schema: it fills that too.
            properties.setdefault(
                column,
                {
                    "type": ["string", "null"],
                    "description": f"joined into {field} by import.mappings.{kind}.combine",
                },
            )
    for nest in nested_objects(KIND_FIELDS[kind], mapping.columns):
        properties[nest] = _nest_schema(kind, nest, settings)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if not mapping.columns:
        _add_required(kind, mapping, schema)
    twice = [{"allOf": [_has(a), _has(b)]} for a, b in _one_field_twice(kind, schema, settings)]
    if twice:
        # One `not` of the pairs, not a `not` each: schemathesis models this one (a dozen
        # separate ones, as a HubSpot mapping makes, it gives up on).
        schema["not"] = {"anyOf": twice}
    return schema


def _target_schema(
    kind: ImportKind, target: str | tuple[str, ...], settings: Settings
) -> dict[str, Any]:
    """The schema of the field a mapped column sets (none, any JSON value, for a column
    mapped to several fields, to skip or to a ``properties.KEY``)."""
    if not isinstance(target, str) or target == SKIP:
        return {}
    if target == "external_id":
        return dict(_EXTERNAL_ID)
    fields = KIND_FIELDS[kind]
    if target in fields:
        return dict(_FIELD_SCHEMAS[fields[target]])
    group, _dot, name = target.partition(".")
    declared: dict[str, str] = getattr(settings.attributes, kind) if kind in GROUPS else {}
    if group == GROUPS.get(kind) and name in declared:
        return dict(_ATTRIBUTE_SCHEMAS[declared[name]])
    return {}


_SCALAR: dict[str, Any] = {"type": ["string", "number", "boolean", "null"]}
"""A value inside a nest: one level only (an object or a list there is refused)."""


def _nest_schema(kind: ImportKind, nest: str, settings: Settings) -> dict[str, Any]:
    """A nest's object: its keys are the ``NEST.KEY`` columns the import reads."""
    mapping = settings.imports.mappings.get(kind, ImportMapping())
    inner: dict[str, Any] = {}
    if nest == GROUPS.get(kind):
        declared: dict[str, str] = getattr(settings.attributes, kind)
        for name, type_name in declared.items():
            inner[name] = {
                **_ATTRIBUTE_SCHEMAS[type_name],
                "description": f"attribute ({type_name})",
            }
    for column, target in mapping.columns.items():
        group, dot, name = column.partition(".")
        if dot and group == nest and name:
            # Typed as the field it sets, as the flat NEST.KEY is: the server holds a nested
            # key to its field's type (an email of 5 is refused), so the document must too.
            inner[name] = {
                **(_target_schema(kind, target, settings) or _SCALAR),
                "description": f"mapped to {target} by import.mappings.{kind}",
            }
    return {
        "type": ["object", "null"],
        "properties": inner,
        "additionalProperties": False,
        "description": f"each key is read as the column {nest}.KEY; null is none",
    }


Key = tuple[str, ...]
"""A documented key: ``("region",)``, or ``("attributes", "region")`` inside a nest."""


def _one_field_twice(
    kind: ImportKind, schema: dict[str, Any], settings: Settings
) -> list[tuple[Key, Key]]:
    """Pairs of documented keys that set one field: the server refuses a body holding both
    (``columns ... both set ...``), as a file with both columns is refused; and pairs that are
    one column, flat and nested (refused in one object, even when mapped to skip)."""
    mapping = settings.imports.mappings.get(kind, ImportMapping())
    declared = getattr(settings.attributes, kind) if kind in GROUPS else {}
    setting: dict[str, list[Key]] = {}
    columns: dict[str, list[Key]] = {}
    properties: dict[str, Any] = schema["properties"]
    keys: list[Key] = []
    for name, field_schema in properties.items():
        keys.append((name,))
        if name in nested_objects(KIND_FIELDS[kind], mapping.columns):
            keys += [(name, inner) for inner in field_schema["properties"]]
    for key in keys:
        column = ".".join(key)
        columns.setdefault(column, []).append(key)
        mapped = mapping.columns.get(column)
        if mapped is None:
            named = named_field(kind, column, declared)
            fields = [named] if named is not None else []
        else:
            fields = [mapped] if isinstance(mapped, str) else list(mapped)
        for field in fields:
            if field != SKIP:
                setting.setdefault(field, []).append(key)
    pairs = {
        (keys_of[first], other)
        for keys_of in [*setting.values(), *columns.values()]
        for first in range(len(keys_of))
        for other in keys_of[first + 1 :]
    }
    return sorted(pairs)


def _has(key: Key) -> dict[str, Any]:
    """Holds ``key``, with any value (a nest's key only inside an object, not null)."""
    if len(key) == 1:
        return {"required": [key[0]]}
    nest, inner = key
    return {
        "required": [nest],
        "properties": {nest: {"type": "object", "required": [inner]}},
    }


def _add_required(kind: ImportKind, mapping: ImportMapping, schema: dict[str, Any]) -> None:
    """The fields every record must carry, as the import requires them: present and not null
    (the import reads ``null`` as an empty cell, which is missing)."""
    required = [options[0] for options in REQUIRED[kind] if len(options) == 1]
    if kind == "reps" and mapping.email_pattern is None:
        required.append("email")
    properties = schema["properties"]
    for field in required:
        properties[field] = _not_null(properties[field])
    schema["required"] = required
    either = [options for options in REQUIRED[kind] if len(options) > 1]
    if either:
        schema["anyOf"] = [
            {"required": [field], "properties": {field: _not_null(properties[field])}}
            for field in either[0]
        ]


def _not_null(field_schema: dict[str, Any]) -> dict[str, Any]:
    """A required field's schema: not null, and text not blank (both read as missing; a
    ``"stage": ""`` was valid by the document and a 422 from the server)."""
    types = field_schema.get("type")
    if not isinstance(types, list):
        return field_schema
    kept = [name for name in types if name != "null"]
    found = {**field_schema, "type": kept[0] if len(kept) == 1 else kept}
    if "string" in kept:
        found.setdefault("pattern", _NOT_BLANK)
    return found


def body_schema(kind: ImportKind, settings: Settings) -> dict[str, Any]:
    """One record, or a non-empty list of them; keys setting one field are refused across the
    list's records too (the server reads a body's keys as one file's header)."""
    record = record_schema(kind, settings)
    records: dict[str, Any] = {
        "type": "array",
        "items": record,
        "minItems": 1,
        "maxItems": settings.http.max_records,
    }
    twice = [
        {"allOf": [{"contains": _has(a)}, {"contains": _has(b)}]}
        for a, b in _one_field_twice(kind, record, settings)
        # One column flat in one record and nested in another is one column, as on two lines.
        if ".".join(a) != ".".join(b)
    ]
    if twice:
        records["not"] = {"anyOf": twice}
    return {"anyOf": [record, records]}


def request_body(kind: ImportKind, settings: Settings) -> dict[str, Any]:
    """The ``openapi_extra`` of a POST route: its documented JSON request body."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body_schema(kind, settings)}},
        }
    }


def type_errors(
    schema: dict[str, Any], record: dict[str, Any]
) -> list[tuple[tuple[str | int, ...], str]]:
    """``(place, message)`` for each value of ``record`` whose JSON type (or, for
    ``external_id`` or a key mapped to it, blank text) the record ``schema`` does not allow;
    ``place`` is ``(field,)``, or ``(field, index)`` for an item of a list."""
    errors: list[tuple[tuple[str | int, ...], str]] = []
    properties: dict[str, Any] = schema["properties"]
    for field, value in record.items():
        documented = properties.get(field)
        if documented is None and "." in field:  # a nest's key, flattened (NEST.KEY)
            nest, _dot, inner = field.partition(".")
            documented = properties.get(nest, {}).get("properties", {}).get(inner)
        found: dict[str, Any] = documented or {}
        allowed = found.get("type")
        if allowed is None:
            continue  # unknown (the import names it) or a mapped column (any JSON value)
        names = [allowed] if isinstance(allowed, str) else list(allowed)
        if not any(_is(value, name) for name in names):
            errors.append(((field,), f"expected {' or '.join(names)}, got {_json_name(value)}"))
        elif found.get("pattern") == _EXTERNAL_ID["pattern"] and not value.strip():
            errors.append(((field,), "expected text with at least one non-space character"))
        elif isinstance(value, list) and "items" in found:
            item_type = found["items"]["type"]
            errors += [
                ((field, index), f"expected {item_type}, got {_json_name(item)}")
                for index, item in enumerate(value)
                if not _is(item, item_type)
            ]
    return errors


def _is(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in {"integer", "number"}:
        return False  # JSON true is not a number, though Python's bool is an int
    if name == "number" and isinstance(value, float):
        return True
    return isinstance(value, _JSON_TYPES[name])


def _json_name(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is(value, name):
            return name
    return type(value).__name__
