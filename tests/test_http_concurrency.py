"""Many clients at once: overlapping batches, a pool with no connection to spare.

Each client is a thread of its own calling the application in-process (its own event loop), so
their transactions overlap on the store as those of clients of the daemon do.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from leadflow.clock import SettableClock
from leadflow.store.database import create_store_engine
from leadflow.store.tables import ACTIVITIES, LEADS
from tests.http_support import Api, build_app, http_settings, runtime_for

CLIENTS = 20
RECORDS = 1000
"""Enough that the clients' writes overlap every time (with 200 they overlapped in some runs)."""


@pytest.fixture
def api(store_url: str, make_settings: Any, clock: SettableClock) -> Iterator[Api]:
    """The application on an engine of its own, with a connection for every client (the
    tests' ``engine`` holds and watches the store beside it)."""
    settings = http_settings(make_settings, **{"http.max_body_bytes": 1_000_000})
    wide = create_store_engine(store_url, pool_size=CLIENTS)
    app, _holder = build_app(runtime_for(wide, settings, clock))
    yield Api(app)
    wide.dispose()


@contextmanager
def _writes_queued(engine: Engine, table: str, waiting: int) -> Iterator[Callable[[], None]]:
    """On PostgreSQL, ``table`` locked against writes until ``release`` sees ``waiting``
    transactions wait for it, then released: their writes start together, as they do on a
    busy server, instead of each finishing before the next thread is scheduled."""
    if engine.dialect.name != "postgresql":
        yield lambda: None
        return
    with engine.connect() as connection:
        held = connection.begin()
        connection.exec_driver_sql(f"LOCK TABLE {table} IN SHARE MODE")

        def release() -> None:
            count = f"SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '{table}'::regclass"
            deadline = time.monotonic() + 60
            with engine.connect() as watcher:
                while watcher.exec_driver_sql(count).scalar_one() < waiting:
                    assert time.monotonic() < deadline, "the writers never queued"
                    time.sleep(0.02)
            held.commit()

        yield release


