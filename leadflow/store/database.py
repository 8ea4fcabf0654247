"""Opening the state store: one engine per process, SQLite tuned for a daemon, migrations."""

from __future__ import annotations

import functools
import math
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, suppress
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, column, create_engine, event, inspect
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session

from leadflow.errors import (
    ConfigError,
    DatabaseUnavailableError,
    LeadflowError,
    LockWaitExpiredError,
    StoreNotReadyError,
    StoreSchemaTooNewError,
)
from leadflow.settings import Settings
from leadflow.store.attributes import AttributeValue
from leadflow.store.lock_waits import (
    LOCK_NOT_AVAILABLE,
    lock_wait_left,
    sqlite_locked,
    statement_timed_out,
)

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from leadflow.store.postgres import BoundedConnection

MIGRATIONS = Path(__file__).parent / "migrations"
WRITE_OPTION = "leadflow_writes"
"""Execution option marking a connection whose transaction will write (SQLite: BEGIN IMMEDIATE)."""


def database_url(settings: Settings) -> str:
    """The configured URL, a relative SQLite path resolved against the config's folder."""
    try:
        url = make_url(settings.database.url)
    except Exception as exc:
        msg = f"database.url: {settings.database.url!r} is not a database URL: {exc}"
        raise ConfigError(msg) from None
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not Path(database).is_absolute():
            url = url.set(database=str(settings.root / database))
    elif url.drivername in ("postgresql", "postgres"):
        # postgres:// is libpq's own spelling, the DATABASE_URL of Heroku, Render or Fly.
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


_REFUSED_LOGIN = ("does not exist", "authentication failed", "no pg_hba.conf entry")
"""What PostgreSQL's FATAL answer to a connection says when it refuses the URL's user, password
or database: the server is there, the URL is wrong."""


def unreachable_store(where: str, reason: object) -> LeadflowError:
    """The one-line error for a store a command could not open: a login the server refused (an
    unknown role or database, a wrong password) or a port that is no port is the URL's mistake,
    exit 1 (an orchestrator restarting on exit 3 would retry a typo for ever); anything else is
    the server unreachable, exit 3."""
    # One line: psycopg puts its hint ("Is the server running on that host ...") on its own.
    text = " ".join(str(reason).split())
    refused = "FATAL:" in text and any(part in text for part in _REFUSED_LOGIN)
    if refused or "invalid port number" in text:
        return ConfigError(
            f"database.url {where}: {text}: check its user, password, host, port and database name"
        )
    return DatabaseUnavailableError(f"cannot reach the database at {where}: {text}")


def missing_sqlite_file(settings: Settings) -> Path | None:
    """The SQLite file ``database.url`` names when it does not exist (None for PostgreSQL, an
    in-memory store or a file that is there)."""
    parsed = make_url(database_url(settings))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database or "")
    return None if path.exists() else path


