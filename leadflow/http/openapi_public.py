"""The OpenAPI description of what the routes' own declarations do not say.

The answers the application gives around its routes (408 and 413 from
:class:`~leadflow.http.body_limit.BodyLimit`, 503 from the store's exception handlers and from
:class:`~leadflow.http.cancelled.AnswerCancelled`), for the routes they reach; and the public
routes of tracked email (:func:`public_paths`), written by hand: their answers are pages, a GIF
and redirects, which FastAPI would describe as JSON, with a 422 they never give; also when the
store does not answer or the server stops (JSON only for a mail client's one-click ``POST``).
An integrator or a security review reads the whole surface the server exposes without a token
in one document; only the dashboard (``/ui/``, behind its own login) is left out.
"""

from __future__ import annotations

from typing import Any

from leadflow.mail.context import OWN_UNSUBSCRIBE_PATH
from leadflow.mail.tracking_tokens import CODES, MAX_TOKEN_LENGTH

Responses = dict[int | str, dict[str, Any]]
"""An operation's answers by status code, as FastAPI's ``responses`` takes them."""

ERROR_BODY: dict[str, Any] = {"content": {"application/json": {"schema": {"type": "object"}}}}
"""``{"detail": ...}``, as every refusal of the API is written."""
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before sending the request again",
        "required": True,
        "schema": {"type": "string"},
    }
}
_STOPPING = (
    'the server is stopping and the request was still running when its grace ran out: {"detail": '
    '"the server is stopping; retry later"}'
)
UNAVAILABLE: Responses = {
    503: {
        "description": "the database does not answer (down, or every pooled connection busy "
        'for the whole wait): {"detail": "the database is unavailable; retry later"}; a table '
        "the request needs stayed locked by another session for http.lock_timeout: "
        '{"detail": "the database is locked by another session; retry later"}; '
        f"or {_STOPPING}",
        **ERROR_BODY,
        "headers": _RETRY_AFTER,
    }
}
"""The 503s of a route that reads or writes the store."""
BODY_REFUSED: Responses = {
    408: {
        "description": "the whole body did not arrive within http.body_timeout of the headers; "
        "the connection is closed",
        **ERROR_BODY,
    },
    413: {"description": "body larger than http.max_body_bytes", **ERROR_BODY},
}
"""What any request with a body may get before a route reads it."""

_NO_STORE = {
    "Cache-Control": {
        "description": "no-store, private: no cache answers in leadflow's place",
        "required": True,
        "schema": {"type": "string"},
    }
}
_PAGE: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}
_REDIRECT_TO = {
    "Location": {"description": "the URL", "required": True, "schema": {"type": "string"}},
    **_NO_STORE,
}
_TOKEN = {
    "name": "token",
    "in": "path",
    "required": True,
    "description": "the signed token of the link in the email (PAYLOAD.SIGNATURE, base64url)",
    "schema": {
        "type": "string",
        "pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
        "maxLength": MAX_TOKEN_LENGTH,
    },
}
_UNKNOWN_LINK: Responses = {
    404: {
        "description": "a token leadflow did not sign: a page saying so; nothing is recorded",
        "content": _PAGE,
        "headers": _NO_STORE,
    }
}
_ONE_CLICK_BODY = {
    "required": False,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}},
            }
        }
    },
}


def _operations(
    name: str,
    summary: str,
    responses: Responses,
    *,
    methods: tuple[str, ...] = ("get", "head"),
    **extra: Any,
) -> dict[str, Any]:
    """The operations ``methods`` of a public route, answered alike."""
    return {
        method: {
            "tags": ["tracked email"],
            "summary": summary,
            "operationId": f"{name}_{method}",
            "responses": {str(status): answer for status, answer in responses.items()},
            **extra,
        }
        for method in methods
    }


def _unsubscribe(
    name: str, parameters: list[dict[str, Any]], *, to_crm: bool = False
) -> dict[str, Any]:
    """An unsubscribe link's operations: ``GET`` looks (or, ``to_crm``, may redirect to
    ``mail.unsubscribe_url``), ``POST`` unsubscribes."""
    page = {"content": _PAGE, "headers": _NO_STORE}
    unrecorded = (
        "the database does not answer (down, locked, every pooled connection busy), or the "
        "server is stopping while it waits for it: a page saying the unsubscribe could not be "
        "recorded and to try again in a few minutes"
    )
    retry = {**_RETRY_AFTER, **_NO_STORE}
    looking: Responses = {
        200: {"description": "the page with the button (or: already unsubscribed)", **page},
        **_UNKNOWN_LINK,
        503: {"description": unrecorded, "content": _PAGE, "headers": retry},
    }
    if to_crm:
        looking[302] = {
            "description": "to mail.unsubscribe_url, the CRM's page, when it is set",
            "headers": _REDIRECT_TO,
        }
    posting: Responses = {
        200: {"description": "unsubscribed (or already): a page saying so", **page},
        404: {
            "description": f"{_UNKNOWN_LINK[404]['description']}; JSON unless the request "
            "accepts text/html (a mail client's one-click POST)",
            "content": {**_PAGE, **ERROR_BODY["content"]},
        },
        **BODY_REFUSED,
        503: {
            "description": f"{unrecorded}; JSON unless the request accepts text/html (a mail "
            'client\'s one-click POST): {"detail": "the database is unavailable; retry later"}',
            "content": {**_PAGE, **ERROR_BODY["content"]},
            "headers": retry,
        },
    }
    return {
        **_operations(name, "The unsubscribe page", looking, parameters=parameters),
        **_operations(
            name,
            "Unsubscribe the lead (the page's button, or RFC 8058 one-click)",
            posting,
            methods=("post",),
            parameters=parameters,
            requestBody=_ONE_CLICK_BODY,
        ),
    }


def public_paths() -> dict[str, Any]:
    """The OpenAPI paths of tracked email's public routes (:mod:`leadflow.http.tracking`,
    :mod:`leadflow.http.unsubscribe`): no token, every answer as the server gives it."""
    query = [
        {
            "name": name,
            "in": "query",
            "required": True,
            "description": description,
            "schema": {"type": "string"},
        }
        for name, description in (
            ("lead", "the lead's external id"),
            ("token", "the lead's unsubscribe token from the email"),
        )
    ]
    pixel: Responses = {
        200: {
            "description": "a transparent 1x1 GIF, whatever the token: who loads it learns "
            "nothing of which tokens are valid",
            "content": {"image/gif": {"schema": {"type": "string", "format": "binary"}}},
            "headers": _NO_STORE,
        },
    }
    click: Responses = {
        302: {
            "description": "to the URL signed into the token, also while the database does "
            "not answer (the hit is not recorded then)",
            "headers": _REDIRECT_TO,
        },
        **_UNKNOWN_LINK,
    }
    return {
        f"/t/{CODES['open']}/{{token}}.gif": _operations(
            "tracking_open", "The open pixel", pixel, parameters=[_TOKEN]
        ),
        f"/t/{CODES['click']}/{{token}}": _operations(
            "tracking_click", "A tracked link: redirects to its URL", click, parameters=[_TOKEN]
        ),
        f"/t/{CODES['unsubscribe']}/{{token}}": _unsubscribe(
            "tracking_unsubscribe", [_TOKEN], to_crm=True
        ),
        OWN_UNSUBSCRIBE_PATH: _unsubscribe("unsubscribe", query),
    }
