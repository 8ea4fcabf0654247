"""The funnel's tables. Times are aware UTC; JSON columns hold typed attributes and evidence.

The migrations under ``store/migrations/versions`` build these tables exactly: ``0001`` creates
them, ``0002`` adds ``rule_runs.first_seen_at``, ``0003`` ``store_secrets``, ``0004`` the
indexes by lead on SLA timers and enrollments, ``0005`` the outbox index retention deletes by,
``0006`` lead scoring (the score's parts, ``score_changes``, ``activities.machine``,
``scoring_runs``), ``0007`` ``stage_changes``, ``0008`` the indexes the dashboard's search uses,
``0010`` ``leads.score_next_change_day``, its index and the triggers that clear it
(:mod:`leadflow.store.score_marks`), ``0011`` ``scoring_runs.engagement_version``, ``0012``
folds a rule's owner change into the entry the same firing made (data only), ``0013``
``leads.first_source``, ``0014`` ``rule_runs.unfinished_at`` and ``unfinished_through``,
``0015`` the failing-step columns of ``nurture_enrollments``, ``0016`` scores in 64 bits on
PostgreSQL, ``0017`` ``scoring_runs.last_activity_id``, ``0019`` ``scoring_runs.pass_activity_id``
and the trigger that lowers both on SQLite (:mod:`leadflow.store.activity_ids`), ``0020``
``import_runs.superseded``, ``0021`` ``rule_runs.schedule``, ``0022`` a deal's owner change where
its history held another owner (data only), ``0023`` ``nurture_enrollments.steps_skipped``,
``0024`` ``import_runs.host`` and ``pid``, ``0025`` ``rule_runs.failed_firings``, ``0026``
``evaluator_leader``. A test
compares the schema at the head migration with this metadata so they cannot drift.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    event,
    false,
)
from sqlmodel import Field, SQLModel

from leadflow.store.activity_ids import create_pass_marks_trigger
from leadflow.store.score_marks import create_score_marks
from leadflow.store.types import JSONDocument, UTCDateTime

metadata = SQLModel.metadata

POINTS = BigInteger().with_variant(Integer(), "sqlite")
"""A score or a part of one: 64-bit, so no model and no store can overflow it (a criterion's
points are at most 1,000,000 per activity; 2^63 would take 9.2 trillion counted activities).
SQLite's INTEGER is 64-bit already (revision 0016)."""


def _points(
    *, nullable: bool, default: int | None = None, server_default: str | None = None
) -> Any:
    column = Column(POINTS, nullable=nullable, default=default, server_default=server_default)
    if default is None and not nullable:
        return Field(sa_column=column)  # required: a history row says its old and new score
    return Field(default=default, sa_column=column)


def _time(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_column=Column(JSONDocument, nullable=False))


def source_at_creation(attributes: object) -> str | None:
    """The ``source`` attribute of a new lead's attributes, as ``leads.first_source`` keeps it:
    the text as it is, another JSON value as its JSON text (what PostgreSQL's ``->>`` gives,
    which the report grouped by before the column), none when absent or null."""
    if not isinstance(attributes, dict):
        return None
    source = attributes.get("source")
    if source is None or isinstance(source, str):
        return source
    return json.dumps(source)


def _first_source(context: Any) -> str | None:
    """The column's value for an insert that does not give it (a Core or ORM insert: the
    demo, rule tests' given leads, tests); the import's writers give it themselves."""
    return source_at_creation(context.get_current_parameters().get("attributes"))


def _fk(target: str, *, index: bool = False) -> Any:
    return Field(
        default=None, sa_column=Column(Integer, ForeignKey(target), nullable=True, index=index)
    )


class Rep(SQLModel, table=True):
    """A sales rep or manager who can own leads and receive notifications."""

    __tablename__ = "reps"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=200, unique=True)
    name: str = Field(max_length=300)
    email: str = Field(max_length=320)
    manager_id: int | None = _fk("reps.id")
    pools: list[str] = _json(list)
    capacity: int | None = None
    active: bool = True
    timezone: str = Field(default="UTC", max_length=64)
    out_of_office_until: datetime | None = _time()
    source_hash: str | None = Field(default=None, max_length=32)
    created_at: datetime = _time(nullable=False)
    updated_at: datetime = _time(nullable=False)


