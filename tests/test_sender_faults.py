"""The sender and the job catch-up under faults (regressions of the fault tests' fixes).

Pins: an outcome that cannot be recorded because the database went away is retried until it
is, so a delivered message is never left ``sending`` to be sent again; a claimed message whose
lease would end before its delivery could time out is given back undelivered, not sent beside
the sender that claims it next; a lease not longer than a delivery's longest time (twice
``smtp.timeout`` and ``smtp.data_done_timeout``) is a config error; a replica that becomes
leader runs the due rules at once instead of at its next tick.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from structlog.testing import capture_logs

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.engine.runtime import Runtime
from leadflow.errors import ConfigError
from leadflow.mail.transports import transport_for
from leadflow.outbox.delivery import drain
from leadflow.rule_language.model import RuleSet
from leadflow.service.channels import channels_for
from leadflow.service.daemon_ticks import Evaluator
from leadflow.service.jobs import FUNNEL_TICK_JOB, RuleJobs, build_scheduler, rule_job_id
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.settings import Settings
from leadflow.store.database import create_store_engine
from leadflow.store.tables import RULE_RUNS
from tests.conftest import empty_every_table
from tests.fault_proxy import FaultProxy, fault_proxy
from tests.mail_support import (
    ScriptedHandler,
    add_lead,
    add_rep,
    outbox_rows,
    queue_backlog,
    smtp_server,
    write_templates,
)
from tests.replica_support import postgres_port, via
from tests.test_mail_sender import enqueue


class CuttingHandler(ScriptedHandler):
    """Accepts each message, but first cuts the database proxy for ``outage`` seconds; with a
    ``clock``, the outage lasts ``skip`` on it (longer than a lease, say)."""

    def __init__(
        self,
        proxy: FaultProxy,
        outage: float,
        clock: SettableClock | None = None,
        skip: timedelta = timedelta(),
    ) -> None:
        super().__init__()
        self.proxy = proxy
        self.outage = outage
        self.clock = clock
        self.skip = skip

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.received:
            self.proxy.cut()
            if self.clock is not None:
                self.clock.advance(self.skip)
            threading.Timer(self.outage, self.proxy.restore).start()
        return await super().handle_DATA(server, session, envelope)


def smtp_settings(make_settings: Any, tmp_path: Path, port: int, **more: Any) -> Settings:
    write_templates(tmp_path / "templates")
    settings: Settings = make_settings(
        **{
            "mail.transport": "smtp",
            "mail.from": "Leadflow <leadflow@example.com>",
            "mail.smtp.host": "127.0.0.1",
            "mail.smtp.port": port,
            "mail.smtp.timeout": "2s",
            "mail.smtp.rate_per_second": 1000,
            "mail.poll_interval": "0.1s",
            **more,
        }
    )
    return settings


@pytest.mark.postgres
class TestRecorderOutlastsTheDatabase:
    """A delivered message is recorded ``sent`` once the database is back, and sent once."""

    @pytest.fixture
    def engine(self, postgres_url: str) -> Iterator[Engine]:
        engine = create_store_engine(postgres_url)
        empty_every_table(engine)
        yield engine
        engine.dispose()

    @pytest.mark.parametrize("lease_runs_out", [False, True])
    def test_outcome_recorded_after_the_outage(
        self, lease_runs_out: bool, postgres_url: str, engine: Engine, tmp_path: Path
    ) -> None:
        """With ``lease_runs_out`` the outage outlasts the message's lease: it is due again when
        the database returns, and only the sender's waiting for its record keeps it from being
        claimed and sent a second time."""

        def make_settings(**overrides: Any) -> Settings:
            (tmp_path / "config.yaml").write_text("", encoding="utf-8")
            values = {"database.url": postgres_url, **overrides}
            return load_settings(tmp_path / "config.yaml", env={}, overrides=values).settings

        now = datetime.now(UTC)
        clock = SettableClock(now)
        add_lead(engine, now, owner_id=add_rep(engine, now))
        with fault_proxy("127.0.0.1", postgres_port(postgres_url)) as proxy:
            skip = timedelta(minutes=10) if lease_runs_out else timedelta()
            handler = CuttingHandler(proxy, outage=1.5, clock=clock, skip=skip)
            with smtp_server(handler) as port:
                settings = smtp_settings(make_settings, tmp_path, port)
                enqueue(engine, settings, clock, key="mql:L-1")
                proxied = create_store_engine(via(postgres_url, proxy.port), connect_timeout=2)
                try:
                    with capture_logs() as logs:
                        asyncio.run(self._drain_until_sent(proxied, engine, settings, clock))
                finally:
                    proxied.dispose()
        assert [row.status for row in outbox_rows(engine)] == ["sent"]
        assert len(handler.received) == 1
        failed = [e for e in logs if e["event"] == "outbox_record_failed"]
        assert failed
        assert failed[0]["outcomes"] == 1

    async def _drain_until_sent(
        self, proxied: Engine, direct: Engine, settings: Settings, clock: SettableClock
    ) -> None:
        stop = asyncio.Event()
        transport = transport_for(settings)

        async def watch() -> None:
            async with asyncio.timeout(20):
                # Polling the store: nothing in this process signals the commit.
                while [row.status for row in outbox_rows(direct)] != ["sent"]:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            stop.set()

        try:
            channels = channels_for(settings, transport)
            await asyncio.gather(
                drain(proxied, settings, clock, channels, once=False, stop=stop), watch()
            )
        finally:
            await transport.close()


class AdvancingHandler(ScriptedHandler):
    """Moves the sender's clock on by ``step`` at every message it accepts."""

    def __init__(self, clock: SettableClock, step: timedelta) -> None:
        super().__init__()
        self.clock = clock
        self.step = step

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.clock.advance(self.step)
        return await super().handle_DATA(server, session, envelope)


