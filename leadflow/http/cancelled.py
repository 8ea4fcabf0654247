"""A request still running when the server's graceful shutdown runs out: answered, not a 500.

uvicorn cancels the requests left when its ``timeout_graceful_shutdown`` ends. The cancel
reached the application as ``CancelledError``; uvicorn logged it as ``Exception in ASGI
application`` with a traceback and answered 500, as if leadflow had a bug. Here the cancel is the
one log line ``http_request_cancelled`` naming the request, and the client gets 503 (retry
later: a posted body is upserted by external id, so sending it again is safe), or, when the
response had already begun, its connection is closed. A route a person reaches from an email
leaves its own answer for that case first (:func:`answer_if_cancelled`): a tracked link's
redirect, the open pixel, the unsubscribe page's 503 page; never the API's JSON.

A client that goes away before it has sent the whole body it announced (a dropped mobile
connection, a CRM webhook sender timing out, a mail client's one-click ``POST`` cut short) is its
own doing, not leadflow's: the request ends where it was, nothing is written, and the log has the
one line ``http_client_disconnected`` naming the path, instead of uvicorn's ``Exception in ASGI
application`` and Starlette's ``ClientDisconnect`` traceback at level error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("leadflow.http")

STOPPING_BODY = json.dumps({"detail": "the server is stopping; retry later"}).encode()
_IF_CANCELLED = "leadflow.answer_if_cancelled"
"""The scope's key for the answer a route left for the case the server cancels it."""


def answer_if_cancelled(request: Request, response: Response) -> None:
    """Have ``response`` sent, instead of the JSON 503, if the server cancels this request
    before it has answered (its graceful shutdown running out while the store is slow)."""
    request.scope[_IF_CANCELLED] = response


class AnswerCancelled:
    """ASGI middleware: a request cancelled by the server is logged once and answered 503; one
    whose client left before sending its whole body is logged once (there is no one to answer)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        began = time.monotonic()
        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError:
            # Only the server cancels a request task (its graceful shutdown ran out): the task
            # ends here, so the cancel is not raised on into uvicorn's traceback and 500.
            instead: Response | None = scope.get(_IF_CANCELLED)
            log.warning(
                "http_request_cancelled",
                method=scope["method"],
                path=scope["path"],
                running_s=round(time.monotonic() - began, 1),
                reason="the server's graceful shutdown ran out",
                answered=(instead.status_code if instead else 503)
                if not started
                else "connection closed",
            )
            if not started:
                await _answer_stopping(scope, receive, send, instead)
        except ClientDisconnect:
            log.info(
                "http_client_disconnected",
                method=scope["method"],
                path=route_path(scope),
                reason="the client closed the connection before sending the whole request body",
            )


def route_path(scope: Scope) -> str:
    """The path to log: the matched route's pattern (``/t/u/{token}``, never the token in it),
    else the path as requested."""
    route = scope.get("route")
    return str(getattr(route, "path", scope["path"]))


async def _answer_stopping(
    scope: Scope, receive: Receive, send: Send, instead: Response | None
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(STOPPING_BODY)).encode()),
        (b"connection", b"close"),
        (b"retry-after", b"5"),
    ]
    # The connection may be gone already; the answer is then nobody's to read.
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1):
            if instead is not None:
                instead.headers["connection"] = "close"
                await instead(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": STOPPING_BODY})
