"""Refusing oversized and late request bodies while they are read, before the application
sees them.

A declared ``Content-Length`` over the limit is answered 413 at once; a body without one (chunked)
is counted as it arrives and refused the moment it passes the limit, so a client cannot make
the server buffer more than ``max_body_bytes`` of it.

A body not all arrived ``http.body_timeout`` after the request's headers is answered 408 and
its connection closed; nothing of it is used. The deadline is on the whole body, not on the gap
between two pieces of it: a client sending a byte every few seconds never leaves a gap long
enough, and held a connection and a request (on the public one-click ``POST /t/unsubscribe``
too) for as long as it liked. The headers have their own deadline (:mod:`leadflow.http.server`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import structlog
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadflow.errors import BodyTimeoutError, BodyTooLargeError
from leadflow.http.cancelled import route_path

log = structlog.get_logger("leadflow.http")


class BodyLimit:
    """ASGI middleware: HTTP requests whose body exceeds ``max_bytes`` get 413, those whose body
    has not all arrived ``timeout_s`` after the headers 408."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        page: Callable[[Scope, int], Response | None] | None = None,
        *,
        timeout_s: float,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.page = page
        """A browser's page for the path (the dashboard's), else the API's JSON error."""
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        body = _Body(receive, self.max_bytes, self.timeout_s)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, body.receive, tracking_send)
        except BodyTooLargeError:
            if started:  # the application answered before reading it all; nothing to add
                return
            await self._refuse(scope, receive, send)
        except BodyTimeoutError:
            log.warning(
                "http_body_timeout",
                method=scope["method"],
                path=route_path(scope),
                client=scope["client"][0] if scope.get("client") else None,
                received_bytes=body.received,
                declared_bytes=declared,
                timeout_s=self.timeout_s,
            )
            if not started:
                await _late(send, self.timeout_s)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        page = self.page(scope, self.max_bytes) if self.page else None
        if page is not None:
            page.headers["connection"] = "close"
            await page(scope, receive, send)
            return
        detail = f"request body larger than {self.max_bytes} bytes (http.max_body_bytes)"
        await _refusal(send, 413, detail)


class _Body:
    """A request's ``receive``, counting the body's bytes and holding it to its deadline."""

    def __init__(self, receive: Receive, max_bytes: int, timeout_s: float) -> None:
        self._receive = receive
        self._max_bytes = max_bytes
        # The server calls the application as soon as a request's headers are complete.
        self._deadline = asyncio.get_running_loop().time() + timeout_s
        self.received = 0
        self._complete = False

    async def receive(self) -> Message:
        if self._complete:  # the body is in: what is awaited now is the client's going
            return await self._receive()
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            raise BodyTimeoutError from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self._max_bytes:
                raise BodyTooLargeError
            self._complete = not message.get("more_body", False)
        return message


async def _late(send: Send, timeout_s: float) -> None:
    """408, and the connection closed: the rest of the body, if it comes, is not read."""
    await _refusal(
        send, 408, f"request body not received within {timeout_s:g} s (http.body_timeout)"
    )


async def _refusal(send: Send, status: int, detail: str) -> None:
    """A JSON ``{"detail": ...}`` answer that closes the connection: the body not read whole
    leaves the connection unusable for another request."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
