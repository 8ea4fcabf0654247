"""The OpenAPI description of the posted records, built from the same tables the import uses.

The properties of each kind are its import fields (``KIND_FIELDS``), its declared attributes and
the names ``import.mappings.KIND.columns`` maps; nothing else is accepted. The server reads the
values with the import's parsers, which also take the spellings a CRM export uses (``yes`` for
true, day-first dates when configured), so the types here describe the JSON form.

The server holds posted records to the JSON types documented here (:func:`type_errors`, run
before the import's parsers), so the document and the server agree: a CSV cell is always text,
but a JSON ``"external_id": 0`` is a number, and was taken as ``"0"`` while the document said
text. ``external_id`` is a non-empty string when present, never ``null``.
"""

from __future__ import annotations

from typing import Any

from leadflow.ingest.mapping import GROUPS, KIND_FIELDS, REQUIRED
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
    "string": _NULLABLE_TEXT,
    "integer": _FIELD_SCHEMAS["integer"],
    "number": _FIELD_SCHEMAS["number"],
    "boolean": _FIELD_SCHEMAS["boolean"],
    "datetime": _FIELD_SCHEMAS["datetime"],
    "date": {**_NULLABLE_TEXT, "description": "a date, e.g. 2026-03-02"},
}


_CONTROL = r"\u0000-\u001f\u007f-\u009f\u2028\u2029"
_BLANKS = r"[\s\u001c-\u001f\u0085]"
"""What ``str.strip`` takes off: the white space of JSON Schema's (ECMA 262) patterns, and
the separators Python also counts as blanks."""
_ID_TEXT = rf"[^{_CONTROL}]"
_ID_CHAR = rf"[^\s{_CONTROL}]"
_NOT_BLANK = r"\S"
"""A required text: blank text is read as an empty cell, which is missing."""
_EXTERNAL_ID: dict[str, Any] = {
    "type": "string",
    # Not blank, and one line: no control character (C0, DEL, C1) nor line or paragraph
    # separator (leadflow.ingest.values.identifier_problem) once the blanks around it, which
    # the server strips as Python does, are gone.
    "pattern": rf"^{_BLANKS}*{_ID_CHAR}(?:{_ID_TEXT}*{_ID_CHAR})?{_BLANKS}*$",
    "description": "the record's id in the CRM: one line of text with at least one "
    "non-space character, without tabs or other control characters",
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
        properties[column] = {"description": f"mapped to {target} by import.mappings.{kind}"}
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if not mapping.columns:
        _add_required(kind, mapping, schema)
    return schema


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
    """One record, or a non-empty list of them."""
    record = record_schema(kind, settings)
    return {"anyOf": [record, {"type": "array", "items": record, "minItems": 1}]}


def request_body(kind: ImportKind, settings: Settings) -> dict[str, Any]:
    """The ``openapi_extra`` of a POST route: its documented JSON request body."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body_schema(kind, settings)}},
        }
    }


def type_errors(schema: dict[str, Any], record: dict[str, Any]) -> list[tuple[str, str]]:
    """``(field, message)`` for each value of ``record`` whose JSON type (or, for
    ``external_id``, blank text) the record ``schema`` does not allow."""
    errors = []
    properties: dict[str, Any] = schema["properties"]
    for field, value in record.items():
        allowed = properties.get(field, {}).get("type")
        if allowed is None:
            continue  # unknown (the import names it) or a mapped column (any JSON value)
        names = [allowed] if isinstance(allowed, str) else list(allowed)
        if not any(_is(value, name) for name in names):
            errors.append((field, f"expected {' or '.join(names)}, got {_json_name(value)}"))
        elif field == "external_id" and not value.strip():
            errors.append((field, "expected text with at least one non-space character"))
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