class Lead(SQLModel, table=True):
    """A person at a company, moving through the stages."""

    __tablename__ = "leads"
    __table_args__ = (
        Index("ix_leads_stage_score", "stage", "score"),
        Index("ix_leads_owner_stage", "owner_id", "stage"),
        # Funnel rules filter on a stage and then a time or a score: these serve them.
        Index("ix_leads_stage_entered", "stage", "stage_entered_at"),
        Index("ix_leads_stage_activity", "stage", "last_activity_at"),
        # The dashboard's search by the start of an email or a company (migration 0008).
        Index("ix_leads_email", "email"),
        Index("ix_leads_company", "company"),
        # A steady rescoring pass reads the leads due by it (migration 0010).
        Index("ix_leads_score_next_change", "score_next_change_day"),
    )

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=200, unique=True)
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=300)
    company: str | None = Field(default=None, max_length=300)
    attributes: dict[str, Any] = _json(dict)
    score: int = _points(nullable=False, default=0)
    score_fit: int | None = _points(nullable=True)
    score_engagement: int | None = _points(nullable=True)
    score_adjustment: int = _points(nullable=False, default=0, server_default="0")
    """What ``adjust_score``/``set_score`` actions added: kept apart so a scoring model's pass
    (``score = fit + engagement + adjustment``) does not undo a rule's adjustment."""
    score_grade: str | None = Field(default=None, max_length=2)
    scored_at: datetime | None = _time()
    """When the scoring model last computed a different score, fit, engagement or grade: the
    instant its stored parts are exact for (``leadflow score explain`` explains that one)."""
    score_next_change_day: float | None = Field(
        default=None, sa_column=Column(Float, nullable=True)
    )
    """The earliest instant (days since 1970-01-01 UTC) the stored engagement can change with
    no new activity, as the model's last pass found it (a little early, never late); NULL: not
    known, the next pass rescores the lead (new leads, and any write to the lead or one of its
    activities, which triggers mark; negative values are marks too). A steady pass rescores
    only the leads due by it."""
    stage: str = Field(default="lead", max_length=40)
    stage_entered_at: datetime = _time(nullable=False)
    owner_id: int | None = _fk("reps.id")
    previous_owner_id: int | None = _fk("reps.id")
    last_activity_at: datetime | None = _time()
    unsubscribed: bool = False
    do_not_email: bool = False
    hard_bounced: bool = False
    timezone: str | None = Field(default=None, max_length=64)
    first_source: str | None = Field(
        default=None, sa_column=Column(Text, nullable=True, default=_first_source)
    )
    """The ``source`` attribute the lead had when leadflow stored it (first-touch attribution,
    HubSpot's "Original Source"): set by every insert, never changed by an update, except from
    NULL (no source at creation) to the first source an import or the API gives. Leads stored
    before migration 0013 have their source at the migration."""
    source_hash: str | None = Field(default=None, max_length=32)
    created_at: datetime = _time(nullable=False)
    updated_at: datetime = _time(nullable=False)


MAX_AMOUNT = 1e15
"""The most a deal's amount may be (a thousand trillion, more than any CRM's currency field
holds in practice). A sum of a million such deals is still far inside a float's range, so the
report's won amount, open value and velocity are always numbers; 1e308 twice was not one."""
AMOUNT_LIMIT = f"{MAX_AMOUNT:,.0f} (1e15)"
"""The maximum as messages write it."""


