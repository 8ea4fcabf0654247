"""Serving the application with uvicorn inside the daemon's event loop until a stop event.

The daemon owns the signals: uvicorn's own handlers are left out (they would replace the
daemon's SIGTERM handler and re-raise the signal after shutdown). The socket is bound here, so
``http.port: 0`` works and the port actually bound is logged.

A connection must send each request's headers whole within ``http.header_timeout`` of opening
(or of the previous answer on a kept-alive connection), else it is closed: uvicorn has no such
deadline (its keep-alive timeout stops at the first byte), so a client sending a header line now
and then would hold its connection, and a file descriptor, for ever (slow loris), on a server
whose ``/t/`` links face the internet. The deadline is on the headers only: the body has
``http.body_timeout`` of its own (:class:`~leadflow.http.body_limit.BodyLimit`), and a request's
answer is never cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import Iterator

import structlog
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from leadflow.errors import ConfigError
from leadflow.http.cancelled import AnswerCancelled
from leadflow.settings import HttpSettings

log = structlog.get_logger("leadflow.http")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _header_deadline(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete
    ``seconds`` after it opened or after its previous answer."""

    class HeaderDeadline(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            self._arm()  # before a pipelined request the base class may start at once
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            # A request whose headers are complete has a cycle of its own: checked when due.
            self._deadline = self.loop.call_later(seconds, self._expired, self.cycle)

        def _expired(self, cycle: object) -> None:
            self._deadline = None
            if self.cycle is cycle and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline


def request_grace(grace_s: float) -> int:
    """How long open requests may run on after a stop, in whole seconds (uvicorn's unit): the
    daemon's grace less a second, so the server has answered them and returned within the
    grace (at least one second)."""
    return max(1, math.floor(grace_s - 1.0))


def bind(settings: HttpSettings) -> socket.socket:
    """A listening socket on ``http.host``:``http.port``; ConfigError when it is taken."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        msg = (
            f"http: cannot listen on {settings.host}:{settings.port}: {exc.strerror}; set http.port"
        )
        raise ConfigError(msg) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(
    app: ASGIApp,
    sock: socket.socket,
    stop: asyncio.Event,
    *,
    grace_s: float = 5.0,
    header_timeout_s: float,
) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set, then let open requests finish for at
    most :func:`request_grace` of ``grace_s`` (the daemon's ``scheduler.shutdown_grace``) and
    return; a request still running then is answered 503 (:class:`AnswerCancelled`). A
    connection not sending a request's whole headers within ``header_timeout_s``
    (``http.header_timeout``) is closed."""
    config = uvicorn.Config(
        AnswerCancelled(app),
        http=_header_deadline(header_timeout_s),
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=request_grace(grace_s),
        server_header=False,
    )
    server = _Server(config)
    host, port = sock.getsockname()[:2]
    log.info("http_listening", host=host, port=port)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="http-serve")
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        stopped.cancel()
        await task  # raises what stopped the server
        return
    server.should_exit = True
    await task
    log.info("http_stopped")
