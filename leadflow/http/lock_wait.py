"""Every HTTP request waits ``http.lock_timeout`` at most, in all, for locks other sessions hold.

Without it a request waited as long as the store's own bounds: on PostgreSQL the 60 s
``database.statement_timeout`` behind a ``LOCK TABLE``, on SQLite the busy timeout once per
transaction, after its turn behind the daemon's own writers (19 s seen for one POST). A client
is better served by a prompt 503 with ``Retry-After`` (``leadflow.http.app``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from leadflow.store.lock_waits import lock_waits_within


class LockWaitBound:
    """ASGI middleware: the lock waits of each HTTP request, bounded to ``seconds`` in all."""

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with lock_waits_within(self.seconds):
            await self.app(scope, receive, send)
