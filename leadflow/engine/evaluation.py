"""Evaluating rules: the database returns the matches, batches commit with their effects.

A rule's condition is compiled to SQL once per evaluation; matches are read in id order in
batches, and each batch's state changes, audit rows, firings and outbox messages commit in
one transaction (each firing in a savepoint, so one bad lead does not undo its batch). A dry
run reads the same matches and writes nothing: each planned firing is handed to a
:data:`PlanSink` as it is read (or, without one, kept in :attr:`RuleOutcome.planned`), with its
evidence read as selected columns, so with a sink a plan of 100,000 firings is never held in
memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import structlog
from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    exists,
    select,
    true,
    type_coerce,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from leadflow import metrics
from leadflow.collector_pause import collector_paused
from leadflow.engine.assignment import pool_members
from leadflow.engine.batch_writes import write_batch
from leadflow.engine.firing import Firing, describe_action, fire
from leadflow.engine.firing_batch import FiringBatch
from leadflow.engine.plain_rows import all_reps, as_leads, in_stage_by, lead_select, record_of
from leadflow.engine.pool_staffing import unstaffed_pools_note
from leadflow.engine.row_record import RowRecord
from leadflow.engine.rule_runs import (
    firings_failed_text,
    record_gone_through,
    record_run,
    record_run_in,
    unfinished_run_in,
)
from leadflow.engine.runtime import Runtime, StopSignal
from leadflow.engine.sales_cycle import averages_for
from leadflow.errors import ExternalSystemError, TemplateError, UserInputError
from leadflow.logs import error_text, first_line, is_outage, log_failure
from leadflow.rule_language.actions import Assign, action_name
from leadflow.rule_language.conditions import EvaluationContext, cycle_conditions, referenced_fields
from leadflow.rule_language.fields import FieldSpec, Subject, ValueType
from leadflow.rule_language.model import Rule, RuleSet
from leadflow.rule_language.to_python import time_of
from leadflow.rule_language.to_sql import time_expression, to_where
from leadflow.store.database import transaction
from leadflow.store.json_values import jsonable
from leadflow.store.models import Deal, Lead
from leadflow.store.tables import FIRINGS
from leadflow.store.types import UTCDateTime

log = structlog.get_logger("leadflow.engine")


@dataclass(frozen=True)
class PlannedFiring:
    """What a rule would do to one subject, and the values that made it match."""

    rule_id: str
    subject: str
    external_id: str
    actions: tuple[str, ...]
    evidence: Mapping[str, Any]


PlanSink = Callable[[PlannedFiring], None]
"""Receives each planned firing of a dry run as it is read (in the order the database returns
a rule's matches), rule after rule."""
RunEnd = Callable[[Session, "RuleOutcome"], None]
"""Writes, in the transaction that found a run's matches all gone through, what commits with
its end (:func:`run_rule` records the run there)."""


@dataclass
class RuleOutcome:
    rule_id: str
    matched: int = 0
    fired: int = 0
    failed: int = 0
    error: str | None = None
    seconds: float = 0.0
    interrupted: bool = False
    """A shutdown stopped the evaluation between two batches; the rule stays due."""
    planned: list[PlannedFiring] = field(default_factory=list)
    """A dry run's planned firings, when no :data:`PlanSink` took them (then it stays empty);
    a dry run plans a firing for every match, so ``matched`` counts them either way."""
    external_failure: bool = False
    """The rule's error, or a failed firing's, came from the database or the mail server (exit
    3), not from the rule or the user's input."""
    cycle_note: str | None = None
    """Why the rule could match nothing at this instant, when leadflow can tell (no average
    sales cycle to compare with): said beside the run rather than left as a silent 0."""
    unstaffed_pools: str | None = None
    """The pools the rule assigns from that no active rep is in (see
    :mod:`~leadflow.engine.pool_staffing`): its MQLs routed there wait unassigned."""
    first_failure: str | None = None
    """The first failed firing, one line: ``lead 003: TEMPLATE:1: cannot render: ...``. The
    rule itself ran (``error`` stays None, so the run counts as done); its failed firings
    were rolled back and are counted in ``failed``."""

    @property
    def problem(self) -> str | None:
        """What went wrong, for the ``error`` column: the rule's own error, else how many of
        its firings failed and the first one's reason (``3 failed; first: lead 003: ...``)."""
        if self.error is not None:
            return self.error
        return firings_failed_text(self.failed, self.first_failure)

    @property
    def note(self) -> str | None:
        """What to say beside the run's counts: :attr:`cycle_note` and :attr:`unstaffed_pools`."""
        notes = [note for note in (self.cycle_note, self.unstaffed_pools) if note]
        return "; ".join(notes) or None


def rule_scope(rule: Rule, table: Table, now: datetime) -> ColumnElement[bool]:
    """The subjects the rule may act on at ``now``: leads already in their current stage then
    (:func:`in_stage_by`), less those its re-entry policy leaves out."""
    reentry = reentry_clause(rule, table, now)
    if rule.subject is not Subject.LEAD:
        return reentry  # deals keep no time of their stage: all are in scope
    return and_(in_stage_by(table.c.stage_entered_at, now), reentry)


def reentry_clause(rule: Rule, table: Table, now: datetime) -> ColumnElement[bool]:
    """Leave out subjects the rule already acted on, as its re-entry policy says."""
    if rule.reentry.mode == "every_time":
        return true()
    earlier = select(FIRINGS.c.id).where(
        FIRINGS.c.rule_id == rule.id,
        FIRINGS.c.subject_kind == rule.subject.value,
        FIRINGS.c.subject_id == table.c.id,
    )
    if rule.reentry.mode == "once_per" and rule.reentry.period is not None:
        earlier = earlier.where(FIRINGS.c.fired_at > now - rule.reentry.period)
    # OFFSET 0 keeps PostgreSQL from turning this into an anti-join, which reads every firing
    # of the rule for each batch (quadratic over an evaluation: 100,000 enrolments ran 3x
    # slower per firing than 10,000); as a subquery it probes the index once per lead.
    return ~exists(earlier.offset(0))


def occasion_of(rule: Rule, now: datetime) -> str:
    """Distinguishes firings of one rule on one subject, for the emails' idempotency keys."""
    if rule.reentry.mode == "once":
        return "once"
    if rule.reentry.mode == "once_per" and rule.reentry.period is not None:
        bucket = int(now.timestamp() // rule.reentry.period.total_seconds())
        return f"period{bucket}"
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def evidence_of(
    rule: Rule,
    record: Mapping[str, Any],
    context: EvaluationContext,
    fields: Sequence[FieldSpec] | None = None,
) -> dict[str, Any]:
    """The values of every field the condition reads, ages in days, cycle averages used.

    ``fields`` are the condition's fields when the caller has them already (a batch does)."""
    evidence: dict[str, Any] = {}
    for spec in referenced_fields(rule.condition) if fields is None else fields:
        if spec.type is ValueType.DAYS:
            moment = time_of(spec, record)
            days = None if moment is None else (context.now - moment).total_seconds() / 86400
            evidence[spec.name] = None if days is None else round(days, 2)
        else:
            evidence[spec.name] = jsonable(spec.read(record))
    for condition, average in context.cycles.items():
        group = condition.group_by.read(record) if condition.group_by is not None else None
        days = average.days_for(group)
        evidence["average_cycle_days"] = days  # full precision: the average used, as used
        evidence["average_cycle_deals"] = (
            average.groups[str(group)][1]
            if group is not None and str(group) in average.groups
            else average.overall_deals
        )
        evidence["idle_threshold_days"] = None if days is None else days * condition.factor
    return evidence


def evaluate_rule(
    runtime: Runtime,
    rule_set: RuleSet,
    rule: Rule,
    now: datetime,
    *,
    dry_run: bool = False,
    stop: StopSignal | None = None,
    plan_to: PlanSink | None = None,
    at_end: RunEnd | None = None,
) -> RuleOutcome:
    """Evaluate one rule as of ``now``; apply its actions unless ``dry_run``.

    ``stop`` is checked between batches (each batch commits whole), so a shutting-down daemon
    waits for at most one batch. A dry run hands each planned firing to ``plan_to``, or keeps
    them in the outcome's ``planned`` without one. An unfinished run of the rule (see
    :mod:`~leadflow.engine.rule_runs`) is gone on with, after the subjects it went through
    (each batch marks how far it got, in its own transaction:
    :func:`~leadflow.engine.rule_runs.record_gone_through`). ``at_end`` writes in the
    transaction that finds no match left, unless a dry run or ``stop`` ends the run before.
    """
    started = time.perf_counter()
    outcome = RuleOutcome(rule.id)
    if dry_run:
        with Session(runtime.engine) as session:
            scope = _read_scope(session, rule, now, outcome)
        _plan(runtime, rule, scope.where, scope.context, outcome, plan_to or outcome.planned.append)
    else:
        _apply(runtime, rule_set, rule, now, outcome, stop, at_end)
    outcome.seconds = time.perf_counter() - started
    return outcome


@dataclass(frozen=True)
class _Scope:
    """What a run reads before its first batch, and the WHERE of its matches built from it."""

    context: EvaluationContext
    where: ColumnElement[bool]
    run_at: datetime
    """The instant its batches mark they went through (see
    :func:`~leadflow.engine.rule_runs.record_gone_through`): the run's own, or that of the
    unfinished run it finishes."""


def _read_scope(session: Session, rule: Rule, now: datetime, outcome: RuleOutcome) -> _Scope:
    """How far an unfinished run of the rule got, the averages its condition compares with and
    the pools it assigns from (the outcome's notes about them set), read in ``session``."""
    table = rule.subject.table
    finishing = unfinished_run_in(session, rule, now)
    context = EvaluationContext(
        now, averages_for(session, list(cycle_conditions(rule.condition)), now)
    )
    # The reps as plain rows, not ORM objects: the first batch's session keeps none of them.
    assigns = any(isinstance(a, Assign) for a in rule.actions)
    pools = pool_members(all_reps(session)) if assigns else {}
    outcome.cycle_note = missing_cycle_note(context)
    outcome.unstaffed_pools = unstaffed_pools_note(rule, pools)
    where = and_(to_where(rule.condition, table, context), rule_scope(rule, table, now))
    if finishing is None:
        return _Scope(context, where, now)
    return _Scope(context, and_(where, table.c.id > finishing.through), finishing.at)


def _apply(
    runtime: Runtime,
    rule_set: RuleSet,
    rule: Rule,
    now: datetime,
    outcome: RuleOutcome,
    stop: StopSignal | None,
    at_end: RunEnd | None,
) -> None:
    """Fire the rule on its matches, in id order, a batch per transaction; ``stop`` is asked
    between batches. Each batch marks, in its own transaction, that the run went through its
    last subject (see :mod:`~leadflow.engine.rule_runs`); ``at_end`` writes in the
    transaction that finds no match left."""
    model: type[Lead] | type[Deal] = Lead if rule.subject is Subject.LEAD else Deal
    table = rule.subject.table
    batch_size = runtime.settings.scheduler.evaluation_batch
    fields = list(referenced_fields(rule.condition))
    occasion = occasion_of(rule, now)
    scope: _Scope | None = None
    last_id = 0
    while True:
        if scope is not None and _stopping(stop, outcome):
            return
        with collector_paused(), transaction(runtime.engine) as session:
            if scope is None:
                # In the first batch's transaction: a connection, a ping and a commit fewer a
                # run, most of whose runs match nothing.
                scope = _read_scope(session, rule, now, outcome)
                if _stopping(stop, outcome):
                    return
            # Leads are read as plain rows (plain_rows), deals, few, as ORM objects.
            query = (
                (lead_select(scope.where) if model is Lead else select(model).where(scope.where))
                .where(table.c.id > last_id)
                .order_by(table.c.id)
                .limit(batch_size)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(of=table)
            rows = (
                as_leads(session.execute(query))
                if model is Lead
                else cast(list[Lead | Deal], list(session.scalars(query)))
            )
            if not rows:
                if at_end is not None:
                    at_end(session, outcome)
                return
            last_id = rows[-1].id or 0
            outcome.matched += len(rows)
            deals = [row for row in rows if isinstance(row, Deal)]
            leads = [] if deals else cast(list[Lead], rows)
            batch = FiringBatch.load(session, runtime.settings, now, leads, deals)
            fired = [
                label
                for row in rows
                if (
                    label := _process(
                        runtime,
                        batch,
                        rule_set,
                        rule,
                        row,
                        scope.context,
                        outcome,
                        fields,
                        occasion,
                    )
                )
            ]
            _write_batch(batch, rule, rule_set, fired, outcome)
            # With the batch, not after the run: a process killed between the two would leave
            # the batch's firings (its emails) with nothing telling the retry to skip them.
            record_gone_through(session, rule_set, rule, scope.run_at, last_id)


def _stopping(stop: StopSignal | None, outcome: RuleOutcome) -> bool:
    """Whether a shutdown asks the run to stop before its next batch (it is then interrupted)."""
    if stop is not None and stop.is_set():
        outcome.interrupted = True
    return outcome.interrupted


def _process(
    runtime: Runtime,
    batch: FiringBatch,
    rule_set: RuleSet,
    rule: Rule,
    row: Lead | Deal,
    context: EvaluationContext,
    outcome: RuleOutcome,
    fields: Sequence[FieldSpec],
    occasion: str,
) -> str | None:
    """Fire the rule on one matched row, staging its writes in the batch; return the subject
    if it fired."""
    deal = row if isinstance(row, Deal) else None
    record = RowRecord(row) if deal is not None else record_of(cast(Lead, row))
    evidence = evidence_of(rule, record, context, fields)
    lead = (
        cast(Lead, row)
        if deal is None
        else (batch.leads.get(deal.lead_id) if deal.lead_id else None)
    )
    firing = Firing(
        runtime,
        batch,
        rule_set,
        rule,
        context.now,
        lead,
        deal,
        evidence,
        occasion,
    )
    subject = f"{rule.subject.value}:{row.external_id}"
    batch.begin(lead, deal)
    try:
        fire(firing)
    except Exception as exc:  # one subject's failure is logged and counted; the batch goes on
        batch.discard(lead, deal)
        if is_outage(exc):  # ... unless the database is gone: the batch cannot go on
            raise
        _firing_failed(outcome, rule, rule_set, subject, exc)
        return None
    batch.commit(lead, deal)
    outcome.fired += 1
    return subject


def _firing_failed(
    outcome: RuleOutcome, rule: Rule, rule_set: RuleSet, subject: str, exc: Exception
) -> None:
    outcome.failed += 1
    if outcome.first_failure is None:
        outcome.first_failure = f"{subject.replace(':', ' ', 1)}: {_failure_reason(exc)}"
    if is_outage(exc) or isinstance(exc, SQLAlchemyError | ExternalSystemError):
        outcome.external_failure = True
    log_failure(
        log,
        "rule_firing_failed",
        exc,
        rule_id=rule.id,
        rule_version=rule_set.version,
        subject=subject,
    )


def _failure_reason(exc: Exception) -> str:
    """One short line on why a firing failed: a template's problem by the template's file
    name (``template rt.txt:1: cannot render: ...``), not its whole path; the user's or an
    external system's message as it is; anything else (a bug) with its type."""
    if isinstance(exc, TemplateError) and exc.problem is not None:
        problem = exc.problem
        where = Path(problem.file).name + (f":{problem.line}" if problem.line else "")
        return f"template {where}: {problem.message}"
    if not isinstance(exc, UserInputError | ExternalSystemError):
        return error_text(exc)
    return first_line(exc) or type(exc).__name__


def _write_batch(
    batch: FiringBatch, rule: Rule, rule_set: RuleSet, fired: list[str], outcome: RuleOutcome
) -> None:
    """Write the batch's firings together (one by one only if the database refuses that)."""

    def refused(subject: str, exc: Exception) -> None:
        outcome.fired -= 1
        _firing_failed(outcome, rule, rule_set, subject, exc)

    items = list(zip(fired, batch.per_firing, strict=True))
    failures = write_batch(batch.session, items, batch.now, refused)
    batch.roster.write()
    if len(fired) > failures:
        metrics.record_actions((action_name(a) for a in rule.actions), len(fired) - failures)


def _plan(
    runtime: Runtime,
    rule: Rule,
    where: ColumnElement[bool],
    context: EvaluationContext,
    outcome: RuleOutcome,
    plan_to: PlanSink,
) -> None:
    """The dry run: the same matches, reading only the columns the evidence shows, streamed."""
    table = rule.subject.table
    actions = tuple(describe_action(action) for action in rule.actions)
    rule_id, subject = rule.id, rule.subject.value
    batch = runtime.settings.scheduler.evaluation_batch
    with runtime.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Every match is read: plan for all rows, not for the first 10 % a cursor assumes
            # (in bench/evaluation_bench.py two rules on country ran about twice as fast).
            connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1")
        streamed = connection.execution_options(yield_per=batch)
        if context.cycles:  # deal rules with averages: few rows, the general path is fine
            for row in streamed.execute(select(*table.c).where(where)):
                outcome.matched += 1
                evidence = evidence_of(rule, cast(Mapping[str, Any], row._mapping), context)
                plan_to(PlannedFiring(rule_id, subject, row.external_id, actions, evidence))
            return
        columns, names, ages, times = _evidence_columns(rule, table)
        now = context.now
        for rows in streamed.execute(select(*columns).where(where)).partitions():
            outcome.matched += len(rows)
            for row in rows:
                evidence = dict(zip(names, row[1:], strict=True))
                for name in ages:
                    moment = evidence[name]
                    if moment is not None:
                        evidence[name] = round((now - moment).total_seconds() / 86400, 2)
                for name in times:
                    moment = evidence[name]
                    if moment is not None:
                        evidence[name] = moment.isoformat()
                plan_to(PlannedFiring(rule_id, subject, row[0], actions, evidence))


def _evidence_columns(
    rule: Rule, table: Table
) -> tuple[list[ColumnElement[Any]], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The external id, then one column per field the evidence shows, as :func:`evidence_of`
    shows it; and the names of those that are ages, and stored times, to convert.

    An age over several time columns (deals' ``idle_days``) reads the latest of them, computed
    in SQL as its condition does.
    """
    columns: list[ColumnElement[Any]] = [table.c.external_id]
    names: list[str] = []
    ages: list[str] = []
    times: list[str] = []
    for spec in dict.fromkeys(referenced_fields(rule.condition)):
        names.append(spec.name)
        if spec.type is ValueType.DAYS:
            columns.append(type_coerce(time_expression(spec, table), UTCDateTime()))
            ages.append(spec.name)
        else:
            column = spec.sql(table)
            columns.append(column)
            if isinstance(column.type, UTCDateTime):
                times.append(spec.name)
    return columns, tuple(names), tuple(ages), tuple(times)


def missing_cycle_note(context: EvaluationContext) -> str | None:
    """Why an ``idle_beyond_average_cycle`` condition matches no deal at this instant: no deal
    was won (with both dates) in its window, so there is no average to compare idleness with.

    A CRM export of old deals evaluated as of today is the usual cause: every open deal is
    ancient, yet the recycling rule matched 0 without a word.
    """
    for condition, average in context.cycles.items():
        if average.overall_days is None:
            since = (context.now - condition.window).date()
            return (
                f"no average sales cycle: no deal won with engaged_at and closed_at from "
                f"{since} to {context.now.date()}, so idle_beyond_average_cycle matches no deal"
            )
    return None


def run_rule(
    runtime: Runtime,
    rule_set: RuleSet,
    rule: Rule,
    now: datetime,
    *,
    dry_run: bool = False,
    stop: StopSignal | None = None,
    plan_to: PlanSink | None = None,
) -> RuleOutcome:
    """Evaluate one rule inside the per-rule error boundary and record the run.

    A rule that raises is logged with its id and returned with ``error`` set; it never stops
    the caller. A run interrupted by ``stop`` between batches is not recorded, so the rule is
    still due (and its remaining matches are processed) at the next start. A run that
    finishes one that failed or was interrupted part-way leaves out the subjects that run went
    through (see :mod:`~leadflow.engine.rule_runs`).
    """

    def recorded(session: Session, outcome: RuleOutcome) -> None:
        # With the run's last transaction: a connection, a ping and a commit fewer a run.
        record_run_in(
            session,
            rule_set,
            rule,
            now,
            matched=outcome.matched,
            error=None,
            failed_firings=outcome.failed,
            first_failure=outcome.first_failure,
        )

    try:
        outcome = evaluate_rule(
            runtime,
            rule_set,
            rule,
            now,
            dry_run=dry_run,
            stop=stop,
            plan_to=plan_to,
            at_end=recorded,
        )
    except BrokenPipeError:  # a dry run's reader went away (`| head`): not the rule's failure
        raise
    except Exception as exc:  # one failing rule never stops the others
        log_failure(log, "rule_failed", exc, rule_id=rule.id, rule_version=rule_set.version)
        outcome = RuleOutcome(
            rule.id,
            # One line, as the log says it: SQLAlchemy's message goes on with the statement and
            # its parameters (the leads' data), which `leadflow status` showed in full.
            error=error_text(exc),
            external_failure=isinstance(exc, SQLAlchemyError | ExternalSystemError),
        )
    else:
        log.info(
            "rule_evaluated",
            rule_id=rule.id,
            rule_version=rule_set.version,
            matched=outcome.matched,
            fired=outcome.fired,
            failed=outcome.failed,
            seconds=round(outcome.seconds, 3),
            dry_run=dry_run,
            interrupted=outcome.interrupted,
        )
        if outcome.cycle_note:
            log.warning("rule_matches_nothing", rule_id=rule.id, reason=outcome.cycle_note)
        if outcome.unstaffed_pools and runtime.first_time(
            ("assignment_pool_unstaffed", rule.id, rule_set.version, outcome.unstaffed_pools)
        ):
            # Once per rule version (and staffing): every evaluation would repeat it.
            log.warning(
                "assignment_pool_unstaffed",
                rule_id=rule.id,
                rule_version=rule_set.version,
                reason=outcome.unstaffed_pools,
            )
    if dry_run or outcome.interrupted:
        return outcome
    if outcome.error is not None:  # a run that succeeded was recorded as it ended (above)
        record_run(
            runtime.engine,
            rule_set,
            rule,
            now,
            matched=outcome.matched,
            error=outcome.error,
        )
    metrics.record_evaluation(
        rule.id,
        seconds=outcome.seconds,
        matched=outcome.matched,
        error=outcome.error,
        failed_firings=outcome.failed,
    )
    return outcome
