"""Rule schedules: ``every:`` intervals and ``cron:`` times in an IANA timezone.

Pins: cron weekdays count as Debian's cron does (1-5 is Monday to Friday); a time skipped by a
spring-forward runs right after the change and a time repeated by a fall-back runs once; a rule
is due when its next time after its last start has come, and a long downtime runs it once; the
engine evaluates a cron rule exactly at its times when stepped hour by hour (on both stores);
the daemon schedules the job at the next cron time and reschedules it when the expression
changes.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console
from sqlalchemy import Engine, insert, select

from leadflow.cli.status_command import render_rules, rules_view
from leadflow.clock import SettableClock
from leadflow.engine.rule_runs import first_run_delay
from leadflow.engine.runtime import Runtime
from leadflow.engine.simulation import tick_over_range
from leadflow.engine.tick import run_due_rules
from leadflow.rule_language.model import RuleSet
from leadflow.rule_language.schedule import Schedule
from leadflow.service.daemon_ticks import Evaluator
from leadflow.service.jobs import RuleJobs, ScheduleTrigger, build_scheduler, rule_job_id
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.store.status import collect_status
from leadflow.store.tables import LEADS, RULE_RUNS
from tests.mail_support import add_lead

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 3, 6, 0, 0, tzinfo=UTC)  # a Friday
WEEKDAYS_9 = Schedule.crontab("0 9 * * 1-5", "Europe/Berlin")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN).astimezone(UTC)  # type: ignore[misc]


class TestCronTimes:
    def test_weekdays_are_monday_to_friday(self) -> None:
        friday_10 = berlin(2026, 3, 6, 10, 0)
        assert WEEKDAYS_9.next_run(friday_10) == berlin(2026, 3, 9, 9, 0)  # Monday
        assert WEEKDAYS_9.next_run(berlin(2026, 3, 9, 9, 0)) == berlin(2026, 3, 10, 9, 0)

    def test_spring_forward_runs_right_after_the_change(self) -> None:
        nightly = Schedule.crontab("30 2 * * *", "Europe/Berlin")
        # 29 March 2026: 02:00 CET becomes 03:00 CEST, so 02:30 does not exist.
        assert nightly.next_run(berlin(2026, 3, 28, 2, 30)) == datetime(
            2026, 3, 29, 1, 0, tzinfo=UTC
        )
        assert nightly.next_run(datetime(2026, 3, 29, 1, 0, tzinfo=UTC)) == berlin(
            2026, 3, 30, 2, 30
        )

    def test_fall_back_runs_the_repeated_time_once(self) -> None:
        nightly = Schedule.crontab("30 2 * * *", "Europe/Berlin")
        # 25 October 2026: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice.
        first = nightly.next_run(berlin(2026, 10, 24, 12, 0))
        assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
        assert nightly.next_run(first) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)

    def test_inside_the_repeated_hour_the_next_time_is_tomorrow(self) -> None:
        nightly = Schedule.crontab("30 2 * * *", "Europe/Berlin")
        second_0210 = datetime(2026, 10, 25, 1, 10, tzinfo=UTC)  # 02:10 CET, after 02:30 CEST
        assert nightly.next_run(second_0210) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
        assert not nightly.is_due(datetime(2026, 10, 25, 0, 30, tzinfo=UTC), second_0210)

    def test_the_daemon_trigger_fires_at_the_same_times(self) -> None:
        """APScheduler asks the trigger for each next time after the previous one."""
        trigger = ScheduleTrigger(Schedule.crontab("30 2 * * *", "Europe/Berlin"))
        fired, previous = [], None
        now = datetime(2026, 10, 24, 12, 0, tzinfo=UTC)
        for _ in range(3):
            previous = trigger.get_next_fire_time(previous, now)
            assert previous is not None
            fired.append(previous)
            now = previous
        assert fired == [
            datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
            datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
            datetime(2026, 10, 27, 1, 30, tzinfo=UTC),
        ]

    def test_due_once_its_next_time_has_come(self) -> None:
        started = berlin(2026, 3, 9, 9, 0, 4)
        assert WEEKDAYS_9.is_due(None, started)
        assert not WEEKDAYS_9.is_due(started, berlin(2026, 3, 9, 17, 0))
        assert WEEKDAYS_9.is_due(started, berlin(2026, 3, 10, 9, 0))
        assert WEEKDAYS_9.is_due(started, berlin(2026, 3, 20, 12, 0))  # after days down: once
        hourly = Schedule.interval(timedelta(hours=1))
        assert not hourly.is_due(started, started + timedelta(minutes=59))
        assert hourly.is_due(started, started + timedelta(hours=1))

    def test_a_cron_rule_first_seen_waits_for_its_first_time(self) -> None:
        deployed = berlin(2026, 3, 6, 15, 0)  # Friday afternoon
        assert WEEKDAYS_9.first_run(deployed) == berlin(2026, 3, 9, 9, 0)
        assert WEEKDAYS_9.first_run(berlin(2026, 3, 9, 9, 0)) == berlin(2026, 3, 9, 9, 0)
        assert not WEEKDAYS_9.is_due(None, berlin(2026, 3, 9, 8, 59), first_seen=deployed)
        assert WEEKDAYS_9.is_due(None, berlin(2026, 3, 9, 9, 0), first_seen=deployed)
        assert WEEKDAYS_9.is_due(None, deployed)  # no first sighting known: at once
        hourly = Schedule.interval(timedelta(hours=1))
        assert hourly.first_run(deployed) == deployed
        assert hourly.is_due(None, deployed, first_seen=deployed)

    def test_descriptions(self) -> None:
        assert WEEKDAYS_9.describe() == "cron 0 9 * * 1-5 (Europe/Berlin)"
        assert Schedule.interval(timedelta(minutes=90)).describe() == "every 1h30m"


CRON_RULE = """\
rules:
  - id: morning-points
    cron: "{cron}"
    timezone: Europe/Berlin
    reentry: every_time
    when: {{field: stage, equals: lead}}
    actions: [{{adjust_score: 1}}]
