"""What the store holds right now, as data: ``leadflow status`` renders it.

It holds the funnel (leads by stage and owner, deals, reps), the MQL queue, the outbox, SLA
timers, rule runs and the last import of each kind. A new section is a field of
:class:`StoreStatus` and a query in :func:`collect_status`; rendering stays in
``leadflow.cli.status_command``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine, Table, func, select

from leadflow.clock import as_utc
from leadflow.store.run_processes import process_gone
from leadflow.store.tables import (
    DEALS,
    IMPORT_RUNS,
    LEADS,
    NURTURE,
    OUTBOX,
    REPS,
    RULE_RUNS,
    SCORING_FAILURES,
    SCORING_RUNS,
    SLA_TIMERS,
)

IMPORT_KINDS = ("reps", "leads", "deals", "activities")


@dataclass(frozen=True)
class ScoringFailure:
    """The model's pass failing at every attempt since ``failures`` passes ago (the row the
    scoring pass keeps in ``scoring_failures`` until one succeeds)."""

    model_version: str
    failed_at: datetime
    error: str
    """One line: which leads, what the database refused."""
    failures: int
    """Failed passes in a row."""


@dataclass(frozen=True)
class LastImport:
    """The newest ``leadflow import`` of one kind."""

    kind: str
    file: str
    finished_at: datetime | None
    status: str
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    superseded: int = 0
    """Rows not written because a later row of the file has their id."""


@dataclass(frozen=True)
class RuleRunStatus:
    """The last evaluation of one rule, as the daemon (or ``run --once``) recorded it."""

    rule_id: str
    rule_version: str
    last_started_at: datetime | None
    status: str
    matched: int
    error: str | None
    first_seen_at: datetime | None = None
    """When the daemon first scheduled the rule, if it had not run then (cron rules)."""
    last_finished_at: datetime | None = None
    """The evaluation instant of the last recorded run, failed or not; ``last_started_at`` is
    that of the last successful one, which the schedule counts from."""
    schedule: str | None = None
    """The schedule it last ran or was first seen on, as ``rule_runs`` keeps it."""
    failed_firings: int = 0
    """How many firings of the last run failed (``status`` ``firings_failed``; ``error`` then
    says ``N failed; first: LEAD: REASON``)."""

    @property
    def last_run_at(self) -> datetime | None:
        """When the rule last ran, whatever the outcome."""
        return last_run_of(self.last_finished_at, self.last_started_at)


def last_run_of(
    last_finished_at: datetime | None, last_started_at: datetime | None
) -> datetime | None:
    """A ``rule_runs`` row's last run, failed or not (the schedule counts from the last
    successful start): the status command and the dashboard's Rules page say the same."""
    return last_finished_at or last_started_at


def shown_run_status(status: str | None, failed_firings: int | None) -> str:
    """A rule's last run as the status command and the Rules page show it: ``3 firings
    failed`` for a run whose firings failed (it read ``ok``), else the recorded status; ``-``
    for a rule that never ran."""
    if status == "firings_failed" and failed_firings:
        return f"{failed_firings} firing{'' if failed_firings == 1 else 's'} failed"
    return status or "-"


@dataclass(frozen=True)
class ScoringStatus:
    """The scoring model's last pass, and the leads per grade it left."""

    model_version: str
    last_run_at: datetime
    changed: int
    leads_by_grade: dict[str, int]


@dataclass(frozen=True)
class FailingNurtureStep:
    """Active enrollments whose next step of one stream keeps failing (its email cannot be
    rendered for them): how many, and the newest of their errors."""

    stream: str
    step: int
    """1 for the stream's first step, as the audit counts them."""
    enrollments: int
    last_error: str | None
    last_failed_at: datetime | None
    template: str | None = None
    """The step's template, when the rules folder names it (filled in by ``leadflow status``)."""


@dataclass(frozen=True)
class OutboxClaim:
    """``sending`` rows of one sender: its ``claimed_by``, how many, the last lease's end."""

    claimed_by: str | None
    messages: int
    lease_until: datetime


