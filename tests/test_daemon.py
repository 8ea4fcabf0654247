"""``leadflow daemon`` as it is run: a real process on a real store, maildir and rules folder.

Pins: a rule acts on exactly the matching leads and assigns the pool's rep; the assignment
email lands in the maildir; a saved rule change takes effect; a broken rule file is refused
(and logged) while the old rules keep acting; SIGTERM exits 0 within 10 s leaving nothing
half-written; after downtime a missed rule runs once, not once per missed tick.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, insert, select
from structlog.testing import capture_logs

from leadflow.clock import SettableClock
from leadflow.engine.evaluation import RuleOutcome
from leadflow.engine.rule_runs import first_run_delay
from leadflow.engine.runtime import Runtime, StopSignal
from leadflow.rule_language.model import RuleSet
from leadflow.service.daemon_ticks import Evaluator
from leadflow.service.jobs import RuleJobs, build_scheduler, rule_job_id
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.store.database import create_store_engine
from leadflow.store.tables import AUDIT, LEADS, OUTBOX, REPS, RULE_RUNS
from tests.replica_support import REPO, Replica, make_project, wait_until

RULE = """\
rules:
  - id: hot-leads
    description: Leads at or above the threshold become MQLs of the inbound pool.
    every: 1s
    reentry: once
    when:
      all:
        - field: score
          at_least: {threshold}
        - field: stage
          equals: lead
    actions:
      - set_stage: mql
      - assign: {{pool: inbound}}
      - notify: {{to: owner, template: mql_assigned}}
"""

BROKEN = """\
rules:
  - id: broken
    every: 1s
    colour: red
    when: {field: score, at_least: 1}
    actions: [{set_stage: mql}]
"""

CONFIG = """\
mail:
  transport: maildir
  maildir: state/maildir
  from: "leadflow <leadflow@example.com>"
  poll_interval: 0.2s
http:
  enabled: false  # the HTTP side has its own process test, tests/test_http_daemon.py
calendar:
  timezone: UTC
scheduler:
  shutdown_grace: 5s
"""


def seed(engine: Engine, now: datetime) -> None:
    rep = {"timezone": "UTC", "active": True, "created_at": now, "updated_at": now}
    lead = {
        "stage": "lead",
        "stage_entered_at": now,
        "created_at": now,
        "updated_at": now,
        "attributes": {},
    }
    with engine.begin() as connection:
        connection.execute(
            insert(REPS),
            [
                {
                    **rep,
                    "external_id": "r1",
                    "name": "Rita Rep",
                    "email": "rita@example.com",
                    "pools": ["inbound"],
                },
                {
                    **rep,
                    "external_id": "r2",
                    "name": "Raj Rep",
                    "email": "raj@example.com",
                    "pools": ["east"],
                },
            ],
        )
        connection.execute(
            insert(LEADS),
            [
                {
                    **lead,
                    "external_id": "L1",
                    "name": "Ann Lee",
                    "company": "Acme",
                    "email": "ann@acme.test",
                    "score": 70,
                },
                {
                    **lead,
                    "external_id": "L2",
                    "name": "Bob Ng",
                    "company": "Beta",
                    "email": "bob@beta.test",
                    "score": 65,
                },
                {
                    **lead,
                    "external_id": "L3",
                    "name": "Cy Po",
                    "company": "Gamma",
                    "email": "cy@gamma.test",
                    "score": 30,
                },
                {
                    **lead,
                    "external_id": "L4",
                    "name": "Di Wu",
                    "company": "Delta",
                    "email": "di@delta.test",
                    "score": 90,
                    "stage": "customer",
                },
            ],
        )


def leads(engine: Engine) -> dict[str, tuple[str, str | None]]:
    """Each lead's stage and its owner's external id."""
    query = (
        select(LEADS.c.external_id, LEADS.c.stage, REPS.c.external_id.label("owner"))
        .select_from(LEADS.outerjoin(REPS, LEADS.c.owner_id == REPS.c.id))
        .order_by(LEADS.c.external_id)
    )
    with engine.connect() as connection:
        return {row.external_id: (row.stage, row.owner) for row in connection.execute(query)}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder: config.yaml, rules/ with one rule, the repository's templates."""
    return make_project(tmp_path, CONFIG, RULE.format(threshold=60))


