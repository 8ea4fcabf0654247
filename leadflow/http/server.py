"""Serving the application with uvicorn inside the daemon's event loop until a stop event.

The daemon owns the signals: uvicorn's own handlers are left out (they would replace the
daemon's SIGTERM handler and re-raise the signal after shutdown). The socket is bound here, so
``http.port: 0`` works and the port actually bound is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import structlog
import uvicorn
from starlette.types import ASGIApp

from leadflow.errors import ConfigError
from leadflow.settings import HttpSettings

log = structlog.get_logger("leadflow.http")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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


async def serve(app: ASGIApp, sock: socket.socket, stop: asyncio.Event) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set, then finish open requests and return."""
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
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