class TestLeaseGuard:
    """A message whose lease ran too short while it waited is given back, not delivered."""

    @pytest.fixture
    def clock(self) -> SettableClock:
        return SettableClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))

    @pytest.fixture
    def handler(self, clock: SettableClock) -> Iterator[tuple[AdvancingHandler, int]]:
        handler = AdvancingHandler(clock, timedelta(seconds=60))
        with smtp_server(handler) as port:
            yield handler, port

    def test_late_message_released_then_sent_once(
        self,
        engine: Engine,
        make_settings: Any,
        tmp_path: Path,
        clock: SettableClock,
        handler: tuple[AdvancingHandler, int],
    ) -> None:
        sink, port = handler
        settings = smtp_settings(
            make_settings,
            tmp_path,
            port,
            **{
                "mail.lease": "63s",
                "mail.concurrency": 1,
                "mail.smtp.connections": 1,
                "mail.smtp.data_done_timeout": "2s",
            },
        )
        add_lead(engine, clock.now(), owner_id=add_rep(engine, clock.now()))
        first = enqueue(engine, settings, clock, key="mql:L-1:a")
        second = enqueue(engine, settings, clock, key="mql:L-1:b")
        with capture_logs() as logs:
            report = asyncio.run(self._send_once(engine, settings, clock))
        # Both claimed at 09:00:00 until 09:01:03. The first is delivered at once; its
        # delivery moves the clock to 09:01:00, when a delivery (up to 2 x 2 s + 2 s) of the second
        # would end after its lease: it is given back, undelivered and its attempt uncounted.
        assert (report.claimed, report.sent) == (2, 1)
        rows = {row.id: (row.status, row.attempts) for row in outbox_rows(engine)}
        assert rows == {first: ("sent", 1), second: ("pending", 0)}
        released = [e for e in logs if e["event"] == "outbox_lease_too_short"]
        assert [e["outbox_id"] for e in released] == [second]
        clock.advance(timedelta(minutes=1))
        assert asyncio.run(self._send_once(engine, settings, clock)).sent == 1
        ids = [r.message["Message-ID"] for r in sink.received]
        assert len(ids) == len(set(ids)) == 2

    async def _send_once(self, engine: Engine, settings: Settings, clock: SettableClock) -> Any:
        transport = transport_for(settings)
        try:
            return await drain(
                engine, settings, clock, channels_for(settings, transport), once=True
            )
        finally:
            await transport.close()

    def test_lease_shorter_than_a_delivery_is_refused(self, make_settings: Any) -> None:
        with pytest.raises(ConfigError) as refused:
            make_settings(
                **{"mail.transport": "smtp", "mail.lease": "5m", "mail.smtp.timeout": "30s"}
            )
        assert str(refused.value).endswith(
            "mail.lease: must be longer than a delivery's longest time, twice smtp.timeout and "
            "smtp.data_done_timeout (2 x 30s + 10m = 11m); got 5m"
        )

    def test_the_default_lease_outlasts_the_default_longest_delivery(
        self, make_settings: Any
    ) -> None:
        mail = make_settings().mail
        assert (mail.lease, mail.smtp.longest_delivery) == (
            timedelta(minutes=15),
            timedelta(minutes=11),
        )