def create_store_engine(
    url: str,
    *,
    connect_timeout: float = 10.0,
    pool_size: int = 5,
    statement_timeout: float = 60.0,
    pool_timeout: float = 30.0,
) -> Engine:
    """An engine with the pragmas and timeouts a long-running daemon needs.

    On PostgreSQL every wait for the server is bounded on both sides: the server cancels a
    statement after ``statement_timeout`` seconds, and the client gives up on a reply
    :data:`REPLY_MARGIN` later (:class:`~leadflow.store.postgres.BoundedConnection`), which is
    what ends a wait on a server that stopped answering without closing the connection.
    A thread waiting more than ``pool_timeout`` seconds for one of the pool's connections gets
    SQLAlchemy's ``TimeoutError``. On SQLite ``connect_timeout`` bounds the wait for another
    process's write lock.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # sqlite3's timeout is its busy timeout: how long a statement waits for another
        # connection's write lock (an import, a backup) before "database is locked".
        engine = create_engine(url, connect_args={"timeout": connect_timeout})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", functools.partial(_sqlite_begin_immediate, connect_timeout))
        event.listen(engine, "close", _sqlite_roll_back_before_close)
        explain = functools.partial(
            _explain_lock_wait, sqlite_locked, _sqlite_locked_note(connect_timeout)
        )
        event.listen(engine, "handle_error", explain)
        return engine
    if parsed.get_backend_name() == "postgresql":
        engine = create_engine(
            url,
            pool_size=pool_size,
            pool_timeout=pool_timeout,
            pool_pre_ping=True,
            connect_args={"connect_timeout": max(1, round(connect_timeout)), **PG_KEEPALIVES},
        )
        from leadflow.store.postgres import BoundedConnection  # psycopg loads for PostgreSQL only

        reply_timeout = statement_timeout + REPLY_MARGIN

        def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> BoundedConnection:
            connection = BoundedConnection.connect(*cargs, **cparams)
            connection.reply_timeout = reply_timeout
            return connection

        def set_statement_timeout(dbapi_connection: Any, _record: Any) -> None:
            milliseconds = round(statement_timeout * 1000)
            dbapi_connection.execute(f"SET statement_timeout = {milliseconds}")
            dbapi_connection.commit()

        event.listen(engine, "do_connect", connect)
        event.listen(engine, "connect", set_statement_timeout)
        event.listen(engine, "begin", _postgres_lock_timeout)
        explain = functools.partial(
            _explain_lock_wait, statement_timed_out, _statement_timeout_note(statement_timeout)
        )
        event.listen(engine, "handle_error", explain)
        return engine
    backend = parsed.get_backend_name()
    msg = f"database.url: unsupported database {backend!r}; use sqlite or postgresql"
    raise ConfigError(msg)


PG_KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
"""A server that vanished without closing the connection (packets dropped: a partition, a dead
host) is noticed within about 11 s while waiting for a reply (5 s idle, then 3 probes 2 s
apart), 10 s while sending, instead of never."""
REPLY_MARGIN = 5.0
"""Seconds the client waits for a reply beyond the server's ``statement_timeout``: the server's
own cancellation comes first whenever it can still answer."""


def _postgres_lock_timeout(connection: Connection) -> None:
    # A caller with a bound of its own (an HTTP request) waits at most the time it has left for
    # a lock, not the statement timeout: a LOCK TABLE held for a minute answered every API
    # request after 60 s instead of a few.
    # Nothing left is 1 ms, not a refusal: a lock that is free is still taken.
    left = lock_wait_left()
    if left is not None:
        milliseconds = max(1, round(left * 1000))
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {milliseconds}")


def _statement_timeout_note(statement_timeout: float) -> str:
    # The driver says "canceling statement due to statement timeout", which does not say that
    # the likely cause is another session's lock, nor which setting gave up.
    return (
        f"the database did not answer within {statement_timeout:g} s "
        "(database.statement_timeout): another session may hold a lock on a table this "
        "needs (a LOCK TABLE, a long migration, a session left in a transaction); retry "
        "once it has ended"
    )


def _sqlite_locked_note(connect_timeout: float) -> str:
    return (
        f"the database stayed locked for {connect_timeout:g} s (database.connect_timeout): "
        "another process holds its write lock (an import, a backup, a sqlite3 shell left "
        "in a transaction); retry once it has ended"
    )


def _explain_lock_wait(
    ran_out: Callable[[BaseException], bool], note: str, context: ExceptionContext
) -> None:
    """Add ``note`` (what a command prints) to a driver's error that says a wait ran out,
    unless the caller bounds its own waits (an HTTP request answers 503 'locked')."""
    orig = context.original_exception
    if ran_out(orig) and lock_wait_left() is None:
        orig.add_note(note)


@contextmanager
def unbounded_statements(connection: Connection) -> Iterator[None]:
    """Let the statements of ``connection``'s transaction take as long as they need (a
    migration building an index on a large table), on the server and on the client."""
    if connection.dialect.name != "postgresql":
        yield
        return
    from leadflow.store.postgres import BoundedConnection

    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    dbapi_connection = connection.connection.dbapi_connection
    if not isinstance(dbapi_connection, BoundedConnection):
        yield
        return
    previous, dbapi_connection.reply_timeout = dbapi_connection.reply_timeout, None
    try:
        yield
    finally:
        dbapi_connection.reply_timeout = previous


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the sender read while the evaluator writes. FULL syncs the log at each commit:
    # with NORMAL a power cut or an OS crash could take back the last commits (a batch's
    # outbox rows, a message marked sent), and the next run would send their email again.
    # Commits are few (a batch of firings, 5,000 imported rows, the sender's outcomes every
    # 25 ms), so the sync per commit costs little.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    try:
        cursor.execute("SELECT power(2, 2), floor(2.5), ln(2)")
    except sqlite3.OperationalError:
        # An SQLite built without its math functions: the scoring model's decay needs these
        # three, with the same meaning (Python's float maths is what SQLite's would compute).
        dbapi_connection.create_function("power", 2, _power, deterministic=True)
        dbapi_connection.create_function("floor", 1, _floor, deterministic=True)
        dbapi_connection.create_function("ln", 1, _ln, deterministic=True)
    cursor.close()
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions start (see below).
    dbapi_connection.isolation_level = None


def _power(base: float | None, exponent: float | None) -> float | None:
    return None if base is None or exponent is None else math.pow(base, exponent)


def _ln(value: float | None) -> float | None:
    return None if value is None or value <= 0 else math.log(value)


def _floor(value: float | None) -> int | None:
    return None if value is None else math.floor(value)


_BUSY_MS = "leadflow_busy_ms"
"""Key of a pooled SQLite connection's ``info``: the busy timeout it has, in milliseconds."""


