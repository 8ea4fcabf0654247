"""The rescoring pass: every lead's score recomputed by the model in the database, and each
change written with its history row, a range of leads per transaction.

A pass compares what the model gives at ``now`` with what is stored and touches only the
leads whose total, fit, engagement or grade differ: for each of them a ``score_changes`` row
(old, new, why) and the new values, in one transaction per range of lead ids, so a pass over a
million leads never holds the write lock for long and a kill leaves every lead either
rescored or not, never half.

Why a score changed, in order of precedence: ``model`` (the model is new or changed since the
last pass), ``fit`` (the lead's data moved its fit), ``activity`` (an activity reached
leadflow since the last pass: its id is above the highest that pass saw), ``recomputed`` (the
engagement did not move: the stored total had been set outside the model, by an import say);
then, for an engagement that moved, ``earlier`` (the pass is as of an instant before the last
pass's), ``activity`` (an activity stored before came to count since, or a rise no fading
penalty explains) or ``decay`` (time alone: points faded or left their window, which raises
the engagement only for a penalty's negative points): :func:`_engagement_cause`.

A steady pass (the same model as the last pass, the clock not moved back, no criterion reading
the clock) recomputes only the leads :func:`leadflow.scoring.due.due_leads` names: a full pass
would change no other. Every lead a pass recomputes also gets ``score_next_change_day``, the
instant it is next due with no new input; a full pass keeps a stored instant that is still no
later than the one it computed, so it writes only the leads whose score or instant moved.

A pass that reads every lead only because a fit criterion reads the clock, or because too many
leads are due to list them, has the same model and the clock not moved back: every lead's fit
is recomputed, but the engagement of the leads due only (:func:`leadflow.scoring.due.due_clause`);
every other lead's stored engagement and next change are the model's at ``now``, for the
reason a steady pass skips them. So is a pass after a model change that left the engagement
criteria as they were (a fit criterion or a grade band added, changed or removed: the model's
``engagement_version`` is the last pass's). Only with no pass yet, other engagement criteria,
the clock moved back or an engagement criterion reading the clock is every lead's engagement
recomputed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from leadflow import metrics
from leadflow.errors import UserInputError
from leadflow.logs import error_text
from leadflow.rule_language.scoring_model import EngagementCriterion, ScoringModel
from leadflow.scoring.due import due_clause, due_leads, engagement_stored, whole_pass_needed
from leadflow.scoring.sql import (
    EARLY,
    counted_activities,
    days_since_epoch,
    grade_expression,
    scored_by_model,
)
from leadflow.store.database import insert_ignoring_duplicates, transaction
from leadflow.store.id_ranges import among, among_selected, chunks
from leadflow.store.tables import (
    ACTIVITIES,
    LEADS,
    SCORE_CHANGES,
    SCORING_FAILURES,
    SCORING_RUNS,
)
from leadflow.store.types import UTCDateTime

MODEL_NAME = "default"
"""The ``scoring_runs`` key: a rule set has one scoring model."""
LEADS_PER_TRANSACTION = 50_000
"""Ids per range: a range's transaction holds the write lock well under a second."""
MOST_DUE = 100_000
"""Past this many leads due, a steady pass reads ranges of ids like a full one: cheaper than
lists of ids by then, and as exact."""

_pass_metadata = MetaData()
PASS = Table(
    "scoring_pass",
    _pass_metadata,
    Column("lead_id", Integer, primary_key=True),
    Column("old_score", BigInteger),
    Column("new_score", BigInteger),
    Column("old_fit", BigInteger),
    Column("new_fit", BigInteger),
    Column("old_engagement", BigInteger),
    Column("new_engagement", BigInteger),
    Column("new_grade", String(2)),
    Column("cause", String(40)),
    Column("changed", Integer),
    Column("old_next_change", Float),
    Column("next_change", Float),
    prefixes=["TEMPORARY"],
)
"""The leads of one range to write (``changed``: 1 when the score, a part or the grade moved, 0
when only ``next_change``), gathered once and read by the history insert and the update."""


class ScoringFailedError(UserInputError):
    """The database refused a value the model computed for the store's data (a number out of
    range, say): the model or the data is at fault, not leadflow, so it is logged as one line
    and ``run --once`` says it without a traceback."""

    def __init__(self, bounds: tuple[int, int], cause: DataError) -> None:
        super().__init__(
            f"the scoring pass failed for the leads with ids {bounds[0]} to {bounds[1]}: "
            f"{error_text(cause.orig or cause)}; no score of them changed"
        )


