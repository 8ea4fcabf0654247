"""Running the funnel over a time range on a simulated clock, and what happened day by day.

``leadflow simulate`` runs on a copy of the store (a temporary SQLite file, whatever the real
store is), so nothing it does reaches the real store or anyone's inbox: emails are queued in
the copy's outbox and counted, never sent.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, insert, select

from leadflow.clock import SettableClock
from leadflow.engine.evaluation import RuleOutcome
from leadflow.engine.nurture_sends import nurture_sends
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_tick
from leadflow.rule_language.model import RuleSet
from leadflow.store.database import create_store_engine, migrate
from leadflow.store.models import metadata
from leadflow.store.tables import AUDIT, OUTBOX

COPY_BATCH = 5000


@dataclass(frozen=True)
class DayReport:
    """What the funnel did on one (UTC) day."""

    day: str
    mqls: int
    queued: int
    escalations: int
    reassigned: int
    recycled: int
    nurture_sent: int
    """Nurture steps whose email was queued (a step skipped for want of an address is not)."""
    nurture_skipped: int
    """Nurture steps gone through without an email: no address, the frequency cap."""
    emails_queued: int
    emails_delivered: int
    date: str
    """The day as an ISO date (``2026-03-02``), for scripts; ``day`` is for people."""


@dataclass
class RuleFailures:
    """What failed of one rule over a simulated range (``leadflow simulate`` says it)."""

    rule_id: str
    evaluations: int = 0
    """Evaluations that failed as a whole (the rule's ``error``)."""
    firings: int = 0
    """Firings that failed (rolled back) in evaluations that otherwise ran."""
    first: str | None = None
    """The first failure's reason, one line."""
    external: bool = False
    """A failure came from the database or the mail server, not from the rules."""

    def text(self) -> str:
        """``rule a: 3 firing(s) failed; first: lead 003: template rt.txt:1: ...``."""
        counts = []
        if self.evaluations:
            counts.append(f"{self.evaluations} evaluation(s) failed")
        if self.firings:
            counts.append(f"{self.firings} firing(s) failed")
        return f"rule {self.rule_id}: {', '.join(counts)}; first: {self.first}"


def tally_failures(failures: dict[str, RuleFailures], outcomes: list[RuleOutcome]) -> None:
    """Add one tick's failed evaluations and firings to ``failures`` (by rule id)."""
    for outcome in outcomes:
        if outcome.problem is None:
            continue
        tally = failures.setdefault(outcome.rule_id, RuleFailures(outcome.rule_id))
        if outcome.error is not None:
            tally.evaluations += 1
            tally.first = tally.first or outcome.error
        else:
            tally.firings += outcome.failed
            tally.first = tally.first or outcome.first_failure
        tally.external = tally.external or outcome.external_failure


@dataclass(frozen=True)
class Baseline:
    """The last audit and outbox rows before a run: a report counts only what came after."""

    audit_id: int = 0
    outbox_id: int = 0

    @classmethod
    def of(cls, engine: Engine) -> Baseline:
        with engine.connect() as connection:
            audit = connection.execute(select(func.max(AUDIT.c.id))).scalar_one()
            outbox = connection.execute(select(func.max(OUTBOX.c.id))).scalar_one()
        return cls(int(audit or 0), int(outbox or 0))


def day_report(engine: Engine, day: datetime, baseline: Baseline | None = None) -> DayReport:
    """Counts of the audit and outbox rows of the UTC day containing ``day``, after ``baseline``."""
    begin = day.replace(hour=0, minute=0, second=0, microsecond=0)
    end = begin + timedelta(days=1)
    base = baseline or Baseline()
    in_day = (AUDIT.c.at >= begin, AUDIT.c.at < end, AUDIT.c.id > base.audit_id)
    query = select(AUDIT.c.action, func.count()).where(*in_day).group_by(AUDIT.c.action)
    with engine.connect() as connection:
        actions = {str(action): int(count) for action, count in connection.execute(query)}
        queued = connection.execute(
            select(func.count())
            .select_from(OUTBOX)
            .where(
                OUTBOX.c.created_at >= begin,
                OUTBOX.c.created_at < end,
                OUTBOX.c.id > base.outbox_id,
            )
        ).scalar_one()
        sends = nurture_sends(connection, after_id=base.audit_id, since=begin, until=end)
        delivered = connection.execute(
            select(func.count())
            .select_from(OUTBOX)
            .where(
                OUTBOX.c.status == "sent",
                OUTBOX.c.sent_at >= begin,
                OUTBOX.c.sent_at < end,
                OUTBOX.c.id > base.outbox_id,
            )
        ).scalar_one()
    return DayReport(
        day=begin.strftime("%a %d %b %Y"),
        mqls=actions.get("assigned", 0),
        queued=actions.get("assignment_queued", 0),
        escalations=actions.get("sla_escalated", 0),
        reassigned=actions.get("reassigned", 0),
        recycled=actions.get("deal_recycled", 0),
        nurture_sent=sends.emailed,
        nurture_skipped=sends.skipped_steps,
        emails_queued=int(queued),
        emails_delivered=int(delivered),
        date=begin.date().isoformat(),
    )


def copy_store(source: Engine, target: Path) -> Engine:
    """A migrated SQLite copy of ``source`` at ``target`` (SQLite is copied as a file)."""
    target.unlink(missing_ok=True)
    if source.dialect.name == "sqlite" and source.url.database:
        with source.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        shutil.copyfile(source.url.database, target)
        copy = create_store_engine(f"sqlite:///{target}")
        migrate(copy)
        return copy
    copy = create_store_engine(f"sqlite:///{target}")
    migrate(copy)
    with source.connect() as reading, copy.begin() as writing:
        for table in metadata.sorted_tables:
            rows = reading.execution_options(yield_per=COPY_BATCH).execute(select(table))
            for chunk in rows.partitions(COPY_BATCH):
                writing.execute(insert(table), [dict(row._mapping) for row in chunk])
    return copy


def tick_over_range(
    runtime: Runtime,
    rule_set: RuleSet,
    start: datetime,
    end: datetime,
    step: timedelta,
    *,
    on_step: Callable[[datetime], None] | None = None,
    failures: dict[str, RuleFailures] | None = None,
) -> list[DayReport]:
    """Run a funnel tick at every step in [start, end), moving the runtime's settable clock;
    what happened, day by day.

    It writes to ``runtime``'s store: ``leadflow simulate`` hands it a copy, the demo a store
    of its own. ``on_step`` runs after each tick (the demo's reps and sender act there).
    ``failures`` collects, by rule id, the evaluations and firings that failed.
    """
    clock = runtime.clock
    assert isinstance(clock, SettableClock)
    clock.set(start)
    first_seen = clock.now()  # as a daemon started at ``start`` would see the rules
    baseline = Baseline.of(runtime.engine)
    reports: list[DayReport] = []
    while clock.now() < end:
        now = clock.now()
        tick = run_tick(runtime, rule_set, now, first_seen=first_seen)
        if failures is not None:
            tally_failures(failures, tick.rules)
        if on_step is not None:
            on_step(now)
        clock.advance(step)
        if clock.now().date() != now.date() or clock.now() >= end:
            reports.append(day_report(runtime.engine, now, baseline))
    return reports
