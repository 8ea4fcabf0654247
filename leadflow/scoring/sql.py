"""A scoring model compiled to SQL: fit per lead, engagement per lead and criterion.

Everything is computed in the database, set-based, as of an injected ``now``:

- **fit**: one ``CASE WHEN <condition> THEN points ELSE 0 END`` per criterion, summed;
- **engagement**: per criterion, each matching activity (not a machine's, not after ``now``)
  is worth ``points x 0.5 ^ (age / half_life)`` (or ``points`` inside ``window``, or forever),
  summed per lead (per lead and period when the cap is per period), capped, and rounded to a
  whole number half away from zero. The criteria's whole numbers add up to the engagement,
  so an explanation's lines add up exactly to the stored score.

Ages are days as floating point, from each dialect's own epoch arithmetic: SQLite's
``julianday`` and PostgreSQL's ``extract(epoch ...)``.

The same scan finds, per lead, the earliest instant its engagement can next change with no new
activity (``next_change``, days since the epoch; :data:`NEVER` when it cannot): for a criterion
with a half-life, when its rounded value drops by a point; with a window, when its oldest
counted activity leaves it; and when an activity after ``now`` starts to count. A steady pass
rescores only the leads due by it (``leadflow/scoring/rescoring.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Select,
    and_,
    case,
    cast,
    extract,
    func,
    literal,
    literal_column,
    select,
    union_all,
)

from leadflow.rule_language.conditions import EvaluationContext
from leadflow.rule_language.scoring_model import EngagementCriterion, Grades, ScoringModel
from leadflow.rule_language.to_sql import to_where
from leadflow.store.id_ranges import among_selected
from leadflow.store.tables import ACTIVITIES, LEADS
from leadflow.store.types import UTCDateTime

STORED_SCORE = (
    LEADS.c.id,
    LEADS.c.score,
    LEADS.c.score_fit,
    LEADS.c.score_engagement,
    LEADS.c.score_adjustment,
    LEADS.c.score_grade,
)
"""What the lead stores of its score: what a pass compares and an explanation shows."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NEVER = 1.0e7
"""``next_change`` of a lead whose engagement no passing time changes (about the year 29349)."""
EARLY = 1.0 / 86400
"""How much earlier than computed a lead is due again (a second, in days): the computed instant
is exact but for floating point, whose error here is below a microsecond, and being early only
costs one more look at the lead."""
SECONDS_PER_DAY = 86400.0
JULIAN_DAY_OF_EPOCH = 2440587.5


def days_since_epoch(moment: datetime) -> float:
    """``moment`` as days since 1970-01-01 UTC, as the SQL below computes it for a column."""
    return (moment - EPOCH).total_seconds() / SECONDS_PER_DAY