@dataclass(frozen=True)
class LastPass:
    model_version: str
    at: datetime
    engagement_version: str | None = None
    """The digest of the engagement criteria it ran (None: a pass before it was recorded)."""
    last_activity_id: int | None = None
    """The highest activity id when it started (None: no activity then, or a pass before it
    was recorded)."""


@dataclass(frozen=True)
class ScoringOutcome:
    """What one pass did."""

    model_version: str
    changed: int
    """Leads whose score (or a part of it, or the grade) changed."""
    at: datetime
    due: int | None = None
    """A steady pass's leads due (all it recomputed); None when the pass read every lead."""


def last_pass(connection: Connection | Session) -> LastPass | None:
    row = connection.execute(
        select(
            SCORING_RUNS.c.model_version,
            SCORING_RUNS.c.last_run_at,
            SCORING_RUNS.c.engagement_version,
            SCORING_RUNS.c.last_activity_id,
        ).where(SCORING_RUNS.c.model == MODEL_NAME)
    ).first()
    if row is None:
        return None
    return LastPass(
        row.model_version, row.last_run_at, row.engagement_version, row.last_activity_id
    )


def rescore(
    engine: Engine,
    model: ScoringModel,
    now: datetime,
    *,
    lead_ids: Sequence[int] | None = None,
    full: bool = False,
) -> ScoringOutcome:
    """Recompute the scores of every lead (or of ``lead_ids``) as of ``now``, writing only
    what changed; each id range commits on its own. A steady pass reads only the leads due
    (module docstring); ``full`` reads every lead anyway (the same outcome, slower)."""
    last_activity = _start_pass(engine) if lead_ids is None else 0
    with engine.connect() as connection:
        previous = last_pass(connection)
        wanted = lead_ids
        due: int | None = None
        if lead_ids is None and not full and not _whole_pass(model, previous, now):
            wanted = due_leads(connection, now)
            due = len(wanted)
            if due > MOST_DUE:
                wanted, due = None, None
        ranges = _id_ranges(connection, wanted)
    recompute: ColumnElement[bool] | None = None
    if wanted is None and not full and _engagement_stored(model, previous, now):
        recompute = due_clause(now)
    changed = 0
    try:
        for bounds, wanted in ranges:
            with transaction(engine) as session:
                changed += _rescore_range(session, model, now, previous, bounds, wanted, recompute)
    except ScoringFailedError as exc:
        if lead_ids is None:  # a pass, not a few posted leads: status says it until one succeeds
            # Not a reason for /readyz to say "not ready": email and rules still work; the
            # failure is kept for ``leadflow status`` and counted for an alert.
            metrics.record_scoring_pass(ok=False)
            with transaction(engine) as session:
                _record_failure(session, model, now, str(exc))
        raise
    if lead_ids is None:
        with transaction(engine) as session:
            _record_pass(session, model, now, changed, last_activity)
        metrics.record_scoring_pass(ok=True)
    return ScoringOutcome(model.version, changed, now, due)


def _start_pass(engine: Engine) -> int:
    """The highest activity id now (0 with none yet: every activity the next pass finds arrived
    after this one), kept as the pass's own mark for a delete of the newest activities to bring
    down meanwhile (store/activity_ids.py), in the transaction that reads it."""
    with transaction(engine) as session:
        highest = int(session.execute(select(func.max(ACTIVITIES.c.id))).scalar() or 0)
        session.execute(
            update(SCORING_RUNS)
            .where(SCORING_RUNS.c.model == MODEL_NAME)
            .values(pass_activity_id=highest)
        )
    return highest


def _whole_pass(model: ScoringModel, previous: LastPass | None, now: datetime) -> bool:
    if previous is None:
        return True
    return whole_pass_needed(model, previous.model_version, previous.at, now)


def _engagement_stored(model: ScoringModel, previous: LastPass | None, now: datetime) -> bool:
    if previous is None:
        return False
    return engagement_stored(model, previous.engagement_version, previous.at, now)


def _id_ranges(
    connection: Connection, lead_ids: Sequence[int] | None
) -> list[tuple[tuple[int, int], Sequence[int] | None]]:
    """Each transaction's (lowest id, highest id) and, for given leads, those ids."""
    if lead_ids is not None:
        return [((chunk[0], chunk[-1]), chunk) for chunk in chunks(sorted(set(lead_ids)))]
    low, high = connection.execute(select(func.min(LEADS.c.id), func.max(LEADS.c.id))).one()
    if low is None:
        return []
    return [
        ((start, min(start + LEADS_PER_TRANSACTION - 1, high)), None)
        for start in range(low, high + 1, LEADS_PER_TRANSACTION)
    ]