@dataclass(frozen=True)
class StoreStatus:
    """Counts that say how the funnel stands."""

    leads_by_stage: dict[str, int] = field(default_factory=dict)
    leads_by_owner_stage: dict[tuple[str | None, str], int] = field(default_factory=dict)
    """(owner's name or None for unowned, stage) -> leads."""
    deals_open: int = 0
    deals_closed: dict[str, int] = field(default_factory=dict)
    """outcome (won, lost, recycled) -> deals."""
    reps_active: int = 0
    reps_inactive: int = 0
    last_imports: dict[str, LastImport] = field(default_factory=dict)
    mql_queue: list[tuple[str, datetime]] = field(default_factory=list)
    """MQLs no rep could take yet (external id, waiting since), the longest waiting first."""
    mql_queue_total: int = 0
    outbox_by_status: dict[str, int] = field(default_factory=dict)
    oldest_pending_at: datetime | None = None
    outbox_claims: list[OutboxClaim] = field(default_factory=list)
    """The senders holding ``sending`` rows, whether alive or not (the outbox package tells)."""
    slas_by_status: dict[str, int] = field(default_factory=dict)
    rule_runs: list[RuleRunStatus] = field(default_factory=list)
    scoring: ScoringStatus | None = None
    """None until a scoring model's first pass."""
    failing_nurture: list[FailingNurtureStep] = field(default_factory=list)
    scoring_failure: ScoringFailure | None = None
    """The scoring pass failing since its last success; None when it does not fail."""

    @property
    def leads_total(self) -> int:
        return sum(self.leads_by_stage.values())


def collect_status(engine: Engine, *, mql_stage: str = "mql", queue_shown: int = 10) -> StoreStatus:
    """Read every section in one read transaction."""
    with engine.connect() as connection:
        queue, queue_total = _mql_queue(connection, mql_stage, queue_shown)
        return StoreStatus(
            mql_queue=queue,
            mql_queue_total=queue_total,
            outbox_by_status=_counts(connection, OUTBOX, "status"),
            oldest_pending_at=_oldest_pending(connection),
            outbox_claims=_outbox_claims(connection),
            slas_by_status=_counts(connection, SLA_TIMERS, "status"),
            rule_runs=_rule_runs(connection),
            leads_by_stage=_leads_by_stage(connection),
            leads_by_owner_stage=_leads_by_owner_stage(connection),
            deals_open=_deals_open(connection),
            deals_closed=_deals_closed(connection),
            reps_active=_reps(connection, active=True),
            reps_inactive=_reps(connection, active=False),
            last_imports=_last_imports(connection),
            scoring=_scoring(connection),
            failing_nurture=failing_nurture_steps(connection),
            scoring_failure=_scoring_failure(connection),
        )


def leads_by_stage(engine: Engine) -> dict[str, int]:
    """Leads per stage, as ``leadflow status`` counts them (the dashboard's funnel reads it)."""
    with engine.connect() as connection:
        return _leads_by_stage(connection)


def _leads_by_stage(connection: Connection) -> dict[str, int]:
    leads = LEADS
    query = select(leads.c.stage, func.count()).group_by(leads.c.stage).order_by(leads.c.stage)
    return {stage: count for stage, count in connection.execute(query)}


def _leads_by_owner_stage(connection: Connection) -> dict[tuple[str | None, str], int]:
    leads, reps = LEADS, REPS
    query = (
        select(reps.c.name, leads.c.stage, func.count())
        .select_from(leads.outerjoin(reps, leads.c.owner_id == reps.c.id))
        .group_by(reps.c.name, leads.c.stage)
    )
    rows = connection.execute(query).all()
    ordered = sorted(rows, key=lambda row: (row[0] is None, row[0] or "", row[1]))
    return {(name, stage): count for name, stage, count in ordered}


def _deals_open(connection: Connection) -> int:
    deals = DEALS
    query = select(func.count()).select_from(deals).where(deals.c.outcome.is_(None))
    return int(connection.execute(query).scalar_one())


def _deals_closed(connection: Connection) -> dict[str, int]:
    deals = DEALS
    query = (
        select(deals.c.outcome, func.count())
        .where(deals.c.outcome.is_not(None))
        .group_by(deals.c.outcome)
        .order_by(deals.c.outcome)
    )
    return {outcome: count for outcome, count in connection.execute(query)}


def _reps(connection: Connection, *, active: bool) -> int:
    reps = REPS
    query = select(func.count()).select_from(reps).where(reps.c.active.is_(active))
    return int(connection.execute(query).scalar_one())


def _last_imports(connection: Connection) -> dict[str, LastImport]:
    runs = IMPORT_RUNS
    newest = select(runs.c.kind, func.max(runs.c.id).label("id")).group_by(runs.c.kind).subquery()
    query = select(runs).join(newest, runs.c.id == newest.c.id)
    found = {}
    for row in connection.execute(query).mappings():
        found[row["kind"]] = LastImport(
            kind=row["kind"],
            file=row["file"],
            finished_at=row["finished_at"],
            status=_run_status(row["status"], row["host"], row["pid"]),
            inserted=row["inserted"],
            updated=row["updated"],
            unchanged=row["unchanged"],
            rejected=row["rejected"],
            superseded=row["superseded"],
        )
    return {kind: found[kind] for kind in IMPORT_KINDS if kind in found}


