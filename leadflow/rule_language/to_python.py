"""Evaluate a condition tree for one record, with SQL's three-valued logic.

``None`` means unknown (a comparison with a missing value), exactly as NULL does in the
database; a record matches only when the result is ``True``. The property tests hold this
module and ``to_sql`` to the same answers on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from leadflow.rule_language.conditions import (
    ATTRIBUTE_TIME_FORMAT,
    AllOf,
    AnyOf,
    Comparison,
    Condition,
    EvaluationContext,
    IdleBeyondAverageCycle,
    NotOf,
)
from leadflow.rule_language.fields import FieldSpec, ValueType

Record = Mapping[str, Any]


def matches(condition: Condition, record: Record, context: EvaluationContext) -> bool:
    """Whether the record satisfies the condition (unknown counts as no, as in SQL)."""
    return evaluate(condition, record, context) is True


def evaluate(condition: Condition, record: Record, context: EvaluationContext) -> bool | None:
    match condition:
        case AllOf(items):
            results = [evaluate(item, record, context) for item in items]
            if False in results:
                return False
            return None if None in results else True
        case AnyOf(items):
            results = [evaluate(item, record, context) for item in items]
            if True in results:
                return True
            return None if None in results else False
        case NotOf(item):
            inner = evaluate(item, record, context)
            return None if inner is None else not inner
        case Comparison(field, operator, operand) if condition.compares_age:
            moment = time_of(field, record)
            if moment is None:
                return None
            return operator.python(cutoff_for(field, context.now - operand), moment)
        case Comparison(field, operator, operand):
            actual = field.read(record)
            if actual is None and operator.missing_is_unknown:
                return None
            return operator.python(actual, operand)
        case IdleBeyondAverageCycle():
            return _idle_beyond(condition, record, context)
    msg = f"unknown condition node {condition!r}"
    raise TypeError(msg)


def _idle_beyond(
    condition: IdleBeyondAverageCycle, record: Record, context: EvaluationContext
) -> bool | None:
    started = time_of(condition.idle, record)
    group = condition.group_by.read(record) if condition.group_by is not None else None
    days = context.cycles[condition].days_for(group)
    if started is None or days is None:
        return None
    return bool(started < context.now - timedelta(days=days * condition.factor))


def time_of(field: FieldSpec, record: Record) -> Any:
    """The stored time a time condition compares: for an age, the latest of its columns.

    An age whose first column is missing is unknown (a deal never engaged is not idle).
    """
    if field.type is not ValueType.DAYS:
        return field.read(record)
    first = record.get(field.since[0])
    if first is None:
        return None
    later = [record.get(name) for name in field.since[1:]]
    return max([first, *(value for value in later if value is not None)])


def cutoff_for(field: FieldSpec, instant: datetime) -> Any:
    """``instant`` in the form the field is stored in (text for datetime attributes)."""
    if field.name.startswith("attributes."):
        return instant.astimezone(UTC).strftime(ATTRIBUTE_TIME_FORMAT)
    return instant
