"""A TCP proxy on 127.0.0.1 that a test can cut, pause and resume: faults without touching servers.

The shared PostgreSQL server and the machine's services are never stopped by a test. Instead a
daemon talks to its database or SMTP sink through a :class:`FaultProxy` of the test's own:

- :meth:`FaultProxy.cut` drops every open connection (both sides see the socket close) and
  refuses new ones until :meth:`FaultProxy.restore`: a database restart, a failover, a relay
  that is down;
- :meth:`FaultProxy.pause` stops forwarding bytes (connections stay open, nothing moves) until
  :meth:`FaultProxy.resume`: a server that hangs.

The proxy runs its own event loop in a thread, so synchronous tests and subprocess daemons both
work with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

from tests.mail_support import free_port

_CHUNK = 65536


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host:target_port`` until the test breaks it."""

    def __init__(self, target_host: str, target_port: int, *, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.accepted = 0
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None
        self._cut = False

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def cut(self) -> None:
        """Close every connection now and refuse new ones (they are accepted, then closed)."""
        self._call(self._cut_all())

    def restore(self) -> None:
        """Accept and forward connections again after :meth:`cut`."""
        self._call(self._set_cut(False))

    def pause(self) -> None:
        """Stop moving bytes in either direction; connections stay open."""
        self._call(self._set_flowing(False))

    def resume(self) -> None:
        self._call(self._set_flowing(True))

    @property
    def open_connections(self) -> int:
        return len(self._writers) // 2

    def _call(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=10)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        await self._cut_all()
        if self._server is not None:
            self._server.close()
        # A connection's handler can still wait (paused, or on a peer that never answers):
        # ended here, not left pending in a closed loop, where its garbage collection in a
        # later test logged "Task was destroyed but it is pending!" into that test's events.
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _set_cut(self, cut: bool) -> None:
        self._cut = cut

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _cut_all(self) -> None:
        self._cut = True
        for writer in list(self._writers):
            _abort(writer)
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            self.refused += 1
            _abort(writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self.refused += 1
            _abort(writer)
            return
        self.accepted += 1
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            self._pipe(reader, upstream_writer, writer),
            self._pipe(upstream_reader, writer, upstream_writer),
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
    ) -> None:
        """Copy one direction; when either side ends, end both (a killed client frees its
        server session at once, as a direct connection would)."""
        assert self._flowing is not None
        try:
            while data := await reader.read(_CHUNK):
                await self._flowing.wait()
                if writer.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for side in (writer, other):
                self._writers.discard(side)
                with contextlib.suppress(OSError, RuntimeError):
                    side.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    with contextlib.suppress(OSError, RuntimeError):
        transport.abort()  # a reset, not a polite close: what a crashed peer looks like


@contextmanager
def fault_proxy(target_host: str, target_port: int) -> Iterator[FaultProxy]:
    """A started :class:`FaultProxy` to the target, stopped afterwards."""
    proxy = FaultProxy(target_host, target_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