def _sqlite_begin_immediate(connect_timeout: float, connection: Any) -> None:
    # The busy timeout is the caller's time left (an HTTP request's), else connect_timeout.
    left = lock_wait_left()
    busy_ms = max(1, round((connect_timeout if left is None else left) * 1000))
    pooled = connection.connection
    if pooled.info.get(_BUSY_MS, round(connect_timeout * 1000)) != busy_ms:
        pooled.dbapi_connection.execute(f"PRAGMA busy_timeout = {busy_ms}")
        pooled.info[_BUSY_MS] = busy_ms
    # sqlite3 would start a transaction only at the first write, so a rule's SELECT and the
    # UPDATEs it causes would not be atomic. A writing transaction (``transaction()`` below)
    # says so and gets BEGIN IMMEDIATE, taking the write lock up front: what it read is still
    # true when it writes. Reads get a plain BEGIN and never wait for writers (WAL).
    writes = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def _sqlite_roll_back_before_close(dbapi_connection: Any, _record: Any) -> None:
    # A connection closed while one of its statements is still open (a result not read to its
    # end, kept alive by a traceback) is not closed: SQLite keeps it, with its transaction and
    # the write lock, until that statement is freed. SQLAlchemy closes a connection so when an
    # exception such as KeyboardInterrupt reaches it mid-statement; a Ctrl-C of an import then
    # left the lock held, and the run's row waited for it and failed ("database is locked").
    # A rollback ends the transaction whatever statement is still open.
    if dbapi_connection.in_transaction:
        with suppress(sqlite3.Error):  # then the close that follows is all that can be done
            dbapi_connection.rollback()


def engine_for(settings: Settings) -> Engine:
    """The engine for the configured store."""
    engine = create_store_engine(
        database_url(settings),
        connect_timeout=settings.database.connect_timeout.total_seconds(),
        pool_size=settings.database.pool_size,
        statement_timeout=settings.database.statement_timeout.total_seconds(),
    )
    configured = make_url(settings.database.url)
    if configured.get_backend_name() != "sqlite":  # SQLite's path is shown resolved
        _CONFIGURED_URLS[engine] = configured.render_as_string(hide_password=True)
    return engine


_CONFIGURED_URLS: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()
"""An engine's URL as the user wrote it (password hidden): ``postgresql://``, not the
``postgresql+psycopg://`` leadflow gives SQLAlchemy."""


def shown_url(engine: Engine) -> str:
    """The store's URL for a message: as configured, its password hidden."""
    return _CONFIGURED_URLS.get(engine) or engine.url.render_as_string(hide_password=True)


MIGRATION_LOCK_WAIT = timedelta(seconds=10)
"""How long a migration waits for a lock another session holds on a table it changes."""