"""


def cron_rule_set(tmp_path: Path, make_settings: Any, engine: Engine, cron: str) -> RuleSet:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "morning.yaml").write_text(CRON_RULE.format(cron=cron), encoding="utf-8")
    return Runtime.build(engine, make_settings(), SettableClock(START)).load_rules()


@pytest.mark.parametrize("first_seen", [None, START])
def test_engine_runs_a_cron_rule_at_its_times(
    tmp_path: Path, make_settings: Any, engine: Engine, first_seen: datetime | None
) -> None:
    rule_set = cron_rule_set(tmp_path, make_settings, engine, "0 9 * * 1-5")
    add_lead(engine, START, external_id="L1", stage="lead", score=0)
    clock = SettableClock(START)
    runtime = Runtime.build(engine, make_settings(), clock)
    ran_at = []
    while clock.now() < START + timedelta(days=5):
        if run_due_rules(runtime, rule_set, clock.now(), first_seen=first_seen):
            ran_at.append(clock.now())
        clock.advance(timedelta(hours=1))
    # 09:00 in Berlin (08:00 UTC) on Friday, Monday and Tuesday; before that, with no first
    # sighting known (run --once), at once, as a rule that never ran.
    times = [berlin(2026, 3, 6, 9, 0), berlin(2026, 3, 9, 9, 0), berlin(2026, 3, 10, 9, 0)]
    assert ran_at == ([START] if first_seen is None else []) + times
    with engine.connect() as connection:
        assert connection.execute(select(LEADS.c.score)).scalar_one() == len(ran_at)


def test_daemon_schedules_the_next_cron_time_and_follows_a_change(
    tmp_path: Path, make_settings: Any, engine: Engine
) -> None:
    now = berlin(2026, 3, 9, 9, 30)  # Monday, after this morning's run
    rule_set = cron_rule_set(tmp_path, make_settings, engine, "0 9 * * 1-5")
    with engine.begin() as connection:
        connection.execute(
            insert(RULE_RUNS).values(
                rule_id="morning-points",
                rule_version=rule_set.version,
                last_started_at=berlin(2026, 3, 9, 9, 0),
                last_status="ok",
                matched=0,
            )
        )
    [rule] = rule_set.rules
    assert first_run_delay(rule, berlin(2026, 3, 9, 9, 0), now) == timedelta(hours=23, minutes=30)
    # Never ran: the daemon waits for the first cron time too (deployed Monday 09:30).
    assert first_run_delay(rule, None, now) == timedelta(hours=23, minutes=30)
    changed = cron_rule_set(tmp_path, make_settings, engine, "0 12 * * 1-5")
    runtime = Runtime.build(engine, make_settings(), SettableClock(now))

    async def scheduled() -> list[tuple[str, timedelta]]:
        holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=runtime.clock)
        holder.record_success(rule_set)
        scheduler = build_scheduler(runtime.settings.scheduler, asyncio.get_running_loop())
        scheduler.start(paused=True)
        jobs = RuleJobs(scheduler, Evaluator(runtime, holder, steps=[]))
        seen = []
        try:
            for version in (rule_set, changed):
                await jobs.sync(version)
                job = scheduler.get_job(rule_job_id("morning-points"))
                assert isinstance(job.trigger, ScheduleTrigger)
                seen.append((str(job.trigger), job.next_run_time - datetime.now(UTC)))
        finally:
            scheduler.shutdown(wait=False)
        return seen

    [(first, first_in), (second, second_in)] = asyncio.run(scheduled())
    assert first == "cron 0 9 * * 1-5 (Europe/Berlin)"
    assert timedelta(hours=23, minutes=29) < first_in <= timedelta(hours=23, minutes=30)
    assert second == "cron 0 12 * * 1-5 (Europe/Berlin)"
    assert timedelta(hours=2, minutes=29) < second_in <= timedelta(hours=2, minutes=30)


def test_simulation_sees_a_new_cron_rule_wait_for_its_first_time(
    tmp_path: Path, make_settings: Any, engine: Engine
) -> None:
    rule_set = cron_rule_set(tmp_path, make_settings, engine, "0 9 * * 1-5")
    add_lead(engine, START, external_id="L1", stage="lead", score=0)
    runtime = Runtime.build(engine, make_settings(), SettableClock(START))
    scores: list[tuple[datetime, int]] = []
    tick_over_range(
        runtime,
        rule_set,
        START + timedelta(hours=15),  # Friday 15:00 UTC, after this morning's 09:00 Berlin
        START + timedelta(days=4),
        timedelta(hours=1),
        on_step=lambda now: scores.append((now, _score(engine))),
    )
    ran_at = [
        now for (now, score), (_, before) in zip(scores[1:], scores, strict=False) if score > before
    ]
    ran_at = ([scores[0][0]] if scores[0][1] else []) + ran_at
    assert ran_at == [berlin(2026, 3, 9, 9, 0)]  # Monday, not Friday afternoon


def _score(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(LEADS.c.score)).scalar_one())


def test_the_first_sighting_survives_restarts_and_a_takeover(
    tmp_path: Path, make_settings: Any, engine: Engine
) -> None:
    """Deployed Friday 15:00: a restart on Monday 08:00 still waits for 09:00; a replica taking
    over at 09:02, or a restart then, runs the rule at once (its first time went by)."""
    rule_set = cron_rule_set(tmp_path, make_settings, engine, "0 9 * * 1-5")

    async def first_tick(at: datetime, *, takeover_at: datetime | None = None) -> timedelta:
        clock = SettableClock(at)
        runtime = Runtime.build(engine, make_settings(), clock)
        holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=clock)
        holder.record_success(rule_set)
        scheduler = build_scheduler(runtime.settings.scheduler, asyncio.get_running_loop())
        scheduler.start(paused=True)
        jobs = RuleJobs(scheduler, Evaluator(runtime, holder, steps=[]))
        try:
            await jobs.sync(rule_set)
            if takeover_at is not None:
                clock.set(takeover_at)
                await jobs.catch_up(rule_set)
            job = scheduler.get_job(rule_job_id("morning-points"))
            return job.next_run_time - datetime.now(UTC)  # type: ignore[no-any-return]
        finally:
            scheduler.shutdown(wait=False)

    def about(delay: timedelta, expected: timedelta) -> bool:
        return expected - timedelta(seconds=2) < delay <= expected

    deployed, monday_8, monday_0902 = (
        berlin(2026, 3, 6, 15, 0),
        berlin(2026, 3, 9, 8, 0),
        berlin(2026, 3, 9, 9, 2),
    )
    assert about(asyncio.run(first_tick(deployed)), timedelta(days=2, hours=18))
    with engine.connect() as connection:
        assert connection.execute(
            select(RULE_RUNS.c.first_seen_at, RULE_RUNS.c.last_started_at)
        ).one() == (deployed, None)
    assert about(asyncio.run(first_tick(monday_8)), timedelta(hours=1))
    assert about(asyncio.run(first_tick(deployed, takeover_at=monday_0902)), timedelta(0))
    assert about(asyncio.run(first_tick(monday_0902)), timedelta(0))
    console = Console(width=200, record=True)
    runtime = Runtime.build(engine, make_settings(), SettableClock(monday_0902))
    render_rules(rules_view(runtime, collect_status(engine)), console)
    assert console.export_text().splitlines()[2].split()[8:12] == ["never", "due", "now", "-"]


def test_status_shows_when_a_new_cron_rule_first_runs(
    tmp_path: Path, make_settings: Any, engine: Engine
) -> None:
    cron_rule_set(tmp_path, make_settings, engine, "0 9 * * 1-5")
    runtime = Runtime.build(engine, make_settings(), SettableClock(berlin(2026, 3, 6, 15, 0)))
    console = Console(width=200, record=True)
    render_rules(rules_view(runtime, collect_status(engine)), console)
    [row] = console.export_text().splitlines()[2:]
    assert row.split()[:11] == [
        "morning-points",
        "cron",
        "0",
        "9",
        "*",
        "*",
        "1-5",
        "(Europe/Berlin)",
        "never",
        "2026-03-09",
        "08:00",
    ]


def test_a_schedule_kept_with_its_run_reads_back_the_same() -> None:
    """``rule_runs.schedule``: what ``status`` reads to tell a kept rule's next run."""
    weekday_nine = Schedule.crontab("0 9 * * 1-5", "Europe/Berlin")
    ninety_minutes = Schedule.interval(timedelta(minutes=90))
    assert weekday_nine.to_record() == '{"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"}'
    assert ninety_minutes.to_record() == '{"every_seconds": 5400.0}'
    assert Schedule.from_record(weekday_nine.to_record()) == weekday_nine
    assert Schedule.from_record(ninety_minutes.to_record()) == ninety_minutes
    for unreadable in (
        "",
        "[]",
        '{"cron": "0 9 * *", "timezone": "UTC"}',
        '{"cron": "0 9 * * *", "timezone": "Mars/Olympus"}',
        '{"every_seconds": "soon"}',
    ):
        assert Schedule.from_record(unreadable) is None, unreadable
