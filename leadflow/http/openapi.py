"""The OpenAPI description of the posted records, built from the same tables the import uses.

The properties of each kind are its import fields (``KIND_FIELDS``), its declared attributes and
the names ``import.mappings.KIND.columns`` maps; nothing else is accepted. The server reads the
values with the import's parsers, which also take the spellings a CRM export uses (``yes`` for
true, day-first dates when configured), so the types here describe the JSON form.
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


def record_schema(kind: ImportKind, settings: Settings) -> dict[str, Any]:
    """The JSON schema of one posted record of ``kind``."""
    mapping = settings.imports.mappings.get(kind, ImportMapping())
    properties: dict[str, Any] = {
        field: dict(_FIELD_SCHEMAS[type_name]) for field, type_name in KIND_FIELDS[kind].items()
    }
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
        schema["required"] = [options[0] for options in REQUIRED[kind] if len(options) == 1]
    return schema


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
