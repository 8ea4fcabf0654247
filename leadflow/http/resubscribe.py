"""``POST /v1/leads/{external_id}/resubscribe``: undo a lead's opt-out over HTTP, with the reason.

The HTTP twin of ``leadflow resubscribe`` (a CRM's preference centre, a form where the person
asked to be mailed again): the same engine function in one transaction, so the lead and the
audit change as the command changes them, a ``resubscribed`` row with the reason, its source
``api`` where the command's is ``cli``. The body is ``{"reason": "..."}``: the reason is
required and not blank, and any other key is refused, as a record's unknown key is. A lead not
unsubscribed is answered 200 with ``resubscribed: false`` and nothing is written, as the command
says "nothing to do" and exits 0: a client that retries after a lost answer is not told that
its first request failed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from leadflow.engine.unsubscribe import REASON_NEEDED, resubscribe_lead, resubscribed_message
from leadflow.errors import FieldError, RecordsRejectedError
from leadflow.http.openapi import type_errors
from leadflow.ingest.json_values import TOO_DEEP, unstorable
from leadflow.store.database import transaction

_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {
            "type": "string",
            # Not blank: the server strips it, and an empty reason is no consent on record.
            "pattern": r"\S",
            "description": "why the lead may be mailed again: the person's consent, where and "
            "when they gave it; kept in the audit",
        }
    },
    "required": ["reason"],
    "additionalProperties": False,
}

REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _BODY_SCHEMA}},
    }
}
"""The route's ``openapi_extra``: its documented JSON request body."""


def reason_of(body: Any) -> str:
    """The stripped reason of a parsed body, or :class:`RecordsRejectedError` naming every bad
    field (at ``["body", KEY]``, as FastAPI locates its own)."""
    if not isinstance(body, dict):
        raise RecordsRejectedError([FieldError(("body",), "expected a JSON object", "dict_type")])
    errors = [
        FieldError(("body", *place), reason, "value_error" if reason == TOO_DEEP else "string_type")
        for place, reason in unstorable(body, numbers=False)
    ]
    if errors:
        raise RecordsRejectedError(errors)
    # The JSON types the OpenAPI document gives, held as a posted record's are.
    errors = [
        FieldError(("body", *place), message, "type_error")
        for place, message in type_errors(_BODY_SCHEMA, body)
    ]
    reason = body.get("reason")
    if "reason" not in body:
        errors.append(FieldError(("body", "reason"), f"missing; {REASON_NEEDED}", "missing"))
    elif isinstance(reason, str) and not reason.strip():
        message = f"empty; {REASON_NEEDED}"
        errors.append(FieldError(("body", "reason"), message, "string_too_short"))
    errors += [
        FieldError(("body", key), "unknown field; the body has one: reason", "extra_forbidden")
        for key in body
        if key != "reason"
    ]
    if errors:
        raise RecordsRejectedError(errors)
    assert isinstance(reason, str)
    return reason.strip()


def resubscribe(
    engine: Engine, external_id: str, reason: str, now: datetime
) -> dict[str, Any] | None:
    """Re-subscribe the lead in one transaction; the answer's body, None for no such lead."""
    with transaction(engine) as session:
        done = resubscribe_lead(session, external_id, now, reason, source="api")
    if done is None:
        return None
    return {
        "external_id": external_id,
        "resubscribed": done,
        "message": resubscribed_message(external_id, done),
    }
