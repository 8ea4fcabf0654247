"""Refusing oversized request bodies while they are read, before the application sees them.

A declared ``Content-Length`` over the limit is answered 413 at once; a body without one (chunked)
is counted as it arrives and refused the moment it passes the limit, so a client cannot make
the server buffer more than ``max_body_bytes`` of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadflow.errors import BodyTooLargeError


class BodyLimit:
    """ASGI middleware: HTTP requests whose body exceeds ``max_bytes`` get 413."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        page: Callable[[Scope, int], Response | None] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.page = page
        """A browser's page for the path (the dashboard's), else the API's JSON error."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLargeError:
            if started:  # the application answered before reading it all; nothing to add
                return
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        page = self.page(scope, self.max_bytes) if self.page else None
        if page is not None:
            page.headers["connection"] = "close"
            await page(scope, receive, send)
            return
        body = json.dumps(
            {"detail": f"request body larger than {self.max_bytes} bytes (http.max_body_bytes)"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
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
