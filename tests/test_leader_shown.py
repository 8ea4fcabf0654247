"""Which replica leads is shown: the ``leadflow_leader`` gauge, ``/readyz``, ``leadflow status``.

Pins (an outside tester's find): only the log events ``leadership_acquired`` / ``leadership_lost``
said which replica evaluates rules; ``status``, the probes and ``/metrics`` did not (a
non-leader's ``leadflow_last_successful_tick_timestamp_seconds`` is 0.0). Now the gauge is 1 on
the leader, 0 elsewhere; ``/readyz`` says ``"leader"``; and ``status`` asks the lock who holds it
(PostgreSQL's ``pg_locks``, SQLite's lock file) and names that daemon by the record it wrote as
it took the lock (host, pid, since), or says that the holder left none.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text

from leadflow import metrics
from leadflow.cli import main
from leadflow.cli.status_command import leader_line
from leadflow.clock import SettableClock
from leadflow.http import create_app
from leadflow.rule_language.model import RuleSet
from leadflow.service.leadership import (
    AdvisoryLockLeadership,
    CurrentLeader,
    SingleInstance,
    current_leader,
    libpq_conninfo,
    store_lock_key,
)
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.store.database import create_store_engine
from leadflow.store.evaluator_leader import LeaderRecord, record_leader
from leadflow.store.run_processes import this_host
from tests.conftest import T0, empty_every_table
from tests.http_support import Api, http_settings, runtime_for
from tests.mail_support import free_port
from tests.replica_support import Replica, make_project, wait_until
from tests.test_daemon import RULE, seed

HOST, PID = this_host(), os.getpid()
LOCK = "the store's leadership lock"


def leader_gauge() -> float | None:
    return metrics.REGISTRY.get_sample_value("leadflow_leader")


def backend_of(leadership: AdvisoryLockLeadership) -> int:
    assert leadership._connection is not None
    return int(leadership._connection.info.backend_pid)


@pytest.mark.postgres
class TestPostgreSQLContenders:
    """Two contenders for one store's lock: the gauge and the status follow the lock."""

    @pytest.fixture
    def store(self, postgres_store_url: str) -> Iterator[Engine]:
        engine = create_store_engine(postgres_store_url)
        yield engine
        engine.dispose()

    @pytest.fixture
    def clock(self) -> SettableClock:
        return SettableClock(T0)

    @pytest.fixture
    def pair(
        self, postgres_store_url: str, clock: SettableClock
    ) -> Iterator[tuple[AdvisoryLockLeadership, AdvisoryLockLeadership]]:
        first = AdvisoryLockLeadership(postgres_store_url, clock=clock)
        second = AdvisoryLockLeadership(postgres_store_url, clock=clock)
        yield first, second
        first.close()
        second.close()

    def test_the_gauge_is_1_while_leading_and_0_after(
        self, pair: tuple[AdvisoryLockLeadership, AdvisoryLockLeadership]
    ) -> None:
        first, second = pair
        assert first.check() is True
        assert leader_gauge() == 1.0
        assert second.check() is False
        assert leader_gauge() == 1.0  # this process still leads, through the first
        first.close()
        assert leader_gauge() == 0.0
        assert second.check() is True
        assert leader_gauge() == 1.0
        second.close()
        assert leader_gauge() == 0.0

    def test_status_names_the_holder_and_follows_a_takeover(
        self,
        pair: tuple[AdvisoryLockLeadership, AdvisoryLockLeadership],
        store: Engine,
        clock: SettableClock,
        postgres_store_url: str,
    ) -> None:
        first, second = pair
        assert current_leader(store) == CurrentLeader(None, None, False)
        assert leader_line(current_leader(store)) == f"leader: none, no daemon holds {LOCK}"
        assert first.check() is True
        assert second.check() is False
        one = backend_of(first)
        taken = LeaderRecord(HOST, PID, T0, one)
        assert current_leader(store) == CurrentLeader(f"database backend pid {one}", taken, True)
        assert leader_line(current_leader(store)) == (
            f"leader: host {HOST}, pid {PID}, since 2026-03-02 09:00 UTC (it holds {LOCK} now)"
        )
        # The leader's session dies (a crash): the lock is free, the record stays.
        admin = create_engine(postgres_store_url)
        with admin.begin() as session:
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": one})
        admin.dispose()
        wait_until(lambda: current_leader(store).holder is None, "the lock to be freed", 10)
        assert current_leader(store) == CurrentLeader(None, taken, False)
        assert leader_line(current_leader(store)) == (
            f"leader: none, no daemon holds {LOCK}; the last was host {HOST}, pid {PID}, "
            "since 2026-03-02 09:00 UTC"
        )
        clock.advance(timedelta(minutes=5))
        assert second.check() is True
        two = backend_of(second)
        assert current_leader(store) == CurrentLeader(
            f"database backend pid {two}",
            LeaderRecord(HOST, PID, T0 + timedelta(minutes=5), two),
            True,
        )
        assert leader_line(current_leader(store)) == (
            f"leader: host {HOST}, pid {PID}, since 2026-03-02 09:05 UTC (it holds {LOCK} now)"
        )

    def test_the_lock_session_is_on_the_stores_schema(self, postgres_store_url: str) -> None:
        """A URL of two ``options`` (SQLAlchemy writes their space as ``+``): libpq read the
        ``+`` as part of the search path, so the lock session was on no schema, keyed
        another store than the engine's and could not record itself."""
        schema = postgres_store_url.split("search_path%3D")[1].split("+", maxsplit=1)[0]
        leadership = AdvisoryLockLeadership(postgres_store_url)
        try:
            found = leadership._connect().execute("SELECT current_schema()").fetchone()
        finally:
            leadership.close()
        assert found == (schema,)

    def test_a_holder_that_recorded_nothing_is_not_named(
        self, store: Engine, postgres_store_url: str
    ) -> None:
        """A lock taken without a record (a daemon of an older leadflow): the record of
        another process is not passed off as the leader."""
        record_leader(store, LeaderRecord("old-host", 4242, T0, backend_pid=1))
        with psycopg.connect(libpq_conninfo(postgres_store_url)) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (store_lock_key(holder),))
            backend = holder.info.backend_pid
            assert leader_line(current_leader(store)) == (
                f"leader: unknown daemon (database backend pid {backend} holds {LOCK}, but did "
                "not record itself; the last recorded is host old-host, pid 4242, since "
                "2026-03-02 09:00 UTC)"
            )

    def test_status_command_says_it_in_text_and_json(
        self,
        pair: tuple[AdvisoryLockLeadership, AdvisoryLockLeadership],
        postgres_store_url: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        first, _second = pair
        assert first.check() is True
        config = tmp_path / "config.yaml"
        config.write_text(f"database:\n  url: {postgres_store_url}\n", encoding="utf-8")
        assert main(["-c", str(config), "status"]) == 0
        out = capsys.readouterr().out
        line = f"leader: host {HOST}, pid {PID}, since 2026-03-02 09:00 UTC (it holds {LOCK} now)"
        assert [shown for shown in out.splitlines() if shown.startswith("leader")] == [line]
        assert main(["-c", str(config), "status", "--format", "json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert document["leader"] == {
            "lock_held": True,
            "lock_holder": f"database backend pid {backend_of(first)}",
            "recorded": {"host": HOST, "pid": PID, "since": "2026-03-02T09:00:00+00:00"},
            "recorded_is_holder": True,
        }


class TestReadyz:
    """``/readyz`` says whether this replica leads, when the daemon tells the app."""

    @pytest.mark.parametrize("leading", [True, False])
    def test_ready_says_leader(
        self, engine: Engine, make_settings: Any, clock: SettableClock, leading: bool
    ) -> None:
        runtime = runtime_for(engine, http_settings(make_settings), clock)
        holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=clock)
        holder.record_success(runtime.load_rules())
        app = create_app(runtime, holder, leading=lambda: leading)
        response = Api(app).get("/readyz", auth=False)
        assert response.status_code == 200
        assert response.json() == {
            "status": "ready",
            "rule_version": holder.current().version,
            "leader": leading,
        }


class TestSQLite:
    """The one daemon on a SQLite file is named by its lock file and record."""

    def test_status_names_the_daemon_holding_the_file(
        self, tmp_path: Path, sqlite_template: Path
    ) -> None:
        database = tmp_path / "state" / "leadflow.db"
        database.parent.mkdir()
        shutil.copy(sqlite_template, database)
        store = create_store_engine(f"sqlite:///{database}")
        try:
            single = SingleInstance(database, SettableClock(T0))
            assert leader_line(current_leader(store)) == f"leader: none, no daemon holds {LOCK}"
            single.acquire()
            record_leader(store, single.record())
            assert leader_gauge() == 1.0
            assert current_leader(store) == CurrentLeader(
                f"pid {PID}", LeaderRecord(HOST, PID, T0), True
            )
            assert leader_line(current_leader(store)) == (
                f"leader: host {HOST}, pid {PID}, since 2026-03-02 09:00 UTC (it holds {LOCK} now)"
            )
            single.release()
            assert leader_gauge() == 0.0
            assert leader_line(current_leader(store)) == (
                f"leader: none, no daemon holds {LOCK}; the last was host {HOST}, pid {PID}, "
                "since 2026-03-02 09:00 UTC"
            )
        finally:
            store.dispose()


HTTP_CONFIG = """\
mail:
  transport: maildir
  maildir: state/maildir
  from: "leadflow <leadflow@example.com>"
  poll_interval: 0.2s
http:
  allow_anonymous: true
calendar:
  timezone: UTC
scheduler:
  shutdown_grace: 5s
"""


def scrape(replica: Replica) -> tuple[float | None, bool | None]:
    """The replica's ``leadflow_leader`` and ``/readyz``'s ``leader``."""
    base = f"http://127.0.0.1:{replica.http_port}"
    gauge = None
    for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
        if line.startswith("leadflow_leader "):
            gauge = float(line.split()[1])
    return gauge, httpx.get(f"{base}/readyz", timeout=5).json().get("leader")


@pytest.mark.postgres
@pytest.mark.slow
def test_two_daemons_each_say_whether_they_lead(tmp_path: Path, postgres_url: str) -> None:
    """Two daemon processes on one store: the leader's /metrics says 1 and its /readyz true,
    the other's 0 and false; ``status`` names the leader's pid. Killed, the other takes over."""
    store = create_store_engine(postgres_url)
    try:
        empty_every_table(store)
        seed(store, datetime.now(UTC) - timedelta(days=1))
    finally:
        store.dispose()
    rule = RULE.format(threshold=60)
    first = Replica(
        make_project(tmp_path / "a", HTTP_CONFIG, rule),
        postgres_url,
        LEADFLOW_HTTP__PORT=str(free_port()),
    )
    second: Replica | None = None
    try:
        wait_until(lambda: first.events("leadership_acquired"), "the first to lead", 20)
        second = Replica(
            make_project(tmp_path / "b", HTTP_CONFIG, rule),
            postgres_url,
            LEADFLOW_HTTP__PORT=str(free_port()),
        )
        wait_until(lambda: second and second.events("daemon_started"), "the second to start", 20)
        wait_until(lambda: scrape(first) == (1.0, True), "the leader's gauge", 10)
        assert scrape(second) == (0.0, False)
        engine = create_store_engine(postgres_url)
        try:
            shown = current_leader(engine)
            assert shown.record is not None
            assert (shown.record.host, shown.record.pid, shown.recorded_holder) == (
                HOST,
                first.pid,
                True,
            )
            first.kill()
            wait_until(lambda: scrape(second) == (1.0, True), "the second to lead", 20)
            shown = current_leader(engine)
            assert shown.record is not None
            assert (shown.record.pid, shown.recorded_holder) == (second.pid, True)
        finally:
            engine.dispose()
    finally:
        first.kill()
        if second is not None:
            second.kill()