def _rescore_range(
    session: Session,
    model: ScoringModel,
    now: datetime,
    previous: LastPass | None,
    bounds: tuple[int, int],
    lead_ids: Sequence[int] | None,
    recompute: ColumnElement[bool] | None,
) -> int:
    connection = session.connection()
    dialect = connection.dialect.name
    if dialect == "postgresql":
        # The statement's estimated cost is high enough for PostgreSQL to JIT-compile it, and
        # compiling its many CASE expressions took 8 of a range's 10 seconds; the range's
        # sums per lead and period fit in memory with a little more than the default 4MB.
        connection.exec_driver_sql("SET LOCAL jit = off")
        connection.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        # Sorted by lead and period once, the activities' sums per period, then per lead, and
        # the join with the leads' rows all stream; hashed, each level built a table of its
        # own and the join sorted again: 20% of a full pass (9.5 s against 12 s for 1M leads).
        connection.exec_driver_sql("SET LOCAL enable_hashagg = off")
    PASS.drop(connection, checkfirst=True)
    PASS.create(connection)
    # No ``finally`` drop: after a failed statement PostgreSQL refuses every other one in the
    # transaction, so a drop there replaced the error with "current transaction is aborted".
    # The rollback of the failed range's transaction drops the table it created.
    try:
        connection.execute(
            insert(PASS).from_select(
                [column.name for column in PASS.c],
                _changes(model, now, dialect, previous, bounds, lead_ids, recompute),
            )
        )
        written, changed = connection.execute(
            select(func.count(), func.coalesce(func.sum(PASS.c.changed), 0))
        ).one()
        if written:
            _write_changes(connection, model, now)
    except DataError as exc:
        raise ScoringFailedError(bounds, exc) from exc
    PASS.drop(connection)
    return int(changed)


def _changes(
    model: ScoringModel,
    now: datetime,
    dialect: str,
    previous: LastPass | None,
    bounds: tuple[int, int],
    lead_ids: Sequence[int] | None,
    recompute: ColumnElement[bool] | None,
) -> Any:
    """The leads in ``bounds`` whose stored score differs from the model's, old and new, and
    those whose stored next change is due or later than the one computed now. With
    ``recompute``, only the engagement of the leads meeting it is computed (module
    docstring)."""

    def scope(column: Any) -> Any:
        return column.between(*bounds) if lead_ids is None else among(column, lead_ids)

    scored = scored_by_model(model, now, dialect, scope, recompute_engagement=recompute)
    # OFFSET 0 keeps the subquery a subquery: merged into the outer query, each lead's fit
    # expression was computed once per comparison below that reads it.
    lead = scored.offset(0).subquery("scored")
    new_score = lead.c.fit + lead.c.engagement + lead.c.score_adjustment
    grade = grade_expression(model.grades, lead.c.fit, lead.c.engagement)
    changed = or_(
        lead.c.score != new_score,
        lead.c.score_fit.is_distinct_from(lead.c.fit),
        lead.c.score_engagement.is_distinct_from(lead.c.engagement),
        lead.c.score_grade.is_distinct_from(grade),
    )
    stored_next = lead.c.score_next_change_day
    # A stored instant no later than the new one (give or take half the margin both carry)
    # is still a safe one to look again at: the lead is not written for it.
    next_moved = or_(
        stored_next.is_(None),
        stored_next <= days_since_epoch(now),
        stored_next > lead.c.next_change + EARLY / 2,
    )
    return select(
        lead.c.id,
        lead.c.score,
        new_score,
        lead.c.score_fit,
        lead.c.fit,
        lead.c.score_engagement,
        lead.c.engagement,
        grade,
        _cause(lead, previous, model, scope, now),
        case((changed, 1), else_=0),
        stored_next,
        # Never the stored value itself: a lead update that leaves the column as it was is
        # another writer's, and marks the lead due (store/score_marks.py). A little earlier
        # is as safe.
        case(
            (stored_next == lead.c.next_change, lead.c.next_change - EARLY / 4),
            else_=lead.c.next_change,
        ),
    ).where(or_(changed, next_moved))


