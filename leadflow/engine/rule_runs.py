"""The ``rule_runs`` bookkeeping: when each rule last ran, when it was first seen, when it is due.

A rule's row is what decides, after a restart, a leader change or a ``leadflow run --once``,
whether the rule is due: its next scheduled time after its last recorded start has come. A cron
rule that never ran counts from its first sighting instead, stored here too, so a restart does
not push its first run later. A run is recorded only when it finished (interrupted runs are not),
so an interrupted rule stays due. A run that failed is recorded (its status, error and end) but
does not move ``last_started_at``, the instant the schedule counts from: a rule whose evaluation
the database cut off is due again, like an interrupted one, rather than waiting a whole period
(a day, for a daily rule) with its work half done. ``leadflow status`` reads the same rows in its
own query.

A run that failed or was stopped after committing some batches (they go in subject id order)
leaves how far it got (:class:`UnfinishedRun`); until the rule's next scheduled time after that
run, the retry goes on after the last subject it went through: it finishes the run rather than
repeating it, so an ``every_time`` rule (which keeps no firing rows to tell) does not act twice
on a lead, nor email it twice, for one scheduled time. How far it got is written by each batch
in its own transaction (:func:`record_gone_through`): a batch and that mark commit together, so
a run killed outright (``kill -9``, a lost machine) is finished by its retry as well.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from leadflow.rule_language.model import Rule, RuleSet
from leadflow.store.database import insert_ignoring_duplicates, insert_or_update, transaction
from leadflow.store.models import RuleRun
from leadflow.store.tables import RULE_RUNS


def last_started_times(engine: Engine) -> dict[str, datetime | None]:
    """When each rule that ever ran last started, by rule id."""
    with Session(engine) as session:
        return {run.rule_id: run.last_started_at for run in session.scalars(select(RuleRun))}


def first_seen_times(engine: Engine) -> dict[str, datetime]:
    """When the daemon first scheduled each rule that had not run then, by rule id."""
    with Session(engine) as session:
        rows = session.execute(
            select(RULE_RUNS.c.rule_id, RULE_RUNS.c.first_seen_at).where(
                RULE_RUNS.c.first_seen_at.is_not(None)
            )
        )
        return {rule_id: seen for rule_id, seen in rows}


def remember_first_seen(
    engine: Engine, rule_set: RuleSet, now: datetime, known: Collection[str]
) -> dict[str, datetime]:
    """Record ``now`` as the first sighting of each enabled cron rule not among ``known`` (the
    rule ids with a row in ``rule_runs``; a replica doing the same at the same time changes
    nothing); return the first sightings of all rules.

    A new cron rule waits for its first cron time after its first sighting: kept in the store,
    a restart, a leader change or an interrupted first run does not push that to a later time.
    """
    new = [r for r in rule_set.enabled_rules if r.schedule.cron is not None and r.id not in known]
    if new:
        with transaction(engine) as session:
            dialect = session.get_bind().dialect.name
            session.execute(
                insert_ignoring_duplicates(dialect, RULE_RUNS, "rule_id").values(
                    [
                        {
                            "rule_id": rule.id,
                            "rule_version": rule_set.version,
                            "last_status": "never",
                            "matched": 0,
                            "first_seen_at": now,
                            "schedule": rule.schedule.to_record(),
                        }
                        for rule in new
                    ]
                )
            )
    return first_seen_times(engine)


@dataclass(frozen=True)
class UnfinishedRun:
    """A run that failed or was stopped after committing the batches up to a subject."""

    at: datetime
    """The run's instant: its retries finish it until the rule's next time after this."""
    through: int
    """The last subject id its committed batches went through."""


def unfinished_run(engine: Engine, rule: Rule, now: datetime) -> UnfinishedRun | None:
    """The unfinished run of ``rule`` a run at ``now`` finishes, if any: none once the rule's
    next scheduled time after it has come (that run acts on every subject again)."""
    with Session(engine) as session:
        return unfinished_run_in(session, rule, now)


def unfinished_run_in(session: Session, rule: Rule, now: datetime) -> UnfinishedRun | None:
    """:func:`unfinished_run` read in ``session``: a run reads it with what else it reads
    before its first batch, on the connection it has already (a checkout, a ping and a
    transaction fewer on every run of every rule)."""
    query = select(RULE_RUNS.c.unfinished_at, RULE_RUNS.c.unfinished_through).where(
        RULE_RUNS.c.rule_id == rule.id
    )
    run = session.execute(query).first()
    if run is None or run.unfinished_at is None or run.unfinished_through is None:
        return None
    if rule.schedule.next_run(run.unfinished_at) <= now:
        return None
    return UnfinishedRun(run.unfinished_at, run.unfinished_through)


def record_gone_through(
    session: Session, rule_set: RuleSet, rule: Rule, at: datetime, through: int
) -> None:
    """Mark, in the transaction of the batch that went through subject ``through``, that the
    run at ``at`` (its own instant, or that of the unfinished run it finishes) got that far.

    One statement per batch, creating the rule's row on its first run: as the batch commits, a
    retry knows to go on after it, whatever becomes of the process afterwards."""
    dialect = session.get_bind().dialect.name
    session.execute(
        insert_or_update(dialect, RULE_RUNS, "rule_id", ("unfinished_at", "unfinished_through")),
        {
            "rule_id": rule.id,
            "rule_version": rule_set.version,
            "last_status": "never",
            "matched": 0,
            "unfinished_at": at,
            "unfinished_through": through,
        },
    )


def record_run(
    engine: Engine,
    rule_set: RuleSet,
    rule: Rule,
    now: datetime,
    *,
    matched: int,
    error: str | None,
) -> None:
    """Record that ``rule`` ran as of ``now``: what makes it due (or not) after a restart. An
    interrupted run is not recorded (it stays due); a run that succeeded is recorded with its
    last transaction (:func:`record_run_in`), this records one that failed.

    A failed run keeps the last successful start, so the rule stays due (see the module). How
    far it got its batches marked as they committed (:func:`record_gone_through`); only a run
    that succeeded clears that mark. A failed one never does, whatever it committed: a failure
    before the run could even read the mark (the database gone for a moment) would otherwise
    erase a live one, and the next retry act again on the leads behind it. A mark past its
    rule's next time is ignored (:func:`unfinished_run`) and overwritten by the next run."""
    with transaction(engine) as session:
        record_run_in(session, rule_set, rule, now, matched=matched, error=error)