@pytest.fixture
def running(project: Path, store_url: str) -> Iterator[tuple[Replica, Engine]]:
    """The daemon on a seeded store, and a plain engine on that store for the test's checks."""
    store = create_store_engine(store_url)
    seed(store, datetime.now(UTC) - timedelta(days=1))
    store.dispose()
    # Not the store's engine: on SQLite it begins every transaction IMMEDIATE (the write
    # lock), and a busy daemon's back-to-back batches can keep that from a poller for seconds.
    engine = create_engine(store_url)
    daemon = Replica(project, store_url)
    try:
        yield daemon, engine
    finally:
        daemon.kill()
        engine.dispose()


def delivered(maildir: Path) -> list[EmailMessage]:
    messages = []
    for path in sorted((maildir / "new").glob("*.eml")) if (maildir / "new").is_dir() else []:
        parsed = email.message_from_bytes(path.read_bytes(), policy=default)
        assert isinstance(parsed, EmailMessage)
        messages.append(parsed)
    return messages


@pytest.mark.slow
class TestDaemonProcess:
    """The daemon schedules the rules, sends their email, follows rule edits, stops cleanly."""

    @pytest.mark.slow
    def test_acts_reloads_refuses_broken_rules_and_stops_on_sigterm(
        self, running: tuple[Replica, Engine], project: Path
    ) -> None:
        daemon, engine = running
        started = wait_until(lambda: daemon.events("daemon_started"), "daemon_started", 30)
        assert started[0]["rules"] == ["hot-leads"]

        wait_until(lambda: leads(engine)["L2"] == ("mql", "r1"), "L1 and L2 to become MQLs", 10)
        assert leads(engine) == {
            "L1": ("mql", "r1"),
            "L2": ("mql", "r1"),
            "L3": ("lead", None),
            "L4": ("customer", None),
        }

        maildir = project / "state" / "maildir"
        messages = wait_until(
            lambda: [m for m in [delivered(maildir)] if len(m) == 2], "the 2 assignment emails", 10
        )[0]
        assert sorted((m["To"], m["Subject"]) for m in messages) == [
            ("rita@example.com", "New MQL: Ann Lee at Acme (score 70)"),
            ("rita@example.com", "New MQL: Bob Ng at Beta (score 65)"),
        ]

        # A saved change is applied: the lower threshold now takes L3.
        (project / "rules" / "hot.yaml").write_text(RULE.format(threshold=25), encoding="utf-8")
        wait_until(lambda: leads(engine)["L3"] == ("mql", "r1"), "the changed rule to take L3", 10)

        # A broken file is refused, logged with its location, and the old rules keep acting.
        (project / "rules" / "broken.yaml").write_text(BROKEN, encoding="utf-8")
        failed = wait_until(lambda: daemon.events("rules_reload_failed"), "the refused reload", 10)
        assert failed[0]["errors"] == [
            "rules/broken.yaml:4:5: rule broken: unknown key 'colour'; expected one of "
            "actions, cron, description, enabled, every, id, reentry, subject, timezone, when"
        ]
        now = datetime.now(UTC)
        with engine.begin() as connection:
            connection.execute(
                insert(LEADS).values(
                    external_id="L5",
                    name="Eve Ox",
                    score=40,
                    stage="lead",
                    attributes={},
                    stage_entered_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
        wait_until(lambda: leads(engine)["L5"] == ("mql", "r1"), "the old rules to take L5", 10)

        stopping = time.monotonic()
        assert daemon.terminate(timeout=10) == 0
        assert time.monotonic() - stopping < 10
        assert [e["reason"] for e in daemon.events("daemon_stopping")] == ["SIGTERM"]
        assert len(daemon.events("daemon_stopped")) == 1
        assert daemon.events("daemon_crashed") == []

        # Nothing half-written: every MQL has its whole audit trail, no email is mid-send.
        with engine.connect() as connection:
            actions = sorted(
                (row.external_id, row.action)
                for row in connection.execute(
                    select(LEADS.c.external_id, AUDIT.c.action).join(
                        LEADS, AUDIT.c.lead_id == LEADS.c.id
                    )
                )
            )
            statuses = set(connection.execute(select(OUTBOX.c.status)).scalars())
        assert actions == sorted(
            (lead, action)
            for lead in ("L1", "L2", "L3", "L5")
            for action in ("assigned", "email_queued", "stage_changed")
        )
        assert statuses <= {"pending", "sent"}
        assert list((maildir / "tmp").iterdir()) == []


@pytest.mark.slow
class TestShutdownMidEvaluation:
    """SIGTERM during a long evaluation ends it after the batch in flight: whole batches, exit 0,
    and the run is not recorded, so the rule is due again at the next start; only how far it
    got is, so that run goes on after the leads it went through."""

    def test_sigterm_stops_between_batches(self, project: Path, sqlite_template: Path) -> None:
        (project / "state").mkdir()
        shutil.copy(sqlite_template, project / "state" / "leadflow.db")
        url = f"sqlite:///{project / 'state' / 'leadflow.db'}"
        (project / "config.yaml").write_text(CONFIG + "  evaluation_batch: 50\n", encoding="utf-8")
        engine = create_store_engine(url)
        now = datetime.now(UTC)
        seed(engine, now)
        with engine.begin() as connection:
            connection.execute(
                insert(LEADS),
                [
                    {
                        "external_id": f"M{i:04}",
                        "score": 80,
                        "stage": "lead",
                        "attributes": {},
                        "stage_entered_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(3000)
                ],
            )
        engine.dispose()
        # A plain reader: the store's engine begins every transaction IMMEDIATE (the write
        # lock), which back-to-back evaluation batches would keep from it for seconds.
        reader = create_engine(url)
        daemon = Replica(project, url)
        try:
            wait_until(lambda: "mql" in {s for s, _ in leads(reader).values()}, "the first MQL", 30)
            stopping = time.monotonic()
            assert daemon.terminate(timeout=10) == 0
            assert time.monotonic() - stopping < 10
            states = leads(reader)
            with reader.connect() as connection:
                runs = connection.execute(
                    select(
                        RULE_RUNS.c.rule_id,
                        RULE_RUNS.c.last_status,
                        RULE_RUNS.c.last_started_at,
                        RULE_RUNS.c.unfinished_through,
                    )
                ).all()
                gone_through = (
                    connection.execute(
                        select(LEADS.c.external_id).where(
                            LEADS.c.id <= runs[0].unfinished_through, LEADS.c.stage == "mql"
                        )
                    )
                    .scalars()
                    .all()
                )
        finally:
            daemon.kill()
            reader.dispose()
        mqls = [owner for stage, owner in states.values() if stage == "mql"]
        assert 0 < len(mqls) < 3002
        assert len(mqls) % 50 == 0
        assert set(mqls) == {"r1"}
        [run] = runs
        assert (run.rule_id, run.last_status, run.last_started_at) == ("hot-leads", "never", None)
        assert sorted(gone_through) == sorted(
            lead for lead, (stage, _owner) in states.items() if stage == "mql"
        )
        [evaluated] = daemon.events("rule_evaluated")
        assert (evaluated["interrupted"], evaluated["fired"]) == (True, len(mqls))


class TestRefusedStart:
    """With no good rule set to run, the daemon does not start: problems printed, exit 1."""

    @pytest.mark.slow
    def test_broken_rules_at_start(self, project: Path, store_url: str) -> None:
        (project / "rules" / "broken.yaml").write_text(BROKEN, encoding="utf-8")
        daemon = Replica(project, store_url)
        try:
            assert daemon.process.wait(timeout=20) == 1
        finally:
            daemon.kill()
        lines = daemon.log_path.read_text(encoding="utf-8").splitlines()
        assert lines[-1] == (
            "error: rules/broken.yaml:4:5: rule broken: unknown key 'colour'; expected one of "
            "actions, cron, description, enabled, every, id, reentry, subject, timezone, when"
        )
        assert [e["event"] for e in daemon.events()] == ["daemon_not_started"]


NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

SCORE_RULE = """\
rules:
  - id: warm-up
    every: 1m
    reentry: every_time
    when: {field: stage, equals: lead}
    actions: [{adjust_score: 1}]
"""


class ObservedEvaluator(Evaluator):
    """An evaluator that says when an evaluation finished, so the test awaits instead of polling."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.evaluated = asyncio.Event()

    async def evaluate(self, rule_id: str) -> RuleOutcome | None:
        outcome = await super().evaluate(rule_id)
        self.evaluated.set()
        return outcome


class TestStartupCatchUp:
    """After downtime a due rule runs once at start-up, then waits a whole interval."""

    def test_first_run_delay(self, tmp_path: Path, make_settings: Any, engine: Engine) -> None:
        rule_set = self._rule_set(tmp_path, make_settings, engine)
        rule = rule_set.rules[0]
        assert first_run_delay(rule, None, NOW) == timedelta(0)
        assert first_run_delay(rule, NOW - timedelta(hours=1), NOW) == timedelta(0)
        assert first_run_delay(rule, NOW - timedelta(minutes=1), NOW) == timedelta(0)
        assert first_run_delay(rule, NOW - timedelta(seconds=20), NOW) == timedelta(seconds=40)

    def test_sixty_missed_ticks_run_once(
        self, tmp_path: Path, make_settings: Any, engine: Engine
    ) -> None:
        rule_set = self._rule_set(tmp_path, make_settings, engine)
        seed(engine, NOW - timedelta(days=1))
        with engine.begin() as connection:
            connection.execute(
                insert(RULE_RUNS).values(
                    rule_id="warm-up",
                    rule_version=rule_set.version,
                    last_started_at=NOW - timedelta(hours=1),
                    last_status="ok",
                    matched=0,
                )
            )
        runtime = Runtime.build(engine, make_settings(), SettableClock(NOW))
        next_tick_in = asyncio.run(self._start_and_run_once(runtime, rule_set))
        assert timedelta(seconds=55) < next_tick_in <= timedelta(minutes=1)
        with engine.connect() as connection:
            scores = dict(connection.execute(select(LEADS.c.external_id, LEADS.c.score)).all())
            run = connection.execute(select(RULE_RUNS)).one()
        assert scores == {"L1": 71, "L2": 66, "L3": 31, "L4": 90}
        assert (run.last_started_at, run.last_status) == (NOW, "ok")

    async def _start_and_run_once(self, runtime: Runtime, rule_set: RuleSet) -> timedelta:
        holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=runtime.clock)
        holder.record_success(rule_set)
        evaluator = ObservedEvaluator(runtime, holder, steps=[])
        scheduler = build_scheduler(runtime.settings.scheduler, asyncio.get_running_loop())
        scheduler.start()
        try:
            await RuleJobs(scheduler, evaluator).sync(rule_set)
            async with asyncio.timeout(10):
                await evaluator.evaluated.wait()
            job = scheduler.get_job(rule_job_id("warm-up"))
            assert evaluator.counters.evaluations["warm-up"] == 1
            return job.next_run_time - datetime.now(UTC)  # type: ignore[no-any-return]
        finally:
            scheduler.shutdown(wait=False)

    def _rule_set(self, tmp_path: Path, make_settings: Any, engine: Engine) -> RuleSet:
        (tmp_path / "rules").mkdir(exist_ok=True)
        (tmp_path / "rules" / "warm.yaml").write_text(SCORE_RULE, encoding="utf-8")
        settings = make_settings(**{"paths.templates": str(REPO / "templates")})
        return Runtime.build(engine, settings, SettableClock(NOW)).load_rules()


class TestErrorBoundary:
    """A rule or funnel step that raises is logged with its id and counted; the daemon goes on."""

    def test_failing_rule_is_logged_and_counted(
        self, tmp_path: Path, make_settings: Any, engine: Engine
    ) -> None:
        rule_set = TestStartupCatchUp()._rule_set(tmp_path, make_settings, engine)
        unmigrated = create_store_engine(f"sqlite:///{tmp_path / 'empty.db'}")
        # Built on the migrated store (it reads the unsubscribe key there), then pointed at one
        # without tables: every evaluation fails on its first query.
        built = Runtime.build(engine, make_settings(), SettableClock(NOW))
        runtime = dataclasses.replace(built, engine=unmigrated)
        holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=runtime.clock)
        holder.record_success(rule_set)
        evaluator = Evaluator(runtime, holder, steps=[])
        try:
            with capture_logs() as logs:
                first = asyncio.run(evaluator.evaluate("warm-up"))
                second = asyncio.run(evaluator.evaluate("warm-up"))
        finally:
            unmigrated.dispose()
        assert first is not None
        assert second is not None
        assert first.error is not None
        assert first.error.startswith("OperationalError: (sqlite3.OperationalError) no such table")
        assert evaluator.counters.rule_failures == Counter({"warm-up": 2})
        assert [(e["event"], e["rule_id"]) for e in logs if e["log_level"] == "error"] == [
            ("rule_failed", "warm-up"),
            ("rule_run_not_recorded", "warm-up"),
            ("rule_failed", "warm-up"),
            ("rule_run_not_recorded", "warm-up"),
        ]

    def test_failing_funnel_step_does_not_stop_the_next(
        self, tmp_path: Path, make_settings: Any, engine: Engine
    ) -> None:
        rule_set = TestStartupCatchUp()._rule_set(tmp_path, make_settings, engine)
        holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=SettableClock(NOW))
        holder.record_success(rule_set)

        def broken(
            runtime: Runtime, rule_set: RuleSet, now: datetime, *, stop: StopSignal | None = None
        ) -> int:
            msg = "boom"
            raise RuntimeError(msg)

        def nurture(
            runtime: Runtime, rule_set: RuleSet, now: datetime, *, stop: StopSignal | None = None
        ) -> int:
            assert now == NOW
            return 3

        runtime = Runtime.build(engine, make_settings(), SettableClock(NOW))
        evaluator = Evaluator(runtime, holder, steps=[("sla", broken), ("nurture", nurture)])
        with capture_logs() as logs:
            handled = asyncio.run(evaluator.funnel_tick())
        assert handled == {"nurture": 3}
        assert evaluator.counters.funnel_failures == Counter({"sla": 1})
        assert [(e["event"], e.get("step")) for e in logs] == [
            ("funnel_step_failed", "sla"),
            ("funnel_ticked", None),
        ]


class TestHangup:
    """SIGHUP (a closed terminal, or ``kill -HUP`` sent to reload as to other daemons) stops the
    daemon as SIGTERM does. Its default action ended the process at once: no log line, the
    batch in flight cut, the claimed messages held until their lease ran out. Started under
    ``nohup`` (SIGHUP ignored), it keeps running."""

    @pytest.mark.slow
    def test_sighup_stops_cleanly(self, running: tuple[Replica, Engine]) -> None:
        daemon, _ = running
        wait_until(lambda: daemon.has("daemon_started"), "the start", 30)
        daemon.process.send_signal(signal.SIGHUP)
        assert daemon.process.wait(timeout=15) == 0
        assert [e["reason"] for e in daemon.events("daemon_stopping")] == ["SIGHUP"]
        assert daemon.has("daemon_stopped")

    @pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
    @pytest.mark.slow
    def test_under_nohup_sighup_is_ignored(self, project: Path, store_url: str) -> None:
        daemon = Replica(
            project, store_url, command=("nohup", sys.executable, str(REPO / "daemon.py"))
        )
        try:
            wait_until(lambda: daemon.has("daemon_started"), "the start", 30)
            daemon.process.send_signal(signal.SIGHUP)
            time.sleep(1)
            assert daemon.alive
            assert daemon.terminate(timeout=15) == 0
            assert [e["reason"] for e in daemon.events("daemon_stopping")] == ["SIGTERM"]
        finally:
            daemon.kill()
