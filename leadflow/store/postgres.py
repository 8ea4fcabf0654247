"""The psycopg connection class of PostgreSQL stores, apart so that SQLite stores never load
psycopg (``database.create_store_engine`` imports it for a PostgreSQL URL only)."""

from __future__ import annotations

from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen

RV = TypeVar("RV")


class BoundedConnection(psycopg.Connection[Any]):
    """A psycopg connection that waits at most ``reply_timeout`` seconds for any one reply.

    A server that stops answering while the connection stays open (a hung host, a frozen
    proxy, a network that drops packets but still acknowledges them) is never noticed by a
    server-side ``statement_timeout`` and not always by TCP. This bound is the last resort:
    the waiting call raises :class:`psycopg.OperationalError` and the connection is closed,
    so the pool never hands it out again. ``None`` waits as long as it takes (migrations).
    """

    reply_timeout: float | None = None

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        bound = timeout if timeout is not None else self.reply_timeout
        try:
            return super().wait(gen, interval=interval, timeout=bound)
        except psycopg.errors._WaitTimeout:
            if timeout is not None:
                raise
            self.close()  # half a conversation: the connection cannot be used again
            msg = f"the database did not answer within {bound:g} s; connection closed"
            raise psycopg.OperationalError(msg) from None