CATCH_UP_RULES = """\
rules:
  - id: stale
    every: 1h
    when: {field: score, at_least: 60}
    actions: [{set_stage: mql}]
  - id: fresh
    every: 1h
    when: {field: score, at_least: 90}
    actions: [{set_stage: mql}]
"""
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class TestCatchUpOnLeadership:
    """On becoming leader, a rule left due (its last run is old or unrecorded) runs now; a rule
    another replica ran recently keeps its rhythm."""

    def test_due_rules_move_to_now(
        self, tmp_path: Path, make_settings: Any, engine: Engine
    ) -> None:
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "r.yaml").write_text(CATCH_UP_RULES, encoding="utf-8")
        settings = make_settings(**{"paths.templates": str(tmp_path / "templates")})
        (tmp_path / "templates").mkdir()
        runtime = Runtime.build(engine, settings, SettableClock(NOW))
        rule_set = runtime.load_rules()
        with engine.begin() as connection:
            connection.execute(
                insert(RULE_RUNS),
                [
                    {
                        "rule_id": "fresh",
                        "rule_version": rule_set.version,
                        "last_started_at": NOW - timedelta(minutes=10),
                        "last_status": "ok",
                        "matched": 0,
                    }
                ],
            )
        due, next_runs = asyncio.run(self._take_over(runtime, rule_set))
        assert due == ["stale"]
        assert next_runs["stale"] < timedelta(seconds=1)
        assert timedelta(minutes=49) < next_runs["fresh"] <= timedelta(minutes=50)
        assert next_runs[FUNNEL_TICK_JOB] < timedelta(seconds=1)

    async def _take_over(
        self, runtime: Runtime, rule_set: RuleSet
    ) -> tuple[list[str], dict[str, timedelta]]:
        holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=runtime.clock)
        holder.record_success(rule_set)
        scheduler = build_scheduler(runtime.settings.scheduler, asyncio.get_running_loop())
        scheduler.start(paused=True)  # the jobs' times are looked at, never run
        try:
            jobs = RuleJobs(scheduler, Evaluator(runtime, holder, steps=[]))
            await jobs.sync(rule_set)
            jobs.add_funnel_tick(timedelta(hours=1))
            # A replica that was not the leader has ticks somewhere in the future:
            for job in scheduler.get_jobs():
                job.modify(next_run_time=datetime.now(UTC) + timedelta(minutes=30))
            due = await jobs.catch_up(rule_set)
            wall = datetime.now(UTC)
            next_runs = {
                job_id.removeprefix("rule:"): scheduler.get_job(job_id).next_run_time - wall
                for job_id in (rule_job_id("stale"), rule_job_id("fresh"), FUNNEL_TICK_JOB)
            }
            return due, next_runs
        finally:
            scheduler.shutdown(wait=False)


class TestStopWithBacklog:
    """A stop with a backlog behind a rate-limited relay (14 messages/s, a common provider
    limit): the claims no worker started go back at once, so nothing waits out its lease."""

    BACKLOG = 300

    def test_unstarted_claims_are_handed_back_within_the_grace(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        handler = ScriptedHandler(delay=0.02)  # a relay that takes its time over each reply
        now = datetime.now(UTC)
        clock = SettableClock(now)
        with smtp_server(handler) as port:
            settings = smtp_settings(
                make_settings,
                tmp_path,
                port,
                **{"mail.smtp.rate_per_second": 14, "mail.batch_size": 100},
            )
            queue_backlog(engine, self.BACKLOG, now)
            grace = settings.scheduler.shutdown_grace.total_seconds()
            stopped_in, finished = asyncio.run(self._stop_after(engine, settings, clock, handler))
        rows = outbox_rows(engine)
        statuses = Counter(row.status for row in rows)
        assert finished, "the sender did not stop within the grace; the daemon cancels it there"
        assert stopped_in < grace
        assert statuses["sending"] == 0
        assert statuses["sent"] == len(handler.received) < self.BACKLOG
        assert statuses["pending"] == self.BACKLOG - statuses["sent"]
        assert {row.attempts for row in rows if row.status == "pending"} == {0}
        delivered = Counter(r.message["Message-ID"] for r in handler.received)
        assert set(delivered.values()) == {1}

    async def _stop_after(
        self, engine: Engine, settings: Settings, clock: SettableClock, handler: ScriptedHandler
    ) -> tuple[float, bool]:
        """Stop the sender once 20 messages arrived; (seconds to stop, stopped in the grace)."""
        stop = asyncio.Event()
        transport = transport_for(settings)
        channels = channels_for(settings, transport)
        task = asyncio.create_task(drain(engine, settings, clock, channels, once=False, stop=stop))
        async with asyncio.timeout(30):
            while len(handler.received) < 20:  # noqa: ASYNC110 (the server thread fills it)
                await asyncio.sleep(0.02)
        loop = asyncio.get_running_loop()
        stop_at = loop.time()
        stop.set()
        done, _ = await asyncio.wait(
            [task], timeout=settings.scheduler.shutdown_grace.total_seconds()
        )
        if not done:  # what the daemon does when the grace runs out
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await transport.close()
        return loop.time() - stop_at, bool(done)
