"""Another session holding a lock the service needs: the service says so, promptly.

Found by an outside tester: with PostgreSQL's ``leads`` held by ``LOCK TABLE ... IN ACCESS
EXCLUSIVE MODE``, ``/readyz`` stayed 200 while every API request hung the 60 s
``statement_timeout`` and ``leadflow status`` printed the driver's "canceling statement due to
statement timeout"; with a SQLite file held in ``BEGIN IMMEDIATE`` by another process, a POST
waited 19 s (its turn behind the daemon's own writer, then its own busy timeout) where the
documentation promised 10.

Pins: ``/readyz`` is 503 naming the lock within its 2 s; an API request waits ``http.lock_timeout``
in all, then 503 ``the database is locked by another session; retry later`` with Retry-After;
after it, the store's own bound holds again for the daemon's writers; a command cancelled at
``database.statement_timeout`` says what that means and which setting gave up.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from leadflow.cli import main
from leadflow.clock import SettableClock
from leadflow.http.app import LOCKED
from leadflow.store.database import create_store_engine, transaction
from leadflow.store.tables import LEADS
from tests.http_support import Api, build_app, http_settings, runtime_for

LOCK_TIMEOUT = 1.0
"""The tests' ``http.lock_timeout``: what a request may wait in all."""
MARGIN = 2.0
"""What a loaded 2-core CI machine may add to a bound."""