class Deal(SQLModel, table=True):
    """An opportunity in the pipeline; ``outcome`` is null while it is open."""

    __tablename__ = "deals"
    __table_args__ = (
        Index("ix_deals_outcome_closed", "outcome", "closed_at"),
        Index("ix_deals_outcome_engaged", "outcome", "engaged_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=200, unique=True)
    lead_id: int | None = _fk("leads.id", index=True)
    account: str | None = Field(default=None, max_length=300)
    product: str | None = Field(default=None, max_length=200)
    owner_id: int | None = _fk("reps.id", index=True)
    stage: str = Field(max_length=60)
    outcome: str | None = Field(default=None, max_length=20)
    amount: float | None = None
    engaged_at: datetime | None = _time()
    closed_at: datetime | None = _time()
    last_activity_at: datetime | None = _time()
    attributes: dict[str, Any] = _json(dict)
    recycle_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    source_hash: str | None = Field(default=None, max_length=32)
    created_at: datetime = _time(nullable=False)
    updated_at: datetime = _time(nullable=False)


class Activity(SQLModel, table=True):
    """Something a lead or a rep did (visit, email reply, call by the owner)."""

    __tablename__ = "activities"
    __table_args__ = (
        Index("ix_activities_lead_time", "lead_id", "occurred_at"),
        Index("ix_activities_deal_time", "deal_id", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=200, unique=True)
    lead_id: int | None = _fk("leads.id")
    deal_id: int | None = _fk("deals.id")
    type: str = Field(max_length=60)
    actor_id: int | None = _fk("reps.id")
    occurred_at: datetime = _time(nullable=False)
    properties: dict[str, Any] = _json(dict)
    machine: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    """Not a person: a mail privacy proxy's open, a link scanner's click. Kept, worth no points."""
    source_hash: str | None = Field(default=None, max_length=32)
    created_at: datetime = _time(nullable=False)


class AuditEntry(SQLModel, table=True):
    """Append-only: every action, with the rule version and the values that made it happen."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_lead_at", "lead_id", "at"),
        Index("ix_audit_deal_at", "deal_id", "at"),
        Index("ix_audit_rule_at", "rule_id", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _time(nullable=False, index=True)
    source: str = Field(max_length=20)
    rule_id: str | None = Field(default=None, max_length=200)
    rule_version: str | None = Field(default=None, max_length=80)
    lead_id: int | None = _fk("leads.id")
    deal_id: int | None = _fk("deals.id")
    action: str = Field(max_length=60)
    params: dict[str, Any] = _json(dict)
    evidence: dict[str, Any] = _json(dict)


class OutboxMessage(SQLModel, table=True):
    """A message to deliver, written in the transaction of the change that causes it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        # Retention deletes settled rows by age, a batch at a time (migration 0005).
        Index("ix_outbox_status_created", "status", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=400, unique=True)
    message_id: str = Field(max_length=400, unique=True)
    channel: str = Field(default="email", max_length=20)
    category: str = Field(default="operational", max_length=20)
    lead_id: int | None = _fk("leads.id", index=True)
    deal_id: int | None = _fk("deals.id")
    rule_id: str | None = Field(default=None, max_length=200)
    rule_version: str | None = Field(default=None, max_length=80)
    recipient: str = Field(max_length=2000)
    subject: str = Field(default="", sa_column=Column(Text, nullable=False))
    body_text: str = Field(default="", sa_column=Column(Text, nullable=False))
    body_html: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    headers: dict[str, Any] = _json(dict)
    status: str = Field(default="pending", max_length=20)
    status_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    attempts: int = 0
    next_attempt_at: datetime = _time(nullable=False)
    claimed_until: datetime | None = _time()
    claimed_by: str | None = Field(default=None, max_length=200)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _time(nullable=False)
    sent_at: datetime | None = _time()


class SlaTimer(SQLModel, table=True):
    """A named SLA started by a rule; ``level`` counts the escalation levels already fired."""

    __tablename__ = "sla_timers"
    __table_args__ = (
        Index("ix_sla_status_due", "status", "due_at"),
        Index("ix_sla_status_next", "status", "next_escalation_at"),
        # A restarted SLA cancels the lead's running timer: found by lead, not by scan.
        Index("ix_sla_lead_status", "lead_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("leads.id"), nullable=False))
    name: str = Field(max_length=100)
    rule_id: str = Field(max_length=200)
    rule_version: str = Field(max_length=80)
    owner_id: int | None = _fk("reps.id")
    started_at: datetime = _time(nullable=False)
    due_at: datetime = _time(nullable=False)
    calendar: str = Field(default="default", max_length=100)
    ladder: list[dict[str, Any]] = _json(list)
    """The escalation levels as the rule said when the SLA started: later edits don't move it."""
    met_by: dict[str, Any] = _json(dict)
    level: int = 0
    next_escalation_at: datetime | None = _time()
    status: str = Field(default="running", max_length=20)
    closed_at: datetime | None = _time()
    close_reason: str | None = Field(default=None, max_length=200)


class NurtureEnrollment(SQLModel, table=True):
    """A lead's place in a nurture stream: the next step and when it is due."""

    __tablename__ = "nurture_enrollments"
    __table_args__ = (
        Index("ix_nurture_status_next", "status", "next_step_at"),
        # A lead leaving nurture ends its active enrollments: found by lead, not by scan.
        Index("ix_nurture_lead_status", "lead_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("leads.id"), nullable=False))
    stream: str = Field(max_length=100)
    rule_id: str | None = Field(default=None, max_length=200)
    enrolled_at: datetime = _time(nullable=False)
    next_step: int = 0
    next_step_at: datetime | None = _time()
    status: str = Field(default="active", max_length=20)
    exit_reason: str | None = Field(default=None, max_length=200)
    exited_at: datetime | None = _time()
    failures: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    """Failed attempts at the next step in a row (its email could not be rendered): each
    waits longer before the next (engine/nurture.py); a sent step sets it back to 0."""
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_failed_at: datetime | None = _time()
    steps_skipped: dict[str, int] | None = Field(
        default=None, sa_column=Column(JSONDocument, nullable=True)
    )
    """The steps gone through without an email queued, by reason (``{"no email address": 2}``):
    what the completion's reason says (engine/nurture.py); None when none was."""


class RuleFiring(SQLModel, table=True):
    """One rule acting on one lead or deal: what re-entry policies are checked against."""

    __tablename__ = "rule_firings"
    __table_args__ = (
        Index("ix_firings_rule_subject", "rule_id", "subject_kind", "subject_id", "fired_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    rule_id: str = Field(max_length=200)
    rule_version: str = Field(max_length=80)
    subject_kind: str = Field(max_length=10)
    subject_id: int
    fired_at: datetime = _time(nullable=False)


class RuleRun(SQLModel, table=True):
    """The last evaluation of each rule: decides what is due after a restart."""

    __tablename__ = "rule_runs"

    rule_id: str = Field(primary_key=True, max_length=200)
    rule_version: str = Field(max_length=80)
    last_started_at: datetime | None = _time()
    last_finished_at: datetime | None = _time()
    last_status: str = Field(default="never", max_length=20)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    matched: int = 0
    first_seen_at: datetime | None = _time()
    """When the daemon first scheduled the rule while it had never run (cron rules only)."""
    unfinished_at: datetime | None = _time()
    """The instant of a run that failed or was stopped after committing some batches."""
    unfinished_through: int | None = None
    """The last subject id that unfinished run went through (its batches go in id order)."""
    schedule: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The schedule it last ran or was first seen on (:meth:`Schedule.to_record`)."""
    failed_firings: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, default=0, server_default="0")
    )
    """How many firings of the last run failed (``last_status`` ``firings_failed``): rolled
    back, while the rule's other firings went on."""


class AssignmentRotation(SQLModel, table=True):
    """Where round robin stands in each pool, so it stays fair across restarts."""

    __tablename__ = "assignment_rotations"

    pool: str = Field(primary_key=True, max_length=100)
    last_rep_id: int | None = _fk("reps.id")
    updated_at: datetime = _time(nullable=False)


class ImportRun(SQLModel, table=True):
    """One ``leadflow import``: what it read and what it did."""

    __tablename__ = "import_runs"
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=20)
    file: str = Field(sa_column=Column(String(2000), nullable=False))
    started_at: datetime = _time(nullable=False)
    finished_at: datetime | None = _time()
    status: str = Field(default="running", max_length=20)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    superseded: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
    """Rows not written because a later row of the file has their id."""
    host: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    pid: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    """The importing process: a ``running`` run whose process is gone was interrupted."""


class StoreSecret(SQLModel, table=True):
    """A secret leadflow generated for itself because the configuration gave none (the
    unsubscribe links' HMAC key): kept with the data it protects, so every process on the store
    signs and verifies with the same key, across restarts and replicas."""

    __tablename__ = "store_secrets"

    name: str = Field(primary_key=True, max_length=100)
    value: str = Field(max_length=200)
    created_at: datetime = _time(nullable=False)


class EvaluatorLeader(SQLModel, table=True):
    """The daemon that last became the evaluator (the leader), written as it became it.

    Only the lock says whether it still leads (:mod:`leadflow.service.leadership`): this row
    says who took it, and since when. ``backend_pid`` is its lock session's server process on
    PostgreSQL (``pg_locks`` names the holder by it); NULL on SQLite."""

    __tablename__ = "evaluator_leader"

    role: str = Field(primary_key=True, max_length=20)
    """``evaluator``: the one row."""
    host: str = Field(sa_column=Column(String(255), nullable=False))
    pid: int = Field(sa_column=Column(Integer, nullable=False))
    backend_pid: int | None = Field(default=None, sa_column=Column(Integer, nullable=True))
    since: datetime = _time(nullable=False)


class ScoreChange(SQLModel, table=True):
    """One change of a lead's score: old and new total and parts, and why it changed."""

    __tablename__ = "score_changes"
    __table_args__ = (
        Index("ix_score_changes_lead_at", "lead_id", "at"),
        Index("ix_score_changes_at", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(sa_column=Column(Integer, ForeignKey("leads.id"), nullable=False))
    at: datetime = _time(nullable=False)
    old_score: int = _points(nullable=False)
    new_score: int = _points(nullable=False)
    old_fit: int | None = _points(nullable=True)
    new_fit: int | None = _points(nullable=True)
    old_engagement: int | None = _points(nullable=True)
    new_engagement: int | None = _points(nullable=True)
    cause: str = Field(max_length=40)
    """``model`` (the scoring model changed), ``fit`` (the lead's data), ``activity`` (an
    activity arrived or came to count), ``decay`` (time alone), ``earlier`` (a pass as of an
    instant before the last one's), ``rule`` (an adjust_score/set_score action),
    ``recomputed`` (a score set outside the model put back): docs/scoring.md."""
    detail: str | None = Field(default=None, max_length=400)
    model_version: str | None = Field(default=None, max_length=80)


class ScoringRun(SQLModel, table=True):
    """The last scoring pass of the model: the version it ran, so a new one is named as a cause."""

    __tablename__ = "scoring_runs"

    model: str = Field(primary_key=True, max_length=100)
    model_version: str = Field(max_length=80)
    last_run_at: datetime = _time(nullable=False)
    changed: int = 0
    engagement_version: str | None = Field(default=None, max_length=80)
    """The digest of the model's engagement criteria alone (NULL before revision 0011)."""
    last_activity_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """The highest activity id when the pass started: an activity with a higher one reached
    leadflow after it (NULL before revision 0017, or with no activity yet). On SQLite a delete
    of the highest ids brings it down to the highest left (:mod:`leadflow.store.activity_ids`)."""
    pass_activity_id: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """The highest activity id when the pass under way started, brought down alike; the pass
    records it as ``last_activity_id`` (NULL: no pass under way, or none yet)."""


class ScoringFailure(SQLModel, table=True):
    """The model's scoring pass failing (the database refused a value it computed): kept until
    a pass succeeds, for ``leadflow status``; the log alone said it, once a tick."""

    __tablename__ = "scoring_failures"

    model: str = Field(primary_key=True, max_length=100)
    model_version: str = Field(max_length=80)
    """The version whose pass failed."""
    failed_at: datetime = _time(nullable=False)
    """The ``now`` of the last failed pass."""
    error: str = Field(sa_column=Column(Text, nullable=False))
    """Its error, one line."""
    failures: int = 1
    """Failed passes in a row."""


_HISTORY_ORDER = ("at", "id", "to_stage", "from_stage", "to_owner_id")
_ENTRY = ("from_stage", "lead_id", "to_owner_id")


class StageChange(SQLModel, table=True):
    """One move of a lead or a deal: from a stage to another, or from an owner to another.

    A row whose ``from_stage`` equals its ``to_stage`` is an owner change only; every other row
    is an entry into ``to_stage`` (``from_stage`` is null for a lead's or deal's first stage).
    A deal's stage is its outcome once closed (``won``, ``lost``, ``recycled``), its pipeline
    stage while open. Written in the transaction of the change, by every path that changes it.
    """

    __tablename__ = "stage_changes"
    __table_args__ = (
        Index("ix_stage_changes_lead", "lead_id", "id"),
        Index("ix_stage_changes_deal", "deal_id", "id"),
        # With the columns a count of entries reads, so it reads no table row (0009).
        Index("ix_stage_changes_to_at", "to_stage", "at", *_ENTRY),
        Index("ix_stage_changes_at", "at", "to_stage", *_ENTRY),
        # Each subject's history in order, with what the report's windows read (0009).
        Index("ix_stage_changes_lead_order", "lead_id", *_HISTORY_ORDER),
        Index("ix_stage_changes_deal_order", "deal_id", *_HISTORY_ORDER),
    )

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int | None = _fk("leads.id")
    deal_id: int | None = _fk("deals.id")
    at: datetime = _time(nullable=False)
    from_stage: str | None = Field(default=None, max_length=60)
    to_stage: str = Field(max_length=60)
    from_owner_id: int | None = _fk("reps.id")
    to_owner_id: int | None = _fk("reps.id")
    cause: str = Field(max_length=20)
    """``rule``, ``import``, ``api``, ``reassignment`` (an SLA gave the lead to another rep) or
    ``migration`` (rebuilt from the audit when the table was created)."""
    rule_id: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, max_length=400)
    """The rule set version of a rule's change, the file of an import."""


@event.listens_for(metadata.tables["activities"], "after_create")
def _mark_scores_on_activity_writes(_table: Any, connection: Connection, **_kw: Any) -> None:
    """A store built from the metadata (a rule test's scratch store) gets the triggers that
    the migration ``0010`` creates: a steady rescoring pass relies on them."""
    create_score_marks(connection)


@event.listens_for(metadata, "after_create")
def _lower_pass_marks_on_deletes(_metadata: Any, connection: Connection, **_kw: Any) -> None:
    """A store built from the metadata gets the trigger of migration ``0019`` too, once both
    tables it reads and writes exist."""
    create_pass_marks_trigger(connection)