def _cause(
    lead: Any,
    previous: LastPass | None,
    model: ScoringModel,
    scope: Callable[[Any], Any],
    now: datetime,
) -> Any:
    if previous is None or previous.model_version != model.version:
        return literal("model")
    # Arrived after the last pass: a higher id than any it could see. Not ``created_at`` later
    # than the pass's instant: that instant is the pass's clock (a past ``--now``, a
    # simulation's), ``created_at`` the writer's, and a pass as of a past instant named every
    # change ``activity``. A pass recorded before the id was (revision 0017) has only its instant.
    if previous.last_activity_id is not None:
        after_last_pass = ACTIVITIES.c.id > literal(previous.last_activity_id, BigInteger)
    else:
        after_last_pass = ACTIVITIES.c.created_at > literal(previous.at, UTCDateTime())
    return case(
        (lead.c.score_fit.is_distinct_from(lead.c.fit), literal("fit")),
        (_activity_of(lead, scope, after_last_pass), literal("activity")),
        (lead.c.score_engagement.is_not_distinct_from(lead.c.engagement), literal("recomputed")),
        else_=_engagement_cause(lead, previous.at, model, scope, now),
    )


def _engagement_cause(
    lead: Any, since: datetime, model: ScoringModel, scope: Callable[[Any], Any], now: datetime
) -> Any:
    """Why the engagement moved with no activity arrived since the last pass (at ``since``).

    ``decay`` only for what time alone does: points fading or leaving their window lower the
    engagement, and raise it only when they are a penalty's (negative points) that counted
    then. A rise with no such penalty is an activity's: one stored before the last pass that
    came to count since (dated after that pass's instant: a pass as of a past ``--now`` did not
    count it), or one changed since. A fall is ``activity`` too when a penalty came to count.
    Before the last pass's instant (``run --once --now`` in the past) nothing faded: ``earlier``.
    """
    if now < since:
        return literal("earlier")
    if not model.engagement:  # nothing counts: the stored engagement was set outside the model
        return literal("recomputed")
    penalties = [item for item in model.engagement if item.points < 0]
    fading = [item for item in penalties if item.half_life or item.window]
    rose = lead.c.engagement > lead.c.score_engagement
    came = _came_to_count(model.engagement, since, now)
    whens: list[tuple[Any, Any]] = [(rose & _activity_of(lead, scope, came), literal("activity"))]
    if fading:  # a penalty that counted then has faded or left its window since
        faded = _activity_of(lead, scope, _counted(fading, since))
        whens.append((rose & faded, literal("decay")))
    whens.append((rose, literal("activity")))
    if penalties:
        came = _came_to_count(penalties, since, now)
        whens.append((_activity_of(lead, scope, came), literal("activity")))
    return case(*whens, else_=literal("decay"))


def _activity_of(lead: Any, scope: Callable[[Any], Any], clause: ColumnElement[bool]) -> Any:
    """Whether the lead has an activity meeting ``clause``."""
    # The range's bounds too: PostgreSQL may answer the EXISTS for all changed leads at once
    # from a hash of the matching activities, and without them it read the whole table. The
    # OFFSET 0 keeps it a probe of each changed lead's activities (PostgreSQL hashes no EXISTS
    # with an OFFSET; it drops a LIMIT): hashed, it read every activity of each range for the
    # few hundred leads that a pass after a clock-reading fit changes.
    return exists(
        select(literal(1))
        .where(ACTIVITIES.c.lead_id == lead.c.id, scope(ACTIVITIES.c.lead_id), clause)
        .offset(0)
    )


def _counted(items: Sequence[EngagementCriterion], at: datetime) -> ColumnElement[bool]:
    """An activity some of ``items`` counts at ``at``."""
    return or_(*(and_(*counted_activities(item, at)) for item in items))


def _came_to_count(
    items: Sequence[EngagementCriterion], since: datetime, now: datetime
) -> ColumnElement[bool]:
    """An activity some of ``items`` counts at ``now`` and did not at ``since``: dated between
    the two, or met a condition reading the clock since (an unknown then is a no)."""
    return or_(
        *(
            and_(
                *counted_activities(item, now),
                case((and_(*counted_activities(item, since)), 1), else_=0) == 0,
            )
            for item in items
        ),
    )


