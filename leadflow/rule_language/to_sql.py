"""Compile a condition tree into a SQL ``WHERE`` clause for SQLite and PostgreSQL.

The database returns only matching rows. Times are compared with cutoffs computed here
(``stage_entered_at < :now_minus_2d``), so no date arithmetic runs in SQL and indexes on
the time columns can be used.
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
    Membership,
    NotOf,
    Op,
    Presence,
    TimeComparison,
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
        case Presence(field, present):
            column = field.sql(table)
            return column.is_not(None) if present else column.is_(None)
        case Membership(field, values, negated):
            column = field.sql(table)
            return column.not_in(values) if negated else column.in_(values)
        case Comparison(field, op, value):
            return _compare(field.sql(table), op, value)
        case TimeComparison(field, op, offset):
            return _compare(time_expression(field, table), op, _bound(field, context.now - offset))
        case IdleBeyondAverageCycle():
            return _idle_beyond(condition, table, context)
    msg = f"unknown condition node {condition!r}"
    raise TypeError(msg)


def _compare(left: ColumnElement[Any], op: Op, right: Any) -> ColumnElement[bool]:
    compared: ColumnElement[bool] = {
        Op.EQ: left.__eq__,
        Op.NE: left.__ne__,
        Op.LT: left.__lt__,
        Op.LE: left.__le__,
        Op.GT: left.__gt__,
        Op.GE: left.__ge__,
    }[op](right)
    return compared


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