def _run_status(status: str, host: str | None, pid: int | None) -> str:
    """``interrupted`` for a run never finished whose process is gone (killed, a power cut):
    its row stays ``running`` in the table, as nothing was left to finish it."""
    if status == "running" and process_gone(host, pid):
        return "interrupted"
    return status


def _mql_queue(
    connection: Connection, mql_stage: str, shown: int
) -> tuple[list[tuple[str, datetime]], int]:
    leads = LEADS
    waiting = (leads.c.stage == mql_stage, leads.c.owner_id.is_(None))
    total = int(
        connection.execute(select(func.count()).select_from(leads).where(*waiting)).scalar_one()
    )
    query = (
        select(leads.c.external_id, leads.c.stage_entered_at)
        .where(*waiting)
        .order_by(leads.c.stage_entered_at)
        .limit(shown)
    )
    return [(row.external_id, row.stage_entered_at) for row in connection.execute(query)], total


def _counts(connection: Connection, table: Table, column: str) -> dict[str, int]:
    query = (
        select(table.c[column], func.count()).group_by(table.c[column]).order_by(table.c[column])
    )
    return {str(value): int(count) for value, count in connection.execute(query)}


def _oldest_pending(connection: Connection) -> datetime | None:
    outbox = OUTBOX
    query = select(func.min(outbox.c.created_at)).where(outbox.c.status.in_(("pending", "sending")))
    found: datetime | None = connection.execute(query).scalar_one()
    return found


def _outbox_claims(connection: Connection) -> list[OutboxClaim]:
    outbox = OUTBOX
    query = (
        select(outbox.c.claimed_by, func.count(), func.max(outbox.c.claimed_until))
        .where(outbox.c.status == "sending")
        .group_by(outbox.c.claimed_by)
        .order_by(outbox.c.claimed_by)
    )
    return [
        OutboxClaim(by, count, as_utc(until))
        for by, count, until in connection.execute(query)
        if until is not None
    ]


def _rule_runs(connection: Connection) -> list[RuleRunStatus]:
    runs = RULE_RUNS
    return [
        RuleRunStatus(
            row.rule_id,
            row.rule_version,
            row.last_started_at,
            row.last_status,
            row.matched,
            row.last_error,
            row.first_seen_at,
            row.last_finished_at,
            row.schedule,
            row.failed_firings,
        )
        for row in connection.execute(select(runs).order_by(runs.c.rule_id))
    ]


def _scoring_failure(connection: Connection) -> ScoringFailure | None:
    row = connection.execute(
        select(
            SCORING_FAILURES.c.model_version,
            SCORING_FAILURES.c.failed_at,
            SCORING_FAILURES.c.error,
            SCORING_FAILURES.c.failures,
        )
        .order_by(SCORING_FAILURES.c.failed_at.desc())
        .limit(1)
    ).first()
    return None if row is None else ScoringFailure(*row)


def _scoring(connection: Connection) -> ScoringStatus | None:
    last = connection.execute(
        select(SCORING_RUNS.c.model_version, SCORING_RUNS.c.last_run_at, SCORING_RUNS.c.changed)
    ).first()
    if last is None:
        return None
    grades = connection.execute(
        select(LEADS.c.score_grade, func.count())
        .where(LEADS.c.score_grade.is_not(None))
        .group_by(LEADS.c.score_grade)
        .order_by(LEADS.c.score_grade)
    )
    return ScoringStatus(last[0], last[1], last[2], {grade: count for grade, count in grades})


def failing_nurture_steps(connection: Connection) -> list[FailingNurtureStep]:
    """Failing steps by stream and step, with the newest error of each: one query, its window
    functions counting each group and picking its newest row (it was one more query per group)."""
    nurture = NURTURE
    group = (nurture.c.stream, nurture.c.next_step)
    newest_first = (nurture.c.last_failed_at.desc(), nurture.c.id.desc())
    ranked = (
        select(
            *group,
            func.count().over(partition_by=group).label("enrollments"),
            func.row_number().over(partition_by=group, order_by=newest_first).label("rank"),
            nurture.c.last_error,
            nurture.c.last_failed_at,
        )
        .where(nurture.c.status == "active", nurture.c.failures > 0)
        .subquery()
    )
    rows = connection.execute(
        select(
            ranked.c.stream,
            ranked.c.next_step,
            ranked.c.enrollments,
            ranked.c.last_error,
            ranked.c.last_failed_at,
        )
        .where(ranked.c.rank == 1)
        .order_by(ranked.c.stream, ranked.c.next_step)
    )
    return [
        FailingNurtureStep(stream, step + 1, count, error, failed_at)
        for stream, step, count, error, failed_at in rows
    ]
