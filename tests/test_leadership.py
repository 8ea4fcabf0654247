"""One evaluator at a time: PostgreSQL replicas elect one by advisory lock; SQLite runs one daemon."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

from leadflow.errors import AnotherDaemonRunningError
from leadflow.logs import is_outage
from leadflow.service.leadership import AdvisoryLockLeadership, SingleInstance
from leadflow.store.database import REPLY_MARGIN, create_store_engine, migrate
from tests.conftest import empty_every_table
from tests.fault_proxy import fault_proxy
from tests.replica_support import Replica, make_project, postgres_port, via, wait_until
from tests.test_daemon import CONFIG, RULE, seed


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder as tests/test_daemon.py makes one: config, one rule, the templates."""
    return make_project(tmp_path, CONFIG, RULE.format(threshold=60))


def replica(project: Path) -> Path:
    """A second project folder with the same config, rules and templates (its own log)."""
    folder = project / "replica"
    folder.mkdir()
    shutil.copy(project / "config.yaml", folder / "config.yaml")
    shutil.copytree(project / "rules", folder / "rules")
    shutil.copytree(project / "templates", folder / "templates")
    return folder


class TestSingleInstance:
    """A second daemon on the same SQLite file is refused with a clear message."""

    def test_second_lock_on_the_same_file_is_refused(self, tmp_path: Path) -> None:
        database = tmp_path / "state" / "leadflow.db"
        first = SingleInstance(database)
        first.acquire()
        assert first.is_leader
        second = SingleInstance(database)
        with pytest.raises(AnotherDaemonRunningError) as refused:
            second.acquire()
        assert str(refused.value) == (
            f"another leadflow daemon (pid {os.getpid()}) is already running on {database}; "
            "SQLite serves one daemon: stop the other one, or use PostgreSQL for several replicas"
        )
        assert not second.is_leader
        first.release()
        second.acquire()
        assert second.is_leader
        second.release()

    @pytest.mark.slow
    def test_second_daemon_process_exits_1(self, project: Path, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'state' / 'leadflow.db'}"
        store = create_store_engine(url)
        try:
            migrate(store)
            seed(store, datetime.now(UTC) - timedelta(days=1))
        finally:
            store.dispose()
        first = Replica(project, url)
        try:
            wait_until(lambda: first.events("daemon_started"), "the first daemon to start", 10)
            second = Replica(replica(project), url)
            assert second.process.wait(timeout=20) == 1
            assert "another leadflow daemon" in second.log_path.read_text(encoding="utf-8")
            assert first.process.poll() is None
        finally:
            first.kill()


@pytest.mark.postgres
class TestAdvisoryLock:
    """Exactly one replica holds the lock; a lost session hands it over at the next check."""

    @pytest.fixture
    def pair(
        self, postgres_url: str
    ) -> Iterator[tuple[AdvisoryLockLeadership, AdvisoryLockLeadership]]:
        key = int(time.time() * 1000) % 2**31  # a key of this test's own
        first = AdvisoryLockLeadership(postgres_url, key=key)
        second = AdvisoryLockLeadership(postgres_url, key=key)
        yield first, second
        first.close()
        second.close()

    def test_one_leader_and_takeover_after_the_leader_dies(
        self, pair: tuple[AdvisoryLockLeadership, AdvisoryLockLeadership], postgres_url: str
    ) -> None:
        first, second = pair
        assert first.check() is True
        assert second.check() is False
        assert (first.is_leader, second.is_leader) == (True, False)
        assert first.fence.is_set() is False
        assert second.fence.is_set() is True
        # The leader's session is killed (a crash, a partition the server noticed).
        connection = first._connection
        assert connection is not None
        admin = create_engine(postgres_url)
        with admin.begin() as session:
            session.execute(
                text("SELECT pg_terminate_backend(:pid)"), {"pid": connection.info.backend_pid}
            )
        admin.dispose()
        assert first.check() is False  # its next check notices, and it stops evaluating
        assert first.fence.is_set() is True
        assert second.check() is True  # the lock was freed with the session
        assert first.check() is False  # reconnected, but the other replica leads now

    def test_a_clean_stop_hands_over_at_once(
        self, pair: tuple[AdvisoryLockLeadership, AdvisoryLockLeadership]
    ) -> None:
        first, second = pair
        assert first.check() is True
        first.close()
        assert not first.is_leader
        assert second.check() is True


@pytest.mark.postgres
@pytest.mark.slow
def test_killed_leader_process_is_replaced(project: Path, postgres_url: str) -> None:
    """Two daemons: one evaluates; SIGKILL it and the other takes over within a few seconds."""
    store = create_store_engine(postgres_url)
    try:
        empty_every_table(store)
        seed(store, datetime.now(UTC) - timedelta(days=1))
    finally:
        store.dispose()
    first = Replica(project, postgres_url)
    wait_until(lambda: first.events("leadership_acquired"), "the first daemon to lead", timeout=20)
    second = Replica(replica(project), postgres_url)
    try:
        wait_until(
            lambda: second.events("daemon_started"), "the second daemon to start", timeout=20
        )
        assert second.events("leadership_acquired") == []
        killed_at = time.monotonic()
        first.kill()
        wait_until(
            lambda: second.events("leadership_acquired"), "the second daemon to lead", timeout=15
        )
        assert time.monotonic() - killed_at < 10
    finally:
        first.kill()
        second.kill()


@pytest.mark.postgres
class TestSilentDatabase:
    """A database that stops answering without closing the connection (the proxy frozen: the
    packets go nowhere, nothing is closed): every wait is bounded on the client side."""

    def test_leadership_is_given_up_within_the_check_bound(self, postgres_url: str) -> None:
        key = int(time.time() * 1000) % 2**31
        with fault_proxy("127.0.0.1", postgres_port(postgres_url)) as proxy:
            leadership = AdvisoryLockLeadership(
                via(postgres_url, proxy.port), key=key, timeout=timedelta(seconds=2)
            )
            try:
                assert leadership.check() is True
                proxy.pause()
                started = time.monotonic()
                with capture_logs() as logs:
                    assert leadership.check() is False
                took = time.monotonic() - started
                proxy.resume()
            finally:
                leadership.close()
        assert 2 <= took < 3.5, took
        assert [e["event"] for e in logs] == ["leadership_lost"]
        assert logs[0]["reason"].startswith("OperationalError: the database did not answer")

    def test_a_statement_waits_at_most_its_timeout_and_the_margin(self, postgres_url: str) -> None:
        with fault_proxy("127.0.0.1", postgres_port(postgres_url)) as proxy:
            engine = create_store_engine(via(postgres_url, proxy.port), statement_timeout=1)
            try:
                with engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
                    proxy.pause()
                    started = time.monotonic()
                    with pytest.raises(OperationalError) as raised:
                        connection.execute(text("SELECT 1"))
                    took = time.monotonic() - started
                proxy.resume()
                with engine.connect() as connection:  # the pool gave the dead one up
                    assert connection.execute(text("SELECT 1")).scalar_one() == 1
            finally:
                engine.dispose()
        assert 1 + REPLY_MARGIN <= took < 2 + REPLY_MARGIN, took
        assert is_outage(raised.value)
