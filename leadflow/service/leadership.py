"""Which replica evaluates rules: one at a time, chosen by the database.

On PostgreSQL any number of daemons share the store. The evaluator is the one holding a
session-level advisory lock on a connection of its own; every replica sends from the outbox.
The lock is checked every ``check_every``: a lost connection loses leadership (evaluations
stop after their current batch), and the server frees the lock when the session dies, so
another replica takes over at its next check. The idempotency keys of the outbox remain the
second line of defence against the short overlap a network partition could cause.

SQLite is a single-replica store: a second daemon on the same file is refused with a clear
message (an exclusive lock on ``<database>.daemon.lock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import threading
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import psycopg
import structlog
from sqlalchemy.engine import make_url

from leadflow.errors import AnotherDaemonRunningError
from leadflow.logs import error_text
from leadflow.store.database import PG_KEEPALIVES
from leadflow.store.postgres import BoundedConnection

log = structlog.get_logger("leadflow.leadership")


def lock_key(*scope: str) -> int:
    """The advisory lock the replicas of one deployment (database and schema) compete for."""
    name = ":".join(("leadflow", "evaluator", *scope)).encode()
    return int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)


class Leadership:
    """Whether this process may evaluate now. ``fence`` is set while it may not."""

    def __init__(self) -> None:
        self.fence = threading.Event()
        self.fence.set()

    @property
    def is_leader(self) -> bool:
        return not self.fence.is_set()

    def _become(self, leader: bool, **details: Any) -> None:
        if leader == self.is_leader:
            return
        if leader:
            self.fence.clear()
            log.info("leadership_acquired", pid=os.getpid(), **details)
        else:
            self.fence.set()
            if details.get("reason") == "stopped":
                log.info("leadership_released", pid=os.getpid(), **details)
            else:
                log.warning("leadership_lost", pid=os.getpid(), **details)


class SingleInstance(Leadership):
    """The only daemon on a SQLite file: leader from :meth:`acquire` to :meth:`release`."""

    def __init__(self, database: Path) -> None:
        super().__init__()
        self.database = database
        self.path = daemon_lock_path(database)
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            msg = (
                f"another leadflow daemon (pid {holder}) is already running on {self.database}; "
                "SQLite serves one daemon: stop the other one, or use PostgreSQL for several replicas"
            )
            raise AnotherDaemonRunningError(msg) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        self._become(True, store="sqlite")

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        self._become(False, reason="stopped")


class AdvisoryLockLeadership(Leadership):
    """Leader while holding the advisory lock on a dedicated PostgreSQL connection."""

    def __init__(
        self,
        url: str,
        *,
        check_every: timedelta = timedelta(seconds=2),
        timeout: timedelta = timedelta(seconds=5),
        key: int | None = None,
    ) -> None:
        super().__init__()
        parsed = make_url(url).set(drivername="postgresql")
        self.conninfo = parsed.render_as_string(hide_password=False)
        self.check_every = check_every
        self.timeout = timeout
        """One check (connecting included) waits at most this for the server; longer is lost."""
        self.key = key
        self._connection: BoundedConnection | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Check (and try to take) leadership every ``check_every`` until ``stop``."""
        try:
            while not stop.is_set():
                await asyncio.to_thread(self.check)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.check_every.total_seconds()):
                        await stop.wait()
        finally:
            await asyncio.to_thread(self.close)

    def check(self) -> bool:
        """One round: keep the lock if held and the connection lives, else try to take it."""
        try:
            connection = self._connect()
            if self.is_leader:
                connection.execute("SELECT 1")
            else:
                held = connection.execute(
                    "SELECT pg_try_advisory_lock(%s)", (self._lock_key(connection),)
                ).fetchone()
                self._become(bool(held and held[0]), store="postgresql")
        except psycopg.Error as exc:
            self._drop(error_text(exc))
        return self.is_leader

    def _lock_key(self, connection: psycopg.Connection[Any]) -> int:
        """The given key, else the store's (:func:`store_lock_key`), read once."""
        if self.key is None:
            self.key = store_lock_key(connection)
        return self.key

    def _connect(self) -> BoundedConnection:
        if self._connection is None or self._connection.closed:
            seconds = self.timeout.total_seconds()
            self._connection = BoundedConnection.connect(
                self.conninfo,
                autocommit=True,
                connect_timeout=max(2, round(seconds)),  # libpq's least that it keeps
                **PG_KEEPALIVES,
            )
            # A server that stops answering (or a frozen network) loses us leadership after
            # this long; the client-side bound is what notices a silent server at all.
            self._connection.reply_timeout = seconds
            # The server notices a vanished leader within ~10 s and frees its lock.
            for setting, value in (
                ("tcp_keepalives_idle", 5),
                ("tcp_keepalives_interval", 2),
                ("tcp_keepalives_count", 3),
            ):
                self._connection.execute(f"SET {setting} = {value}")
        return self._connection

    def _drop(self, reason: str) -> None:
        self._become(False, reason=reason)
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None

    def close(self) -> None:
        """Give the lock back (closing the session frees it) and stop being the leader."""
        if self._connection is not None and not self._connection.closed:
            with contextlib.suppress(psycopg.Error):
                self._connection.execute("SELECT pg_advisory_unlock_all()")
        self._drop("stopped")


def running_daemon(url: str) -> str | None:
    """Who holds the store's daemon lock (a description), or None when no daemon does.

    Probed without leaving anything behind: on SQLite the lock file is only opened if it is
    there (no daemon ever ran otherwise) and flock'd for an instant; on PostgreSQL the advisory
    lock is tried and, if taken, given back at once. A PostgreSQL replica that is not the
    evaluator holds nothing and is not seen."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        try:
            handle = daemon_lock_path(Path(parsed.database or "leadflow.db")).open(
                "r", encoding="utf-8"
            )
        except FileNotFoundError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return f"a leadflow daemon (pid {handle.read().strip() or 'unknown'})"
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None
    conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as connection:
        key = store_lock_key(connection)
        taken = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if taken and taken[0]:
            connection.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return None
    return "the evaluating leadflow daemon (it holds the store's leadership lock)"


def daemon_lock_path(database: Path) -> Path:
    """The file a SQLite store's daemon holds locked while it runs: ``<database>.daemon.lock``."""
    return database.with_name(database.name + ".daemon.lock")


def store_lock_key(connection: psycopg.Connection[Any]) -> int:
    """The leadership's advisory lock key of the store ``connection`` is on: advisory locks
    are per database, so each schema (one deployment) gets its own key."""
    row = connection.execute("SELECT current_database(), current_schema()").fetchone()
    return lock_key(*(str(part) for part in row or ()))
