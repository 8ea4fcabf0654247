"""The scheduler's jobs: one job per enabled rule, on its schedule, kept in step with the rule set.

APScheduler 3 fires the jobs on the wall clock; what an evaluation calls ``now`` comes from the
injected clock (see :class:`~leadflow.service.daemon_ticks.Evaluator`). Ticks are coalesced,
at most one instance of a job runs at a time, and a tick later than ``scheduler.misfire_grace``
is skipped rather than run late.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from leadflow.engine.rule_runs import (
    first_run_delay,
    first_seen_times,
    last_started_times,
    remember_first_seen,
)
from leadflow.rule_language.model import RuleSet
from leadflow.rule_language.schedule import Schedule
from leadflow.service.daemon_ticks import Evaluator
from leadflow.settings import SchedulerSettings

log = structlog.get_logger("leadflow.service")

RULE_JOB_PREFIX = "rule:"
FUNNEL_TICK_JOB = "funnel-tick"
RETENTION_JOB = "retention"
RETENTION_FIRST_DELAY = timedelta(minutes=1)
"""The first retention run after start: soon (a daemon restarted more often than
``scheduler.retention_every`` still prunes), but after the start-up catch-up."""


def build_scheduler(
    settings: SchedulerSettings, loop: asyncio.AbstractEventLoop
) -> AsyncIOScheduler:
    """An AsyncIOScheduler in UTC that coalesces ticks and runs one instance per job."""
    return AsyncIOScheduler(
        event_loop=loop,
        timezone=UTC,
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            # APScheduler wants whole seconds here, at least one.
            "misfire_grace_time": max(1, int(settings.misfire_grace.total_seconds())),
        },
    )


def _interval(every: timedelta) -> IntervalTrigger:
    return IntervalTrigger(seconds=every.total_seconds(), timezone=UTC)


class ScheduleTrigger(BaseTrigger):  # type: ignore[misc]
    """Fires at a rule's :class:`Schedule` times, the same ones ``is_due`` counts with."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        return self.schedule.next_run(previous_fire_time or now)

    def __str__(self) -> str:
        return self.schedule.describe()


def _trigger(schedule: Schedule) -> BaseTrigger:
    if schedule.every is not None:
        return _interval(schedule.every)
    return ScheduleTrigger(schedule)


def rule_job_id(rule_id: str) -> str:
    return f"{RULE_JOB_PREFIX}{rule_id}"


class RuleJobs:
    """Adds, removes and reschedules the rule jobs so they match the current rule set."""

    def __init__(self, scheduler: AsyncIOScheduler, evaluator: Evaluator) -> None:
        self.scheduler = scheduler
        self.evaluator = evaluator
        self._schedules: dict[str, Schedule] = {}

    @property
    def scheduled(self) -> dict[str, Schedule]:
        """The rule ids that have a job, with their schedule."""
        return dict(self._schedules)

    def add_funnel_tick(self, every: timedelta) -> None:
        """The SLA and nurture pass: first at once (catching up after downtime), then ``every``."""
        self.scheduler.add_job(
            self.evaluator.funnel_tick,
            _interval(every),
            id=FUNNEL_TICK_JOB,
            name="funnel tick (SLA escalations, nurture steps)",
            next_run_time=datetime.now(UTC),
        )

    def add_retention(self, every: timedelta) -> None:
        """The retention job (``mail.keep_sent``, ``audit.keep``): a minute after start, then
        ``every``; it does anything only on the leader."""
        self.scheduler.add_job(
            self.evaluator.retention,
            _interval(every),
            id=RETENTION_JOB,
            name="retention (old outbox and audit rows)",
            next_run_time=datetime.now(UTC) + RETENTION_FIRST_DELAY,
        )

    async def catch_up(self, rule_set: RuleSet) -> list[str]:
        """On becoming the evaluator: move each due rule's next tick (and the funnel tick) to now.

        A replica taking over from a leader that died mid-evaluation would otherwise wait for
        its own next tick, up to a whole ``every``, before finishing what its predecessor left
        half done (an interrupted run is not recorded in ``rule_runs``, so the rule is due).
        A rule that is not due keeps its rhythm from its last recorded run. Returns the rule
        ids moved to now.
        """
        runtime = self.evaluator.runtime
        last_started = await asyncio.to_thread(last_started_times, runtime.engine)
        first_seen = await asyncio.to_thread(first_seen_times, runtime.engine)
        now = runtime.clock.now()
        wall = datetime.now(UTC)
        due = []
        for rule in rule_set.enabled_rules:
            if rule.id not in self._schedules:
                continue
            delay = first_run_delay(rule, last_started.get(rule.id), now, first_seen.get(rule.id))
            self.scheduler.modify_job(rule_job_id(rule.id), next_run_time=wall + delay)
            if not delay:
                due.append(rule.id)
        if self.scheduler.get_job(FUNNEL_TICK_JOB) is not None:
            self.scheduler.modify_job(FUNNEL_TICK_JOB, next_run_time=wall)
        log.info("rule_jobs_caught_up", rule_version=rule_set.version, due=due)
        return due

    async def sync(self, rule_set: RuleSet) -> None:
        """Make the jobs match ``rule_set``'s enabled rules; first ticks follow ``rule_runs``."""
        runtime = self.evaluator.runtime
        now = runtime.clock.now()
        last_started = await asyncio.to_thread(last_started_times, runtime.engine)
        first_seen = await asyncio.to_thread(
            remember_first_seen, runtime.engine, rule_set, now, last_started.keys()
        )
        wall = datetime.now(UTC)
        wanted = {rule.id: rule for rule in rule_set.enabled_rules}
        removed = sorted(set(self._schedules) - set(wanted))
        for rule_id in removed:
            self.scheduler.remove_job(rule_job_id(rule_id))
            del self._schedules[rule_id]
        added, rescheduled = [], []
        for rule in wanted.values():
            known = self._schedules.get(rule.id)
            if known == rule.schedule:
                continue
            first = wall + first_run_delay(
                rule, last_started.get(rule.id), now, first_seen.get(rule.id)
            )
            if known is None:
                self.scheduler.add_job(
                    self.evaluator.evaluate,
                    _trigger(rule.schedule),
                    args=[rule.id],
                    id=rule_job_id(rule.id),
                    name=f"rule {rule.id}",
                    next_run_time=first,
                )
                added.append(rule.id)
            else:
                self.scheduler.modify_job(
                    rule_job_id(rule.id), trigger=_trigger(rule.schedule), next_run_time=first
                )
                rescheduled.append(rule.id)
            self._schedules[rule.id] = rule.schedule
        if added or removed or rescheduled:
            log.info(
                "rule_jobs_synced",
                rule_version=rule_set.version,
                added=added,
                removed=removed,
                rescheduled=rescheduled,
            )