def alembic_config(engine: Engine) -> AlembicConfig:
    # alembic loads for migrations only: a scratch store (rule tests) is built from the metadata.
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def _revisions(engine: Engine) -> tuple[set[str], str, ScriptDirectory]:
    """The store's revisions (empty: no leadflow tables), this leadflow's newest one, and its
    migrations.

    A store migrated by a newer leadflow names a revision this one does not know: refused
    here, in one line, instead of alembic's ``Can't locate revision`` traceback."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(engine))
    head = script.get_current_head() or ""
    database = engine.url.database or ""
    never_created = engine.dialect.name == "sqlite" and not Path(database).exists()
    try:
        current: set[str] = set()
        if not never_created:  # connecting would create an empty file
            with engine.connect() as connection:
                current = set(MigrationContext.configure(connection).get_current_heads())
                if not current:
                    _refuse_unrecorded_tables(engine, set(inspect(connection).get_table_names()))
    except OperationalError as exc:
        raise unreachable_store(shown_url(engine), exc.orig) from exc
    except DatabaseError as exc:
        # A file that is not SQLite's (a typo'd path onto a log, an empty placeholder written
        # by hand): sqlite3 says so on the first pragma, and every command ended in a traceback.
        if engine.dialect.name == "sqlite" and "not a database" in str(exc.orig):
            msg = (
                f"{database} is not an SQLite database (file is not a database): check database.url"
            )
            raise StoreNotReadyError(msg) from None
        raise
    if len(current) > 1:
        # leadflow's migrations are one line, so a store has one version: several rows are a
        # hand edit or a restore over a live table, and alembic answered with a traceback.
        where = shown_url(engine)
        msg = (
            f"the store at {where} records {len(current)} schema versions "
            f"({', '.join(sorted(current))}) where leadflow keeps one (its alembic_version "
            "table was edited or restored over), so leadflow cannot tell which migrations it "
            "has had and changes nothing: restore it from a backup"
        )
        raise StoreNotReadyError(msg)
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = sorted(current - known)
    if unknown:
        where = shown_url(engine)
        msg = (
            f"the store at {where} has schema {', '.join(unknown)}, newer than this leadflow "
            f"knows ({head}): run the leadflow that migrated it, or restore a backup taken "
            "before (downgrades are not automatic: docs/operations.md, Rolling back)"
        )
        raise StoreSchemaTooNewError(msg)
    return current, head, script


FIRST_TABLES = frozenset(
    {
        "import_runs",
        "reps",
        "rule_firings",
        "rule_runs",
        "assignment_rotations",
        "leads",
        "deals",
        "nurture_enrollments",
        "sla_timers",
        "activities",
        "audit_log",
        "outbox",
    }
)
"""The tables the first migration (0001) creates: every leadflow store has them all."""


def _refuse_unrecorded_tables(engine: Engine, tables: set[str]) -> None:
    """Refuse a store with no schema version recorded that holds tables of leadflow's names.

    Migrating would start at 0001 and fail on its first ``CREATE TABLE`` (a traceback on
    PostgreSQL), and ``status`` called it a store with no tables yet."""
    where = shown_url(engine)
    if tables.issuperset(FIRST_TABLES):
        msg = (
            f"the store at {where} has leadflow's tables but no schema version recorded "
            "(its alembic_version row or table is gone), so leadflow cannot tell which "
            "migrations it has had and changes nothing: restore it from a backup"
        )
        raise StoreNotReadyError(msg)
    clashing = sorted(tables & FIRST_TABLES)
    if clashing:
        msg = (
            f"the store at {where} holds tables leadflow did not create ({', '.join(clashing)}): "
            "point database.url at an empty database, or at a schema of its own "
            "(PostgreSQL: ?options=-csearch_path=<schema>)"
        )
        raise StoreNotReadyError(msg)


def pending_migrations(engine: Engine) -> list[tuple[str, str]]:
    """The revisions :func:`migrate` would apply, oldest first: each one's number and the first
    line of its docstring (what ``leadflow migrate`` lists)."""
    current, head, script = _revisions(engine)
    lower = next(iter(current)) if current else None
    pending = list(script.iterate_revisions(head, lower))
    pending.reverse()
    return [
        (revision.revision, (revision.doc or "").strip().splitlines()[0] if revision.doc else "")
        for revision in pending
    ]


def require_current_schema(engine: Engine) -> None:
    """Refuse, with what to do, a store that a read-only command cannot read as it is.

    A command that only reads (``status``, ``report``, ``audit``, the outbox listing, the
    dashboard, ``plan``, which may run in a pull request's CI against production) never
    migrates: some migrations rewrite whole tables under an exclusive lock (0016) and none goes
    back by itself, so an operator looking at an old store with a new leadflow must not upgrade
    it by looking. A store never created, one migrated by an older leadflow, or one by a newer
    one, is named instead of failing later on a missing table.
    """
    current, head, _ = _revisions(engine)
    if current == {head}:
        return
    where = shown_url(engine)
    if not current:
        msg = (
            f"the store at {where} has no leadflow tables yet; run any command that writes it "
            "first (leadflow import ..., leadflow run --once, leadflow migrate, or the daemon, "
            "which migrate it), or point database.url at your store"
        )
    else:
        msg = (
            f"the store at {where} has schema {', '.join(sorted(current))}, older than this "
            f"leadflow's ({head}), and this command only reads: back it up, then run "
            "`leadflow migrate` (`--dry-run` lists the migrations), or run the leadflow that "
            "wrote it"
        )
    raise StoreNotReadyError(msg)


def migrate(
    engine: Engine, revision: str = "head", *, lock_wait: timedelta = MIGRATION_LOCK_WAIT
) -> None:
    """Bring the schema to ``revision``; safe to run on every start. On PostgreSQL a lock
    another session holds on a table a migration changes is waited for ``lock_wait`` at most
    (see :func:`bounded_lock_waits`)."""
    from alembic import command

    # Reached first: `leadflow status` with the server down said "cannot migrate", which
    # sent operators looking at the schema rather than at the server. A newer store is
    # refused here too.
    _revisions(engine)
    try:
        config = alembic_config(engine)
        config.attributes["lock_wait"] = lock_wait
        command.upgrade(config, revision)
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            raise DatabaseUnavailableError(_lock_wait_refusal(engine, lock_wait)) from None
        msg = f"cannot migrate the database at {engine.url!r}: {exc.orig}"
        raise DatabaseUnavailableError(msg) from exc


def bounded_lock_waits(connection: Connection, wait: timedelta) -> None:
    """Give up on a lock after ``wait``, for the rest of ``connection``'s transaction
    (PostgreSQL; SQLite waits its busy timeout).

    An ``ALTER TABLE`` waiting behind a session's open transaction (a report, a psql left in
    ``BEGIN``) waited silently for as long as that session lived, and every query of the daemons
    and the dashboard on that table queued behind it. Migrations run in one transaction, so
    giving up applies none of them."""
    if connection.dialect.name == "postgresql":
        milliseconds = max(1, int(wait.total_seconds() * 1000))
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {milliseconds}")


def _lock_wait_refusal(engine: Engine, wait: timedelta) -> str:
    """What a migration that gave up on a lock says: the sessions holding locks on the
    store's tables, for the operator to end or wait for."""
    where = shown_url(engine)
    holders_sql = (
        "SELECT DISTINCT a.pid, a.application_name, a.state FROM pg_locks l "
        "JOIN pg_class c ON c.oid = l.relation "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.granted AND n.nspname = current_schema() AND l.pid <> pg_backend_pid() "
        "ORDER BY a.pid LIMIT 5"
    )
    try:
        with engine.connect() as connection:
            holders = [
                f"pid {pid}" + (f" {name}" if name else "") + (f" ({state})" if state else "")
                for pid, name, state in connection.exec_driver_sql(holders_sql)
            ]
    except DatabaseError:
        holders = []
    held = f" ({', '.join(holders)})" if holders else ""
    return (
        f"cannot migrate the store at {where}: another session holds a lock on its tables"
        f"{held} and the migration gave up after {wait.total_seconds():g} s rather than "
        "hold up every query queued behind it; nothing applied: run it again once that "
        "session has ended (docs/operations.md, Upgrading leadflow)"
    )


