"""When a rule runs: every fixed interval, or at the times of a cron expression in a timezone.

Cron expressions follow Debian's cron (five fields, 0 or 7 is Sunday, names allowed) and are
evaluated by cronsim, which also follows Debian's cron across DST changes: a time that a
spring-forward skips runs right after the change, a fixed time a fall-back repeats runs once.
APScheduler 3's own cron trigger was not used: it counts weekdays from Monday = 0 (so ``1-5``
means Tuesday to Saturday) and fires twice in a repeated hour.

A rule that ran is due when its next scheduled time after its last start has come; a missed
time (downtime, a long evaluation) runs once when the daemon is back, never once per missed
time. A rule that never ran is due at once, except where its first sighting is known (the
daemon, ``leadflow simulate``): there a cron rule waits for its first cron time, so a campaign
set for weekdays at 09:00 does not go out when it is deployed at 15:00.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from leadflow.durations import format_duration
from leadflow.errors import CronExpressionError


@dataclass(frozen=True)
class Schedule:
    """Either ``every`` (an interval) or ``cron`` with its IANA ``timezone``."""

    every: timedelta | None = None
    cron: str | None = None
    timezone: str = "UTC"

    @classmethod
    def interval(cls, every: timedelta) -> Schedule:
        return cls(every=every)

    @classmethod
    def crontab(cls, expression: str, timezone: str) -> Schedule:
        """A cron schedule; :class:`CronExpressionError` if the expression cannot run."""
        fields = expression.split()
        if len(fields) != 5:
            # cronsim would read a sixth field as seconds, outside what cron (and DST) means.
            msg = (
                f"{expression!r} is not a cron expression: expected 5 fields (minute hour day"
                f" month weekday), found {len(fields)}"
            )
            raise CronExpressionError(msg)
        schedule = cls(cron=" ".join(fields), timezone=timezone)
        schedule.next_run(datetime(2026, 1, 1, tzinfo=UTC))
        return schedule

    def next_run(self, after: datetime) -> datetime:
        """The first scheduled time strictly after ``after`` (aware, in UTC)."""
        if self.cron is None:
            assert self.every is not None
            return after + self.every
        local = after.astimezone(ZoneInfo(self.timezone))
        try:
            times = CronSim(self.cron, local)
            # Inside an hour a fall-back repeats, cronsim may answer the first copy of a time,
            # which is already past: skip to the first time really after ``after``.
            upcoming = next(times).astimezone(UTC)
            while upcoming <= after:
                upcoming = next(times).astimezone(UTC)
        except CronSimError as exc:
            msg = f"{self.cron!r} is not a cron expression (minute hour day month weekday): {exc}"
            raise CronExpressionError(msg) from None
        except StopIteration:
            msg = f"{self.cron!r} matches no date (cron looks 50 years ahead)"
            raise CronExpressionError(msg) from None
        return upcoming

    def first_run(self, seen: datetime) -> datetime:
        """When a rule first seen at ``seen`` runs first: at once on an interval, else at its
        first cron time at or after ``seen``."""
        if self.cron is None:
            return seen
        return self.next_run(seen - timedelta(microseconds=1))

    def upcoming(self, last_started: datetime | None, first_seen: datetime) -> datetime:
        """When the rule runs next: after its last start, or first after its first sighting."""
        if last_started is None:
            return self.first_run(first_seen)
        return self.next_run(last_started)

    def is_due(
        self, last_started: datetime | None, now: datetime, first_seen: datetime | None = None
    ) -> bool:
        """Due at ``now``; a rule that never ran and whose first sighting is unknown, at once."""
        if last_started is None and first_seen is None:
            return True
        return self.upcoming(last_started, first_seen or now) <= now

    def to_record(self) -> str:
        """The schedule as ``rule_runs.schedule`` keeps it, for ``status`` to tell the next run
        of a rule a daemon keeps running while the folder it was read from is refused."""
        if self.cron is None:
            assert self.every is not None
            return json.dumps({"every_seconds": self.every.total_seconds()})
        return json.dumps({"cron": self.cron, "timezone": self.timezone})

    @classmethod
    def from_record(cls, record: str) -> Schedule | None:
        """What :meth:`to_record` wrote; None for what it did not (a hand-edited row)."""
        try:
            fields = json.loads(record)
            if "every_seconds" in fields:
                return cls.interval(timedelta(seconds=float(fields["every_seconds"])))
            ZoneInfo(fields["timezone"])
            return cls.crontab(str(fields["cron"]), str(fields["timezone"]))
        except (ValueError, TypeError, KeyError, CronExpressionError):
            return None

    def describe(self) -> str:
        if self.cron is None:
            assert self.every is not None
            return f"every {format_duration(self.every)}"
        return f"cron {self.cron} ({self.timezone})"