def _write_changes(connection: Connection, model: ScoringModel, now: datetime) -> None:
    history = select(
        PASS.c.lead_id,
        literal(now, UTCDateTime()),
        PASS.c.old_score,
        PASS.c.new_score,
        PASS.c.old_fit,
        PASS.c.new_fit,
        PASS.c.old_engagement,
        PASS.c.new_engagement,
        PASS.c.cause,
        literal(model.version),
    ).where(
        or_(
            PASS.c.old_score != PASS.c.new_score,
            PASS.c.old_fit.is_distinct_from(PASS.c.new_fit),
            PASS.c.old_engagement.is_distinct_from(PASS.c.new_engagement),
        )
    )
    connection.execute(
        insert(SCORE_CHANGES).from_select(
            [
                "lead_id",
                "at",
                "old_score",
                "new_score",
                "old_fit",
                "new_fit",
                "old_engagement",
                "new_engagement",
                "cause",
                "model_version",
            ],
            history,
        )
    )
    # A lead written only for its next change gets its own values back and keeps scored_at.
    connection.execute(
        update(LEADS)
        .where(LEADS.c.id == PASS.c.lead_id, _written_leads(connection.dialect.name))
        .values(
            score=PASS.c.new_score,
            score_fit=PASS.c.new_fit,
            score_engagement=PASS.c.new_engagement,
            score_grade=PASS.c.new_grade,
            scored_at=case(
                (PASS.c.changed == 1, literal(now, UTCDateTime())), else_=LEADS.c.scored_at
            ),
            # Unless an activity of the lead was written since this range read them: its
            # trigger changed the column (on PostgreSQL a writer commits in between; SQLite
            # has one writer at a time), and the lead stays due for the next pass.
            score_next_change_day=case(
                (
                    LEADS.c.score_next_change_day.is_not_distinct_from(PASS.c.old_next_change),
                    PASS.c.next_change,
                ),
                else_=LEADS.c.score_next_change_day,
            ),
        )
    )


def _written_leads(dialect: str) -> ColumnElement[bool]:
    """The leads of the range's update, found from the primary key.

    Without it both walk every lead of the table: SQLite's UPDATE ... FROM probes the range's
    changes for each (20M probes in a pass over 1M leads), and PostgreSQL hash-joined them with
    a sequential scan of the whole table, once per range (20 scans of 1M leads in a first
    pass, 0.4 s each), which a join with the unanalysed temporary table does not avoid."""
    return among_selected(LEADS.c.id, select(PASS.c.lead_id), dialect)


def _record_pass(
    session: Session, model: ScoringModel, now: datetime, changed: int, last_activity: int | None
) -> None:
    # The pass went through: whatever failed before is over.
    session.execute(delete(SCORING_FAILURES).where(SCORING_FAILURES.c.model == MODEL_NAME))
    # Its mark as a delete of the newest activities since its start left it (SQLite gives
    # their ids again); None when the pass is the first and had no row to keep it in.
    lowered = session.execute(
        select(SCORING_RUNS.c.pass_activity_id).where(SCORING_RUNS.c.model == MODEL_NAME)
    ).scalar()
    if lowered is not None and last_activity is not None:
        last_activity = min(last_activity, int(lowered))
    updated = session.execute(
        update(SCORING_RUNS)
        .where(SCORING_RUNS.c.model == MODEL_NAME)
        .values(
            model_version=model.version,
            engagement_version=model.engagement_version,
            last_run_at=now,
            changed=changed,
            last_activity_id=last_activity,
            pass_activity_id=None,
        )
    )
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        dialect = session.connection().dialect.name
        session.execute(
            insert_ignoring_duplicates(dialect, SCORING_RUNS, "model").values(
                model=MODEL_NAME,
                model_version=model.version,
                engagement_version=model.engagement_version,
                last_run_at=now,
                changed=changed,
                last_activity_id=last_activity,
            )
        )


def _record_failure(session: Session, model: ScoringModel, now: datetime, error: str) -> None:
    values = {"model_version": model.version, "failed_at": now, "error": error}
    updated = session.execute(
        update(SCORING_FAILURES)
        .where(SCORING_FAILURES.c.model == MODEL_NAME)
        .values(**values, failures=SCORING_FAILURES.c.failures + 1)
    )
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        dialect = session.connection().dialect.name
        session.execute(
            insert_ignoring_duplicates(dialect, SCORING_FAILURES, "model").values(
                model=MODEL_NAME, failures=1, **values
            )
        )


def rescore_posted(
    engine: Engine, model: ScoringModel, kind: str, keys: Sequence[str], now: datetime
) -> ScoringOutcome:
    """Rescore the leads that posted ``kind`` records (by external id) touch: the leads
    themselves, or the leads of the activities; at once, instead of at the next tick."""
    table = LEADS if kind == "leads" else ACTIVITIES
    column = LEADS.c.id if kind == "leads" else ACTIVITIES.c.lead_id
    lead_ids: set[int] = set()
    with engine.connect() as connection:
        for chunk in chunks(list(keys)):
            query = select(column).where(table.c.external_id.in_(chunk), column.is_not(None))
            lead_ids.update(row[0] for row in connection.execute(query))
    if not lead_ids:
        return ScoringOutcome(model.version, 0, now)
    return rescore(engine, model, now, lead_ids=sorted(lead_ids))
