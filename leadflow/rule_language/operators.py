"""The operators of a comparison (``{field: score, at_least: 60}``), each defined once.

An entry says what the operator is called, which field types take it, what value it expects,
how SQL and Python compute it, and the help an editor shows. The parser (``conditions``), both
evaluators (``to_sql``, ``to_python``) and the JSON Schema (``json_schema``) all read
:data:`OPERATORS`, so adding an operator is adding one entry here.

``sql(left, right)`` and ``python(left, right)`` compute ``left OPERATOR right``: ``left`` is
the field's stored value (a column, or the record's value) and ``right`` the operand as the
parser converted it. A missing ``left`` makes the result unknown (NULL), as in SQL, unless
the operator is about presence. Ages compare the other way round, see :func:`compares_age`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from leadflow.rule_language.fields import ValueType

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement


class Operand(Enum):
    """What an operator expects as its value in a rule file."""

    VALUE = "value"
    """One value of the field's type (for an age in days, a number of days)."""
    VALUES = "values"
    """A non-empty list of values of the field's type."""
    FLAG = "flag"
    """``true`` or ``false``."""
    DURATION = "duration"
    """A duration like ``2d``, compared with how long ago the field's time is."""


@dataclass(frozen=True)
class Operator:
    """One operator: its name, the field types that take it and how it is computed."""

    name: str
    types: frozenset[ValueType]
    operand: Operand
    sql: Callable[[Any, Any], ColumnElement[bool]]
    python: Callable[[Any, Any], bool | None]
    """None: unknown, as NULL is in SQL (a text operator on a list)."""
    help: str
    """What it means, as an editor shows it (the JSON Schema's description)."""
    missing_is_unknown: bool = True
    """False for an operator about presence: a missing value is an answer, not unknown."""


_TEXT = frozenset({ValueType.STRING, ValueType.STAGE})
_ORDERED = frozenset({ValueType.INTEGER, ValueType.NUMBER, ValueType.DAYS})
_LISTED = _TEXT | {ValueType.INTEGER}
_WORDS = frozenset({ValueType.STRING})
_COMPARED = _TEXT | {ValueType.INTEGER, ValueType.NUMBER}
_TIMES = frozenset({ValueType.DATETIME, ValueType.DATE})
_STORED = frozenset(ValueType) - {ValueType.DAYS}


def _compared(
    name: str, types: frozenset[ValueType], compare: Callable[[Any, Any], Any], help_text: str
) -> Operator:
    """An operator that is one of Python's comparisons, which SQLAlchemy renders in SQL too."""
    return Operator(name, types, Operand.VALUE, compare, compare, help_text)


def _text_of(column: Any) -> Any:
    """What the text operators read: a JSON attribute's or property's value only when it is
    no list or object (NULL, unknown, for those: a list is not a text), a column as it is."""
    from leadflow.store.attributes import AttributeValue, ScalarText

    return ScalarText(column) if isinstance(column, AttributeValue) else column


def _is_text(value: Any) -> bool:
    """The Python side of :func:`_text_of`: a JSON list or object is no text."""
    return not isinstance(value, list | dict)


def _contains_sql(column: Any, part: str) -> ColumnElement[bool]:
    """Whether ``part`` occurs in ``column``, case-sensitive (each dialect's position)."""
    from leadflow.store.text_search import TextPosition

    return TextPosition(_text_of(column), part) > 0


def _starts_with_sql(column: Any, part: str) -> ColumnElement[bool]:
    from sqlalchemy import func

    return func.substr(_text_of(column), 1, len(part)) == part


def _ends_with_sql(column: Any, part: str) -> ColumnElement[bool]:
    from sqlalchemy import and_, func

    text = _text_of(column)
    # Both dialects read substr(x, start) alike only for a start of 1 or more.
    length = func.length(text)
    return and_(length >= len(part), func.substr(text, length - len(part) + 1) == part)


def _is_set_sql(column: Any, present: bool) -> ColumnElement[bool]:
    result: ColumnElement[bool] = column.is_not(None) if present else column.is_(None)
    return result


OPERATORS: Mapping[str, Operator] = {
    entry.name: entry
    for entry in (
        _compared("equals", _COMPARED | {ValueType.BOOLEAN}, operator.eq, "equal to"),
        _compared(
            "not_equals", _COMPARED, operator.ne, "not equal to (a missing value matches neither)"
        ),
        Operator(
            "in",
            _LISTED,
            Operand.VALUES,
            lambda column, values: column.in_(values),
            lambda value, values: value in values,
            "one of these values",
        ),
        Operator(
            "not_in",
            _LISTED,
            Operand.VALUES,
            lambda column, values: column.not_in(values),
            lambda value, values: value not in values,
            "none of these values (a missing value matches neither)",
        ),
        Operator(
            "contains",
            _WORDS,
            Operand.VALUE,
            _contains_sql,
            lambda value, part: part in value if _is_text(value) else None,
            "the text contains this, case-sensitive",
        ),
        Operator(
            "starts_with",
            _WORDS,
            Operand.VALUE,
            _starts_with_sql,
            lambda value, part: value.startswith(part) if _is_text(value) else None,
            "the text begins with this, case-sensitive",
        ),
        Operator(
            "ends_with",
            _WORDS,
            Operand.VALUE,
            _ends_with_sql,
            lambda value, part: value.endswith(part) if _is_text(value) else None,
            "the text ends with this, case-sensitive (e.g. an email domain)",
        ),
        _compared("at_least", _ORDERED, operator.ge, ">="),
        _compared("at_most", _ORDERED, operator.le, "<="),
        _compared("more_than", _ORDERED, operator.gt, ">"),
        _compared("less_than", _ORDERED, operator.lt, "<"),
        Operator(
            "older_than",
            frozenset({ValueType.DATETIME}),
            Operand.DURATION,
            operator.gt,
            operator.gt,
            "the time is longer ago than this duration",
        ),
        Operator(
            "within",
            frozenset({ValueType.DATETIME}),
            Operand.DURATION,
            operator.le,
            operator.le,
            "the time is at most this duration ago",
        ),
        _compared("before", _TIMES, operator.lt, "earlier than this date or time"),
        _compared("after", _TIMES, operator.gt, "later than this date or time"),
        Operator(
            "is_set",
            _STORED,
            Operand.FLAG,
            _is_set_sql,
            lambda value, present: (value is not None) == present,
            "true: has a value; false: has none",
            missing_is_unknown=False,
        ),
    )
}
"""Every operator, in the order messages and the JSON Schema list them."""


def operators_for(kind: ValueType) -> tuple[Operator, ...]:
    """The operators a field of type ``kind`` takes, in :data:`OPERATORS` order."""
    return tuple(entry for entry in OPERATORS.values() if kind in entry.types)


def compares_age(kind: ValueType, entry: Operator) -> bool:
    """Whether ``left`` is an age: a ``days`` field, or a duration like ``older_than: 2d``.

    The operand is then a timedelta ``d`` and the stored value a time ``t``. Since the age is
    ``now - t``, ``age OPERATOR d`` holds exactly when ``(now - d) OPERATOR t``: the evaluators
    pass the cutoff ``now - d`` as ``left`` and the stored time as ``right``, so no date
    arithmetic runs in SQL and indexes on the time columns can be used.
    """
    return kind is ValueType.DAYS or entry.operand is Operand.DURATION
