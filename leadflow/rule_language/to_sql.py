"""Compile a condition tree into a SQL ``WHERE`` clause for SQLite and PostgreSQL.

The database returns only matching rows. Each comparison is its operator's ``sql`` (see
``operators``). Times are compared with cutoffs computed here (``older_than: 2d`` becomes
``:now_minus_2d > stage_entered_at``), so no date arithmetic runs in SQL and indexes on the
time columns can be used.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, case, cast, false, literal, not_, null, or_, true

from leadflow.rule_language.conditions import (
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    EvaluationContext,
    IdleBeyondAverageCycle,
    NotOf,
)
from leadflow.rule_language.fields import FieldSpec, ValueType
from leadflow.rule_language.to_python import cutoff_for
from leadflow.store.types import UTCDateTime


def to_where(condition: Condition, table: Table, context: EvaluationContext) -> ColumnElement[bool]:
    """The SQL predicate equivalent to :func:`leadflow.rule_language.to_python.evaluate`."""
    match condition:
        case AllOf(items):
            return and_(true(), *(to_where(item, table, context) for item in items))
        case AnyOf(items):
            return or_(false(), *(to_where(item, table, context) for item in items))
        case NotOf(item):
            return not_(to_where(item, table, context))
        case Comparison(field, operator, operand) if condition.compares_age:
            cutoff = _bound(field, context.now - operand)
            return operator.sql(cutoff, time_expression(field, table))
        case Comparison(field, operator, operand):
            return operator.sql(field.sql(table), operand)
        case IdleBeyondAverageCycle():
            return _idle_beyond(condition, table, context)
    msg = f"unknown condition node {condition!r}"
    raise TypeError(msg)


def _bound(field: FieldSpec, instant: Any) -> Any:
    value = cutoff_for(field, instant)
    if field.name.startswith("attributes."):
        return value
    return literal(value, UTCDateTime())


def time_expression(field: FieldSpec, table: Table) -> ColumnElement[Any]:
    """The stored time of a time condition; for an age over several columns, the latest."""
    if field.type is not ValueType.DAYS or len(field.since) == 1:
        return field.sql(table)
    first = table.c[field.since[0]]
    latest: ColumnElement[Any] = first
    for name in field.since[1:]:
        other = table.c[name]
        latest = case(
            (first.is_(None), null()),
            (or_(other.is_(None), latest >= other), latest),
            else_=other,
        )
    return latest


def _idle_beyond(
    condition: IdleBeyondAverageCycle, table: Table, context: EvaluationContext
) -> ColumnElement[bool]:
    average = context.cycles[condition]

    def cutoff(days: float | None) -> Any:
        if days is None:  # no won deals to average: unknown, as in the Python evaluator
            return cast(null(), UTCDateTime())
        return literal(context.now - timedelta(days=days * condition.factor), UTCDateTime())

    threshold: Any = cutoff(average.overall_days)
    if condition.group_by is not None and average.groups:
        group = condition.group_by.sql(table)
        threshold = case(
            *(
                (group == name, cutoff(days))
                for name, (days, _count) in sorted(average.groups.items())
            ),
            else_=threshold,
        )
    compared: ColumnElement[bool] = time_expression(condition.idle, table) < threshold
    return compared