def column_days(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """A stored time as days since the Unix epoch, in floating point."""
    if dialect == "postgresql":
        return cast(extract("epoch", column), Float) / SECONDS_PER_DAY
    days: ColumnElement[Any] = func.julianday(column) - JULIAN_DAY_OF_EPOCH
    return days


def sql_floor(value: ColumnElement[Any], dialect: str | None = None) -> ColumnElement[Any]:
    """``floor(value)``, NULL for NULL. On SQLite without calling Python: SQLAlchemy's
    pysqlite dialect installs ``math.floor`` as ``floor``, a Python call per row that raises
    on NULL; a cast truncates toward zero, and one less below zero gives the floor exactly."""
    if dialect != "sqlite":
        return func.floor(value)
    truncated = cast(value, BigInteger)
    return truncated - case((value < truncated, 1), else_=0)


FIRST_MONDAY = 4.0
"""1970-01-05, the first Monday after the epoch, in days since it (1970-01-01 was a Thursday)."""


def cap_period(criterion: EngagementCriterion, days: ColumnElement[Any], dialect: str) -> Any:
    """The number of the cap period an activity at ``days`` falls in. A period of whole weeks
    starts on a Monday 00:00 UTC, as ISO weeks do (counted from the epoch, ``per: 7d`` weeks
    ran Thursday to Wednesday); other periods count from 1970-01-01 00:00 UTC."""
    assert criterion.cap_per is not None
    period = criterion.cap_per.total_seconds() / SECONDS_PER_DAY
    if criterion.weekly_periods:
        days = days - literal(FIRST_MONDAY, Float)
    return sql_floor(days / period, dialect)


def half_away_from_zero(
    value: ColumnElement[Any], *, negative: bool, dialect: str | None = None
) -> ColumnElement[int]:
    """Round to a whole number, halves away from zero (the sign is the criterion's)."""
    if negative:
        return cast(-sql_floor(-value + 0.5, dialect), BigInteger)
    return cast(sql_floor(value + 0.5, dialect), BigInteger)


UNDERFLOW_HALVINGS = 1075.0
"""From this many half-lives on an activity is worth exactly 0: ``0.5 ^ 1075`` is half the least
double (``2 ^ -1074``, subnormal), and IEEE 754 rounds it and anything less to 0 (ties to
even); below it the factor is at least that least double, which no whole point can feel."""


def decayed_value(
    criterion: EngagementCriterion,
    now: datetime,
    dialect: str,
    days: ColumnElement[Any] | None = None,
) -> ColumnElement[float]:
    """What one activity of the criterion is worth at ``now`` (before cap and rounding).

    ``days``: the activity's time as :func:`column_days` gives it, when a query computed it
    once already (the same number, so the same value to the last bit)."""
    points = literal(float(criterion.points), Float)
    if criterion.half_life is None:
        return points
    half_life_days = criterion.half_life.total_seconds() / SECONDS_PER_DAY
    if days is None:
        days = column_days(ACTIVITIES.c.occurred_at, dialect)
    age = literal(days_since_epoch(now), Float) - days
    halvings = age / half_life_days
    # PostgreSQL's power() raises "value out of range: underflow" where the factor rounds to
    # 0; SQLite's and Python's give 0. Say 0 first, on both, so an old activity never fails
    # a pass and both stores keep the same value to the last bit.
    return case(
        (halvings >= literal(UNDERFLOW_HALVINGS, Float), literal(0.0, Float)),
        else_=points * func.power(literal(0.5, Float), halvings),
    )


def counted_activities(
    criterion: EngagementCriterion, now: datetime, *, machine: bool = False
) -> list[ColumnElement[bool]]:
    """The activities that earn the criterion's points at ``now`` (``machine``: those that
    would, had a person made them)."""
    clauses: list[ColumnElement[bool]] = [
        ACTIVITIES.c.lead_id.is_not(None),
        ACTIVITIES.c.machine.is_(machine),
        ACTIVITIES.c.type.in_(criterion.activity_types),
        ACTIVITIES.c.occurred_at <= literal(now, UTCDateTime()),
    ]
    if criterion.window is not None:
        clauses.append(ACTIVITIES.c.occurred_at > literal(now - criterion.window, UTCDateTime()))
    if criterion.condition is not None:
        clauses.append(to_where(criterion.condition, ACTIVITIES, EvaluationContext(now, {})))
    return clauses


def _capped(value: ColumnElement[Any], cap: int | None, *, negative: bool) -> ColumnElement[Any]:
    if cap is None:
        return value
    if negative:
        return case((value < -cap, literal(float(-cap), Float)), else_=value)
    return case((value > cap, literal(float(cap), Float)), else_=value)


LeadScope = Callable[[ColumnElement[int]], ColumnElement[bool]]
"""Narrows a query to some leads, given the column holding the lead's id."""


def criterion_points(
    criterion: EngagementCriterion,
    now: datetime,
    dialect: str,
    scope: LeadScope | None = None,
) -> Select[Any]:
    """(lead_id, criterion, points, raw, capped): the criterion's whole points per lead with
    any counted activity; ``raw`` is the sum before cap and rounding, ``capped`` the sum after
    the cap, before rounding (``points`` is it rounded)."""
    negative = criterion.points < 0
    where = counted_activities(criterion, now)
    if scope is not None:
        where.append(scope(ACTIVITIES.c.lead_id))
    value = decayed_value(criterion, now, dialect)
    if criterion.cap_per is not None and criterion.cap is not None:
        bucket = cap_period(criterion, column_days(ACTIVITIES.c.occurred_at, dialect), dialect)
        periods = (
            select(
                ACTIVITIES.c.lead_id.label("lead_id"),
                func.sum(value).label("value"),
            )
            .where(and_(*where))
            .group_by(ACTIVITIES.c.lead_id, bucket)
            .subquery()
        )
        capped = _capped(periods.c.value, criterion.cap, negative=negative)
        return select(
            periods.c.lead_id,
            literal(criterion.id).label("criterion"),
            half_away_from_zero(func.sum(capped), negative=negative, dialect=dialect).label(
                "points"
            ),
            func.sum(periods.c.value).label("raw"),
            func.sum(capped).label("capped"),
        ).group_by(periods.c.lead_id)
    total = func.sum(value)
    capped_total = _capped(total, criterion.cap, negative=negative)
    return (
        select(
            ACTIVITIES.c.lead_id.label("lead_id"),
            literal(criterion.id).label("criterion"),
            half_away_from_zero(capped_total, negative=negative, dialect=dialect).label("points"),
            total.label("raw"),
            capped_total.label("capped"),
        )
        .where(and_(*where))
        .group_by(ACTIVITIES.c.lead_id)
    )


def engagement_by_lead(
    model: ScoringModel, now: datetime, dialect: str, scope: LeadScope | None = None
) -> Select[Any] | None:
    """(lead_id, engagement) for every lead with activities of the model's types (0 when none
    of them counts); None without criteria.

    One scan of the activities serves every criterion: each is a ``SUM(CASE WHEN <its
    activities> THEN <value> END)`` column, so a range of leads reads its activities once,
    not once per criterion. A criterion capped per period needs its sums per period: the scan
    groups by the lead and that criterion's period (the other criteria's sums add up across
    periods), so one such criterion rides along; a second one with its own periods is a
    scan of its own, added to the first."""
    if not model.engagement:
        return None
    per_period = [item for item in model.engagement if _per_period(item)]
    in_scan = [item for item in model.engagement if not _per_period(item)] + per_period[:1]
    scan = _one_scan(in_scan, per_period[0] if per_period else None, now, dialect, scope)
    if len(per_period) < 2:
        return scan
    parts = union_all(
        scan, *(_one_scan([item], item, now, dialect, scope) for item in per_period[1:])
    ).subquery("criteria")
    return select(
        parts.c.lead_id.label("lead_id"),
        func.sum(parts.c.engagement).label("engagement"),
        func.min(parts.c.next_change).label("next_change"),
    ).group_by(parts.c.lead_id)


def _per_period(criterion: EngagementCriterion) -> bool:
    return criterion.cap_per is not None and criterion.cap is not None


def _one_scan(
    criteria: list[EngagementCriterion],
    per_period: EngagementCriterion | None,
    now: datetime,
    dialect: str,
    scope: LeadScope | None,
) -> Select[Any]:
    """(lead_id, engagement) from one pass over the activities of ``criteria``.

    The innermost query reads each activity once: its time in days, computed once (SQLite
    parses the stored text in ``julianday``), and whether each criterion counts it; OFFSET 0
    keeps it from being merged into the sums, which would compute both again per criterion."""
    types = sorted({kind for item in criteria for kind in item.activity_types})
    # Activities after ``now`` are read too (no criterion counts them: each flag holds the
    # ``now`` clause) for the instant the first of them starts to count.
    where: list[ColumnElement[bool]] = [
        ACTIVITIES.c.lead_id.is_not(None),
        ACTIVITIES.c.machine.is_(False),
        ACTIVITIES.c.type.in_(types),
    ]
    if scope is not None:
        where.append(scope(ACTIVITIES.c.lead_id))
    # counted_activities()[2:]: the type, ``now`` and what the criterion adds (window,
    # condition); the lead and machine clauses are the scan's own WHERE.
    flags = [
        case((and_(*counted_activities(item, now)[2:]), 1), else_=0).label(f"m{index}")
        for index, item in enumerate(criteria)
    ]
    later = case((ACTIVITIES.c.occurred_at > literal(now, UTCDateTime()), 1), else_=0)
    counted = (
        select(
            ACTIVITIES.c.lead_id.label("lead_id"),
            column_days(ACTIVITIES.c.occurred_at, dialect).label("days"),
            *flags,
            later.label("later"),
        )
        .where(and_(*where))
        .offset(0)
        .subquery("counted")
    )
    sums = [
        func.sum(
            case(
                (
                    counted.c[f"m{index}"] == 1,
                    decayed_value(item, now, dialect, counted.c.days),
                ),
                else_=None,
            )
        ).label(f"c{index}")
        for index, item in enumerate(criteria)
    ]
    grouping: list[ColumnElement[Any]] = [counted.c.lead_id]
    if per_period is not None:
        flag = counted.c[f"m{criteria.index(per_period)}"]
        grouping.append(
            case((flag == 1, cap_period(per_period, counted.c.days, dialect)), else_=None)
        )
    oldest = [
        func.min(case((counted.c[f"m{index}"] == 1, counted.c.days), else_=None)).label(f"w{index}")
        for index, item in enumerate(criteria)
        if item.window is not None
    ]
    upcoming = func.min(case((counted.c.later == 1, counted.c.days), else_=None))
    sums_per_group = (
        select(counted.c.lead_id.label("lead_id"), *sums, *oldest, upcoming.label("upcoming"))
        .group_by(*grouping)
        .subquery("activity_sums")
    )
    points: list[ColumnElement[Any]] = []
    changes: list[ColumnElement[Any]] = [func.min(sums_per_group.c.upcoming)]
    for index, item in enumerate(criteria):
        negative = item.points < 0
        column = sums_per_group.c[f"c{index}"]
        total: ColumnElement[Any]
        if item is per_period:
            total = func.sum(_capped(column, item.cap, negative=negative))
        else:
            total = _capped(func.sum(column), item.cap, negative=negative)
        rounded = half_away_from_zero(total, negative=negative, dialect=dialect)
        points.append(func.coalesce(rounded, 0))
        if item.half_life is not None:
            changes.append(_fades_a_point(item.half_life, total, rounded, now))
        if item.window is not None:
            window = item.window.total_seconds() / SECONDS_PER_DAY
            changes.append(func.min(sums_per_group.c[f"w{index}"]) + literal(window, Float))
    engagement = points[0]
    for term in points[1:]:
        engagement = engagement + term
    return select(
        sums_per_group.c.lead_id.label("lead_id"),
        engagement.label("engagement"),
        earliest(changes, dialect).label("next_change"),
    ).group_by(sums_per_group.c.lead_id)


def _fades_a_point(
    half_life: timedelta, total: ColumnElement[Any], rounded: ColumnElement[Any], now: datetime
) -> ColumnElement[Any]:
    """When a fading criterion's whole points drop by one: the instant its value (after cap,
    before rounding; ``total``) falls to half a point below its rounded value, as days since
    the epoch; NULL when it rounds to 0 and cannot drop.

    Every counted activity fades by the same factor ``0.5 ^ (elapsed / half_life)``, so the
    value does too: ``total x factor`` while it is under its cap; a cap (overall, or per
    period) only keeps it higher for a while, so the instant below is, if anything, early."""
    half_life_days = half_life.total_seconds() / SECONDS_PER_DAY
    magnitude = func.abs(rounded)
    threshold = cast(magnitude, Float) - literal(0.5, Float)
    elapsed = literal(half_life_days / math.log(2), Float) * func.ln(func.abs(total) / threshold)
    return case((magnitude >= 1, literal(days_since_epoch(now), Float) + elapsed), else_=None)


def earliest(instants: list[ColumnElement[Any]], dialect: str) -> ColumnElement[Any]:
    """The least of ``instants`` (NULL ones: never), :data:`NEVER` when all are NULL."""
    known = [func.coalesce(item, literal(NEVER, Float)) for item in instants]
    if len(known) == 1:
        return known[0]
    return func.least(*known) if dialect == "postgresql" else func.min(*known)


def fit_terms(model: ScoringModel, now: datetime) -> list[tuple[str, ColumnElement[int]]]:
    """(criterion id, its points for the lead row or 0) for each fit criterion."""
    context = EvaluationContext(now, {})
    return [
        (
            item.id,
            case(
                (to_where(item.condition, LEADS, context), literal(item.points, BigInteger)),
                else_=literal(0, BigInteger),
            ),
        )
        for item in model.fit
    ]


def fit_expression(model: ScoringModel, now: datetime) -> ColumnElement[int]:
    terms = [term for _id, term in fit_terms(model, now)]
    if not terms:
        return cast(literal(0), BigInteger)
    total: ColumnElement[int] = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def grade_expression(
    grades: Grades | None, fit: ColumnElement[int], engagement: ColumnElement[int]
) -> ColumnElement[str | None]:
    if grades is None:
        return literal_column("NULL")
    letter = case(*((fit >= low, literal(name)) for name, low in grades.fit), else_=literal("D"))
    digit = case(
        *((engagement >= low, literal(name)) for name, low in grades.engagement),
        else_=literal("4"),
    )
    return letter + digit


def scored_by_model(
    model: ScoringModel,
    now: datetime,
    dialect: str,
    scope: LeadScope | None = None,
    *,
    recompute_engagement: ColumnElement[bool] | None = None,
) -> Select[Any]:
    """Every lead (in ``scope``) with what it stores of its score (:data:`STORED_SCORE`,
    ``score_next_change_day``) and the model's ``fit``, ``engagement`` and ``next_change``
    (:data:`EARLY` before the computed instant) at ``now``: what a pass compares, what a
    preview shows. Wrap it with ``.offset(0).subquery()`` before reading ``fit`` several times, so the
    database computes each lead's fit once.

    ``recompute_engagement``, a condition on the lead's row: only the activities of the leads
    meeting it are read, and every other lead's ``engagement`` and ``next_change`` are the
    stored ones (for a caller that knows them to be the model's at ``now``)."""
    source: Any = LEADS
    engaged: Any = cast(literal(0), BigInteger)
    next_change: Any = literal(NEVER, Float)
    engagement_scope = scope
    if recompute_engagement is not None:
        engagement_scope = _recomputed_leads(recompute_engagement, scope, dialect)
    per_lead = engagement_by_lead(model, now, dialect, engagement_scope)
    if per_lead is not None:
        parts = per_lead.subquery("engagement")
        source = LEADS.outerjoin(parts, parts.c.lead_id == LEADS.c.id)
        engaged = func.coalesce(parts.c.engagement, 0)
        next_change = func.coalesce(parts.c.next_change, literal(NEVER, Float))
    next_change = next_change - literal(EARLY, Float)
    if recompute_engagement is not None:
        engaged = case((recompute_engagement, engaged), else_=LEADS.c.score_engagement)
        next_change = case((recompute_engagement, next_change), else_=LEADS.c.score_next_change_day)
    query = select(
        *STORED_SCORE,
        LEADS.c.score_next_change_day,
        fit_expression(model, now).label("fit"),
        engaged.label("engagement"),
        next_change.label("next_change"),
    ).select_from(source)
    return query if scope is None else query.where(scope(LEADS.c.id))


def _recomputed_leads(
    condition: ColumnElement[bool], scope: LeadScope | None, dialect: str
) -> LeadScope:
    """The activities' scope: the leads (in ``scope``) that meet ``condition``, each looked up
    in the index on the activities' lead (:func:`among_selected`: an ``IN`` read every
    activity of the range on PostgreSQL for the few leads due). The scope's own clause stays
    on the activities too."""
    leads = select(LEADS.c.id).where(condition)
    if scope is not None:
        leads = leads.where(scope(LEADS.c.id))

    def recomputed(column: ColumnElement[int]) -> ColumnElement[bool]:
        meets = among_selected(column, leads, dialect)
        return meets if scope is None else and_(scope(column), meets)

    return recomputed