def _at_once(
    calls: list[Callable[[], httpx.Response]], release: Callable[[], None] = lambda: None
) -> list[httpx.Response]:
    """Each call in a thread of its own, all started together (and ``release`` called once they
    are); their responses in order."""
    start = threading.Barrier(len(calls))
    responses: list[httpx.Response | None] = [None] * len(calls)

    def run(index: int) -> None:
        start.wait()
        responses[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    release()
    for thread in threads:
        thread.join(120)
    return [r for r in responses if r is not None]


def _shuffled(items: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    copy = list(items)
    random.Random(seed).shuffle(copy)
    return copy


def _answers(responses: list[httpx.Response]) -> list[tuple[int, str]]:
    return sorted((r.status_code, "" if r.status_code == 200 else r.text) for r in responses)


class TestOverlappingBatches:
    """20 clients posting the same records, each in an order of its own: PostgreSQL
    deadlocked on rows locked in body order, answering all but one with 503."""

    def test_leads_in_different_orders_are_all_written(self, api: Api, engine: Engine) -> None:
        leads = [{"external_id": f"DL{n}", "email": f"dl{n}@x.test"} for n in range(RECORDS)]
        bodies = [_shuffled(leads, seed) for seed in range(CLIENTS)]
        with _writes_queued(engine, "leads", CLIENTS) as release:
            responses = _at_once([lambda b=b: api.post("/v1/leads", b) for b in bodies], release)
        assert _answers(responses) == [(200, "")] * CLIENTS
        with engine.connect() as connection:
            rows = connection.execute(select(LEADS.c.external_id, LEADS.c.email)).all()
        assert sorted(tuple(r) for r in rows) == sorted(
            (f"DL{n}", f"dl{n}@x.test") for n in range(RECORDS)
        )

    def test_activities_in_different_orders_are_all_written(self, api: Api, engine: Engine) -> None:
        leads = [{"external_id": f"DL{n}"} for n in range(20)]
        assert api.post("/v1/leads", leads).status_code == 200
        activities = [
            {
                "external_id": f"ev-{n}",
                "lead": f"DL{n % 20}",
                "type": "call",
                "occurred_at": f"2026-03-02T08:{n % 60:02d}:00Z",
            }
            for n in range(RECORDS)
        ]
        bodies = [_shuffled(activities, seed) for seed in range(CLIENTS)]
        with _writes_queued(engine, "activities", CLIENTS) as release:
            calls = [lambda b=b: api.post("/v1/activities", b) for b in bodies]
            responses = _at_once(calls, release)
        assert _answers(responses) == [(200, "")] * CLIENTS
        with engine.connect() as connection:
            rows = connection.execute(
                select(ACTIVITIES.c.external_id, LEADS.c.external_id).join(
                    LEADS, LEADS.c.id == ACTIVITIES.c.lead_id
                )
            ).all()
            bumped = connection.execute(select(LEADS.c.external_id, LEADS.c.last_activity_at)).all()
        assert sorted(tuple(r) for r in rows) == sorted(
            (f"ev-{n}", f"DL{n % 20}") for n in range(RECORDS)
        )
        # Lead n is the lead of activities n, n + 20, ...: its newest is at the largest n % 60.
        newest = {f"DL{k}": max((n % 60) for n in range(k, RECORDS, 20)) for k in range(20)}
        assert sorted((key, at.minute) for key, at in bumped) == sorted(newest.items())


class TestPoolExhausted:
    """More requests than the pool has connections, all waiting on a locked store: those that
    wait for a connection longer than the pool's timeout were a 500 with a traceback."""

    POOL = 1 + 10  # pool_size 1, SQLAlchemy's overflow of 10
    REQUESTS = POOL + 2

    @pytest.fixture
    def store_url(self, postgres_store_url: str) -> str:
        """PostgreSQL only: SQLite's writers take turns before they take a connection."""
        return postgres_store_url

    def test_a_request_finding_no_connection_is_a_503(
        self,
        engine: Engine,
        make_settings: Any,
        clock: SettableClock,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        settings = http_settings(make_settings, **{"database.pool_size": 1})
        narrow = create_store_engine(engine.url, pool_size=1, pool_timeout=0.5)
        app, _holder = build_app(runtime_for(narrow, settings, clock))
        api = Api(app)
        leads = [{"external_id": f"L{n}"} for n in range(self.REQUESTS)]
        answered: list[tuple[str, httpx.Response]] = []

        def post(lead: dict[str, Any]) -> None:
            answered.append((lead["external_id"], api.post("/v1/leads", lead)))

        with engine.connect() as holder:
            held = holder.begin()
            holder.exec_driver_sql("LOCK TABLE leads IN SHARE MODE")
            threads = [threading.Thread(target=post, args=(lead,)) for lead in leads]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            # The two without a connection answer while the others still wait for the lock.
            while len(answered) < self.REQUESTS - self.POOL:
                assert time.monotonic() < deadline, "no request gave up on the pool"
                time.sleep(0.02)
            held.commit()
        for thread in threads:
            thread.join(60)
        narrow.dispose()
        body = '{"detail":"the database is unavailable; retry later"}'
        refused = sorted(
            (r.status_code, r.text, r.headers.get("Retry-After"))
            for _key, r in answered
            if r.status_code != 200
        )
        assert refused == [(503, body, "1"), (503, body, "1")]
        accepted = sorted(key for key, r in answered if r.status_code == 200)
        assert len(accepted) == self.POOL
        with engine.connect() as connection:
            stored = connection.execute(select(LEADS.c.external_id)).scalars().all()
        assert sorted(stored) == accepted
        out = capsys.readouterr().out
        assert "Traceback" not in out
        assert [
            line.split("error=")[1]
            for line in out.splitlines()
            if "http_database_unavailable" in line
        ] == [
            "'QueuePool limit of size 1 overflow 10 reached, connection timed out, timeout 0.50 (Background on this error at: https://sqlalche.me/e/21/3o7r)' path=/v1/leads"
        ] * 2