def ensure_attribute_indexes(
    engine: Engine, table: Table, declared: Mapping[str, str], indexed: tuple[str, ...]
) -> list[str]:
    """Create the missing expression indexes for ``indexed`` attributes; return their names."""
    names: list[str] = []
    if not indexed:
        # No write transaction at all: on SQLite it takes the write lock, and every command
        # opening the store comes here, so `status` would wait on (and fail behind) another
        # process's writer for nothing.
        return names
    try:
        with transaction(engine) as session:
            connection = session.connection()
            for key in indexed:
                name = f"ix_{table.name}_attr_{key.lower()}"
                unqualified = AttributeValue(column("attributes"), key, declared[key])
                expression = unqualified.compile(
                    dialect=connection.dialect, compile_kwargs={"literal_binds": True}
                )
                # Plain DDL, not an Index object: that would join the table's metadata, and
                # IF NOT EXISTS because SQLAlchemy cannot reflect expression indexes.
                connection.exec_driver_sql(
                    f"CREATE INDEX IF NOT EXISTS {name} ON {table.name} ({expression})"
                )
                names.append(name)
    except OperationalError as exc:
        # A locked SQLite file or a database gone since the migration: one line, exit 3.
        msg = f"cannot create the attribute indexes in the database at {engine.url!r}: {exc.orig}"
        raise DatabaseUnavailableError(msg) from exc
    return names


