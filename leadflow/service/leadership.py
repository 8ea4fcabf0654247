"""Which replica evaluates rules: one at a time, chosen by the database.

On PostgreSQL any number of daemons share the store. The evaluator is the one holding a
session-level advisory lock on a connection of its own; every replica sends from the outbox.
The lock is checked every ``check_every``: a lost connection loses leadership (evaluations
stop after their current batch), and the server frees the lock when the session dies, so
another replica takes over at its next check. The idempotency keys of the outbox remain the
second line of defence against the short overlap a network partition could cause.

SQLite is a single-replica store: a second daemon on the same file is refused with a clear
message (an exclusive lock on ``<database>.daemon.lock``).

Which process leads is shown three ways: the gauge ``leadflow_leader`` (1 on the leader),
``/readyz``'s ``leader``, and ``leadflow status``, which asks the lock who holds it now
(PostgreSQL's ``pg_locks``, SQLite's lock file) and names that daemon from the record it wrote
as it became the leader (``evaluator_leader``: host, pid, since).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import psycopg
import structlog
from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from leadflow import metrics
from leadflow.clock import Clock, SystemClock
from leadflow.errors import AnotherDaemonRunningError
from leadflow.logs import error_text
from leadflow.store.database import PG_KEEPALIVES
from leadflow.store.evaluator_leader import ROLE, LeaderRecord, recorded_leader
from leadflow.store.postgres import BoundedConnection
from leadflow.store.run_processes import this_host

log = structlog.get_logger("leadflow.leadership")


def lock_key(*scope: str) -> int:
    """The advisory lock the replicas of one deployment (database and schema) compete for."""
    name = ":".join(("leadflow", "evaluator", *scope)).encode()
    return int.from_bytes(hashlib.sha256(name).digest()[:8], "big", signed=True)


class Leadership:
    """Whether this process may evaluate now. ``fence`` is set while it may not."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.fence = threading.Event()
        self.fence.set()
        self.clock = clock or SystemClock()
        """Says when leadership was taken (the recorded ``since``)."""

    @property
    def is_leader(self) -> bool:
        return not self.fence.is_set()

    def _become(self, leader: bool, **details: Any) -> None:
        if leader == self.is_leader:
            return
        metrics.record_leader(leader=leader)
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

    def __init__(self, database: Path, clock: Clock | None = None) -> None:
        super().__init__(clock)
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

    def record(self) -> LeaderRecord:
        """What the daemon records of itself, taking the store (:func:`record_leader`)."""
        return LeaderRecord(this_host(), os.getpid(), self.clock.now())

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
        clock: Clock | None = None,
    ) -> None:
        super().__init__(clock)
        self.conninfo = libpq_conninfo(url)
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
                if held and held[0]:
                    self._record(connection)
                self._become(bool(held and held[0]), store="postgresql")
        except psycopg.Error as exc:
            self._drop(error_text(exc))
        return self.is_leader

    def _record(self, connection: BoundedConnection) -> None:
        """Write who took the lock (:data:`_RECORD`), on the lock's own session: its backend
        is the one ``pg_locks`` names. Not written, the replica leads all the same (status
        then says the holder has no record); a lost connection fails the next check."""
        try:
            connection.execute(_RECORD, (ROLE, this_host(), os.getpid(), self.clock.now()))
        except psycopg.Error as exc:
            log.warning("leadership_not_recorded", pid=os.getpid(), error=error_text(exc))

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


_RECORD = """
INSERT INTO evaluator_leader (role, host, pid, backend_pid, since)
VALUES (%s, %s, %s, pg_backend_pid(), %s)
ON CONFLICT (role) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid,
    backend_pid = EXCLUDED.backend_pid, since = EXCLUDED.since
"""


@dataclass(frozen=True)
class CurrentLeader:
    """Who leads the store now, as ``leadflow status`` tells it."""

    holder: str | None
    """What holds the leadership lock now, as the lock names it (``database backend pid
    4711``, ``pid 4711``); None when nothing does: no daemon evaluates."""
    record: LeaderRecord | None
    """The last daemon recorded as it became the leader; None before any did."""
    recorded_holder: bool
    """Whether ``record`` is of the lock's holder: the leader is then that daemon."""


def current_leader(engine: Engine) -> CurrentLeader:
    """Ask the lock who holds it, and whether the record names that process. Read only: the
    lock is never taken (on PostgreSQL ``pg_locks`` is read; on SQLite the lock file is
    flock'd for an instant, as :func:`running_daemon` does)."""
    with engine.connect() as connection:
        record = recorded_leader(connection)
        if engine.dialect.name == "sqlite":
            held = _sqlite_holder(Path(engine.url.database or "leadflow.db"))
            holder = None if held is None else f"pid {held}"
            named = record is not None and (record.host, str(record.pid)) == (this_host(), held)
            return CurrentLeader(holder, record, named)
        row = connection.execute(text("SELECT current_database(), current_schema()")).one()
        unsigned = lock_key(*(str(part) for part in row)) % 2**64
        backend = connection.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"
            ),
            {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF},
        ).scalar()
    holder = None if backend is None else f"database backend pid {backend}"
    named = record is not None and backend is not None and record.backend_pid == backend
    return CurrentLeader(holder, record, named)


def _sqlite_holder(database: Path) -> str | None:
    """The pid a SQLite store's running daemon wrote in its lock file (``unknown`` if none);
    None when no daemon holds the file."""
    try:
        handle = daemon_lock_path(database).open("r", encoding="utf-8")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def running_daemon(url: str) -> str | None:
    """Who holds the store's daemon lock (a description), or None when no daemon does.

    Probed without leaving anything behind: on SQLite the lock file is only opened if it is
    there (no daemon ever ran otherwise) and flock'd for an instant; on PostgreSQL the advisory
    lock is tried and, if taken, given back at once. A PostgreSQL replica that is not the
    evaluator holds nothing and is not seen."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        held = _sqlite_holder(Path(parsed.database or "leadflow.db"))
        return None if held is None else f"a leadflow daemon (pid {held})"
    with psycopg.connect(libpq_conninfo(url), autocommit=True, connect_timeout=10) as connection:
        key = store_lock_key(connection)
        taken = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if taken and taken[0]:
            connection.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return None
    return "the evaluating leadflow daemon (it holds the store's leadership lock)"


def libpq_conninfo(url: str) -> str:
    """``url`` (SQLAlchemy's form) as libpq's keyword string: its query (``options``) decoded
    as SQLAlchemy decodes it for the store's engine. libpq reading the URL itself took the
    ``+`` SQLAlchemy writes for a space as part of the value, so ``options=-csearch_path=s
    -c...`` set a search path of no schema: the lock session keyed (and recorded) another
    store than the engine's."""
    parsed = make_url(url)
    params: dict[str, object] = parsed.translate_connect_args(username="user", database="dbname")
    for key, value in parsed.query.items():
        params[key] = value if isinstance(value, str) else value[-1]
    return make_conninfo(**{key: str(value) for key, value in params.items()})


def daemon_lock_path(database: Path) -> Path:
    """The file a SQLite store's daemon holds locked while it runs: ``<database>.daemon.lock``."""
    return database.with_name(database.name + ".daemon.lock")


def store_lock_key(connection: psycopg.Connection[Any]) -> int:
    """The leadership's advisory lock key of the store ``connection`` is on: advisory locks
    are per database, so each schema (one deployment) gets its own key."""
    row = connection.execute("SELECT current_database(), current_schema()").fetchone()
    return lock_key(*(str(part) for part in row or ()))