def _timed(call: Any, *args: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call(*args)
    return response, time.monotonic() - started


def _locked_answer(response: httpx.Response) -> tuple[int, str, str | None]:
    return response.status_code, response.text, response.headers.get("Retry-After")


LOCKED_ANSWER = (503, f'{{"detail":"{LOCKED}"}}', "1")


@pytest.fixture
def store_url(postgres_store_url: str) -> str:
    """PostgreSQL by default; the SQLite class below overrides it."""
    return postgres_store_url


@contextmanager
def _leads_locked(engine: Engine) -> Iterator[None]:
    """Another session's ``LOCK TABLE leads IN ACCESS EXCLUSIVE MODE``, held till the end."""
    with engine.connect() as holder:
        held = holder.begin()
        holder.exec_driver_sql("LOCK TABLE leads IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            held.rollback()


@pytest.mark.postgres
class TestPostgresLock:
    """A second PostgreSQL session holds ``leads`` in an ACCESS EXCLUSIVE lock."""

    @pytest.fixture
    def bounded(self, engine: Engine) -> Iterator[Engine]:
        """The store with a 10 s statement timeout: without the lock bound a request waited
        that long (60 s by default), which a test need not sit through to fail."""
        url = engine.url.render_as_string(hide_password=False)
        created = create_store_engine(url, statement_timeout=10)
        yield created
        created.dispose()

    def test_readiness_names_the_lock_within_its_budget(
        self, engine: Engine, bounded: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """/readyz reads leads as the API does: a trivial SELECT 1 answered under the lock and
        the replica stayed ready while no request on leads could be answered."""
        app, holder = build_app(runtime_for(bounded, http_settings(make_settings), clock))
        api = Api(app)
        with _leads_locked(engine):
            response, took = _timed(lambda: api.get("/readyz", auth=False))
        assert response.status_code == 503
        assert response.json() == {
            "status": "not ready",
            "reasons": ["database: leads is locked by another session (no lock within 1.5 s)"],
        }
        assert 1.4 < took < 2.0 + MARGIN
        ready = api.get("/readyz", auth=False)
        assert (ready.status_code, ready.json()) == (
            200,
            {"status": "ready", "rule_version": holder.current().version},
        )

    def test_api_requests_answer_503_after_the_lock_timeout(
        self, engine: Engine, bounded: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """A POST and a GET of a lead each wait http.lock_timeout, then 503 saying the store is
        locked, with Retry-After; once the lock is gone the same POST is stored."""
        settings = http_settings(make_settings, **{"http.lock_timeout": f"{LOCK_TIMEOUT:g}s"})
        app, _holder = build_app(runtime_for(bounded, settings, clock))
        api = Api(app)
        with _leads_locked(engine):
            posted, post_took = _timed(api.post, "/v1/leads", {"external_id": "L1"})
            got, get_took = _timed(api.get, "/v1/leads/L1")
        assert _locked_answer(posted) == LOCKED_ANSWER
        assert _locked_answer(got) == LOCKED_ANSWER
        for took in (post_took, get_took):
            assert LOCK_TIMEOUT - 0.1 < took < LOCK_TIMEOUT + MARGIN
        assert api.post("/v1/leads", {"external_id": "L1"}).status_code == 200
        with engine.connect() as connection:
            stored = connection.execute(select(LEADS.c.external_id)).scalars().all()
        assert stored == ["L1"]

    def test_a_command_cancelled_at_the_statement_timeout_says_why(
        self,
        engine: Engine,
        store_url: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """`leadflow status` printed "the database failed: canceling statement due to statement
        timeout": it now names the wait, the setting and the likely cause, exit 3."""
        url = make_url(store_url).render_as_string(hide_password=False)
        config = tmp_path / "config.yaml"
        config.write_text(f"database:\n  url: '{url}'\n  statement_timeout: 1s\n")
        with _leads_locked(engine):
            code = main(["-c", str(config), "status"])
        assert code == 3
        assert capsys.readouterr().err == (
            "error: the database did not answer within 1 s (database.statement_timeout): "
            "another session may hold a lock on a table this needs (a LOCK TABLE, a long "
            "migration, a session left in a transaction); retry once it has ended\n"
        )


@contextmanager
def _write_locked(store: Path) -> Iterator[None]:
    """Another process's write transaction, as `sqlite3 FILE` holding `BEGIN IMMEDIATE;`."""
    holder = sqlite3.connect(store, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


class TestSqliteLock:
    """A second SQLite connection holds the file's write lock (``BEGIN IMMEDIATE``)."""

    CONNECT_TIMEOUT = 3.0
    """The store's busy timeout (database.connect_timeout) in these tests."""

    @pytest.fixture
    def store_url(self, tmp_path: Path, sqlite_template: Path) -> str:
        target = tmp_path / "state" / "leadflow.db"
        target.parent.mkdir()
        target.write_bytes(sqlite_template.read_bytes())
        return f"sqlite:///{target}"

    @pytest.fixture
    def bounded(self, store_url: str) -> Iterator[Engine]:
        created = create_store_engine(store_url, connect_timeout=self.CONNECT_TIMEOUT)
        yield created
        created.dispose()

    def test_a_post_behind_the_daemons_waiting_writer_waits_the_lock_timeout_in_all(
        self, store_url: str, bounded: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """The daemon's own writer waits the busy timeout for the lock and holds the process's
        turn meanwhile; a POST waited for that turn, then its own busy timeout (19 s seen with
        10 s promised). Now the request's wait, turn and lock together, is http.lock_timeout;
        the writer it queued behind is not disturbed, and once the lock is gone it is stored."""
        settings = http_settings(make_settings, **{"http.lock_timeout": f"{LOCK_TIMEOUT:g}s"})
        app, _holder = build_app(runtime_for(bounded, settings, clock))
        api = Api(app)
        writer_failed: list[str] = []

        def daemon_writer() -> None:
            try:
                with transaction(bounded) as session:
                    session.connection()  # a session connects (and begins) when first used
            except OperationalError as exc:
                writer_failed.append(str(exc.orig))

        store = Path(make_url(store_url).database or "")
        with _write_locked(store):
            writer = threading.Thread(target=daemon_writer)
            writer.start()
            time.sleep(0.2)  # the writer has its turn and waits for the lock
            posted, took = _timed(api.post, "/v1/leads", {"external_id": "L1"})
            writer.join(self.CONNECT_TIMEOUT + MARGIN + 5)
        assert _locked_answer(posted) == LOCKED_ANSWER
        assert LOCK_TIMEOUT - 0.1 < took < LOCK_TIMEOUT + MARGIN
        assert writer_failed == ["database is locked"]
        assert api.post("/v1/leads", {"external_id": "L1"}).status_code == 200
        with bounded.connect() as connection:
            stored = connection.execute(select(LEADS.c.external_id)).scalars().all()
        assert stored == ["L1"]

    def test_after_a_request_the_daemon_waits_the_stores_own_busy_timeout(
        self, store_url: str, bounded: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """A request's short busy timeout stays with the request: the next writer without a
        bound of its own, on the same pooled connection, waits database.connect_timeout."""
        settings = http_settings(make_settings, **{"http.lock_timeout": f"{LOCK_TIMEOUT:g}s"})
        app, _holder = build_app(runtime_for(bounded, settings, clock))
        store = Path(make_url(store_url).database or "")
        with _write_locked(store):
            posted, took = _timed(Api(app).post, "/v1/leads", {"external_id": "L1"})
            started = time.monotonic()
            with (
                pytest.raises(OperationalError, match="database is locked"),
                transaction(bounded) as session,
            ):
                session.connection()
            waited = time.monotonic() - started
        assert _locked_answer(posted) == LOCKED_ANSWER
        assert LOCK_TIMEOUT - 0.1 < took < LOCK_TIMEOUT + MARGIN
        assert self.CONNECT_TIMEOUT - 0.2 < waited < self.CONNECT_TIMEOUT + MARGIN