def insert_ignoring_duplicates(dialect: str, table: Table, unique: str) -> Any:
    """``INSERT INTO table ... ON CONFLICT (unique) DO NOTHING`` in ``dialect``'s words: a row
    whose key is there already (also one a concurrent transaction just inserted) is skipped."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=[unique])


@functools.cache
def insert_or_update(dialect: str, table: Table, unique: str, update: tuple[str, ...]) -> Any:
    """``INSERT INTO table ON CONFLICT (unique) DO UPDATE`` in ``dialect``'s words, executed
    with the row as its parameters: one statement that creates the row or, when its key is
    there already, sets only the columns named in ``update`` to the row's values.

    Built once per shape: a rule's run is recorded by it at every run of every rule, and
    building the statement afresh (its ``excluded`` columns, its values) cost more Python
    than the database spent on it."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=[unique], set_={name: statement.excluded[name] for name in update}
    )


def _writer(engine: Engine) -> Engine:
    """The engine whose transactions will write: on SQLite they take the write lock up front."""
    return engine.execution_options(**{WRITE_OPTION: True})


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """The one way to write: a session whose work commits together or not at all.

    Core statements run through it too (``session.execute(insert(...))``, or
    ``session.connection()`` where a Connection is needed), so every writer takes the same
    turn and, on SQLite, the write lock up front (BEGIN IMMEDIATE).

    On SQLite the writing transactions of one process take turns in arrival order. SQLite's own
    busy handler polls with growing sleeps, so a thread waiting for the write lock can starve
    behind back-to-back evaluation batches for seconds; the sender's ``sent`` records were such
    a waiter, and a crash meanwhile sent every accepted but unrecorded message again.
    """
    turns = _turnstile(engine)
    with (
        turns.turn(lock_wait_left()) if turns is not None else nullcontext(),
        Session(_writer(engine), expire_on_commit=False) as session,
        session.begin(),
    ):
        yield session


class _Turnstile:
    """A first-come, first-served lock, re-entrant per thread (a nested writing transaction
    fails on SQLite's lock, as it did before, instead of waiting for itself)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._owner: int | None = None
        self._depth = 0
        self._abandoned: set[int] = set()

    @contextmanager
    def turn(self, timeout: float | None = None) -> Iterator[None]:
        """Wait for this thread's turn, ``timeout`` seconds at most (None: for ever); then
        :class:`LockWaitExpiredError`, the ticket given up so that the next one is served."""
        me = threading.get_ident()
        with self._condition:
            if self._owner == me:
                self._depth += 1
            else:
                ticket = self._next_ticket
                self._next_ticket += 1
                if not self._condition.wait_for(lambda: self._serving == ticket, timeout):
                    self._abandoned.add(ticket)
                    msg = (
                        f"no turn to write within {timeout:g} s: the writer before it waits "
                        "for a lock another process holds"
                    )
                    raise LockWaitExpiredError(msg)
                self._owner, self._depth = me, 1
        try:
            yield
        finally:
            with self._condition:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                    self._serving += 1
                    while self._serving in self._abandoned:  # waiters that gave up
                        self._abandoned.remove(self._serving)
                        self._serving += 1
                    self._condition.notify_all()


_TURNSTILES: dict[str, _Turnstile] = {}
_TURNSTILES_LOCK = threading.Lock()


def _turnstile(engine: Engine) -> _Turnstile | None:
    if engine.dialect.name != "sqlite":
        return None
    with _TURNSTILES_LOCK:
        return _TURNSTILES.setdefault(str(engine.url.database), _Turnstile())
