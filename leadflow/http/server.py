"""Serving the application with uvicorn inside the daemon's event loop until a stop event.

The daemon owns the signals: uvicorn's own handlers are left out (they would replace the
daemon's SIGTERM handler and re-raise the signal after shutdown). The socket is bound here, so
``http.port: 0`` works and the port actually bound is logged.
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

from leadflow.errors import ConfigError
from leadflow.http.cancelled import AnswerCancelled
from leadflow.settings import HttpSettings

log = structlog.get_logger("leadflow.http")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
    app: ASGIApp, sock: socket.socket, stop: asyncio.Event, *, grace_s: float = 5.0
) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set, then let open requests finish for at
    most :func:`request_grace` of ``grace_s`` (the daemon's ``scheduler.shutdown_grace``) and
    return; a request still running then is answered 503 (:class:`AnswerCancelled`)."""
    config = uvicorn.Config(
        AnswerCancelled(app),
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