def record_run_in(
    session: Session,
    rule_set: RuleSet,
    rule: Rule,
    now: datetime,
    *,
    matched: int,
    error: str | None,
    failed_firings: int = 0,
    first_failure: str | None = None,
) -> None:
    """:func:`record_run` in the transaction of ``session``: a run that succeeded is recorded
    in the transaction that found its last match gone, committing with it.

    A run that finished with ``failed_firings`` (rolled back, the other firings went on) is
    done, as one that succeeded, but recorded ``firings_failed`` with
    :func:`firings_failed_text` as its error: it was recorded ``ok``, and ``leadflow status``
    called the rule ok while ``run --once`` exited 1 for it."""
    values: dict[str, object] = {
        "rule_id": rule.id,
        "rule_version": rule_set.version,
        "schedule": rule.schedule.to_record(),
        "last_finished_at": now,
        "last_status": run_status(error, failed_firings),
        "last_error": error or firings_failed_text(failed_firings, first_failure),
        "matched": matched,
        "failed_firings": failed_firings,
    }
    if not error:
        values.update(last_started_at=now, unfinished_at=None, unfinished_through=None)
    # One statement, as record_gone_through: it ran at every rule's every run (a read, then
    # the ORM's update), a third of a run that matched nothing.
    dialect = session.get_bind().dialect.name
    changed = tuple(name for name in values if name != "rule_id")
    session.execute(insert_or_update(dialect, RULE_RUNS, "rule_id", changed), values)


def run_status(error: str | None, failed_firings: int) -> str:
    """A finished run's ``last_status``: ``failed`` (the rule's own error), ``firings_failed``
    or ``ok``."""
    if error:
        return "failed"
    return "firings_failed" if failed_firings else "ok"


def firings_failed_text(failed: int, first_failure: str | None) -> str | None:
    """``3 failed; first: lead 003: ...``: ``run --once``'s error column for a rule whose
    firings failed, and the error its run is recorded with; None when none failed."""
    if not failed or first_failure is None:
        return None
    return f"{failed} failed; first: {first_failure}"


def is_due(
    rule: Rule, last_started: datetime | None, now: datetime, first_seen: datetime | None = None
) -> bool:
    """Whether ``rule`` is due at ``now``; see :mod:`leadflow.rule_language.schedule`."""
    return rule.schedule.is_due(last_started, now, first_seen)


def next_run_at(
    rule: Rule, last_started: datetime | None, now: datetime, first_seen: datetime | None = None
) -> datetime:
    """When ``rule`` runs next as the daemon sees it: after its last start, or (never ran) at
    once on an interval and on cron at its first time after ``first_seen`` (``now`` if unknown).
    """
    return rule.schedule.upcoming(last_started, first_seen or now)


def first_run_delay(
    rule: Rule, last_started: datetime | None, now: datetime, first_seen: datetime | None = None
) -> timedelta:
    """How long after ``now`` the rule's first tick in the daemon should come.

    Zero when the rule is due (its next scheduled time after its last start has come): after
    any downtime a missed rule runs once at start-up, however many ticks it missed. Otherwise
    until that next time, so a restart neither delays a rule nor runs it early.
    """
    return max(timedelta(0), next_run_at(rule, last_started, now, first_seen) - now)
