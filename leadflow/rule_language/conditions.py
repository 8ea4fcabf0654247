"""The condition tree and its parser.

A condition in a rule file is a mapping: ``all:``/``any:`` with a list, ``not:`` with one
condition, a comparison ``{field: score, at_least: 60}`` (its operators are defined in
``operators``), or the funnel's own ``idle_beyond_average_cycle:``. It is parsed once into
the frozen tree below, type-checked against the subject's fields, and then evaluated by
``to_sql`` (in the database) or ``to_python`` (for one record) with the same meaning, SQL's
three-valued logic included.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from leadflow.durations import LONGEST_DURATION
from leadflow.errors import DurationError, Problem
from leadflow.rule_language.actions import parse_rule_duration
from leadflow.rule_language.as_written import Wanted, as_written
from leadflow.rule_language.fields import PROPERTY_PREFIX, FieldCatalog, FieldSpec, ValueType
from leadflow.rule_language.operators import (
    OPERATORS,
    Operand,
    Operator,
    compares_age,
    operators_for,
)
from leadflow.rule_language.yaml_source import Path, SourceDocument
from leadflow.suggestions import did_you_mean


@dataclass(frozen=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class NotOf:
    item: Condition


@dataclass(frozen=True)
class Comparison:
    """``field OPERATOR operand``, with the operand as the parser converted it.

    The operand is a value of the field's type, a tuple of them (``in``), a flag (``is_set``),
    or a timedelta when the comparison is about an age (see :func:`compares_age`).
    """

    field: FieldSpec
    operator: Operator
    operand: Any

    @property
    def compares_age(self) -> bool:
        return compares_age(self.field.type, self.operator)


@dataclass(frozen=True)
class IdleBeyondAverageCycle:
    """A deal idle for more than ``factor`` times the average sales cycle of its group."""

    factor: float
    window: timedelta
    min_deals: int
    group_by: FieldSpec | None
    idle: FieldSpec


Condition = AllOf | AnyOf | NotOf | Comparison | IdleBeyondAverageCycle

IDLE_FROM = {"last_activity": "idle_days", "engaged": "age_days"}
"""Idle time counts from the later of engaged_at and the last activity, or (``idle_from:
engaged``) from engaged_at alone; docs/rules.md, "The average sales cycle"."""

CONDITION_KEYS = ("all", "any", "not", "field", "idle_beyond_average_cycle")
LARGEST_NUMBER = 10**15
"""Numbers in conditions stay within this, so floats hold them exactly and SQL can bind them."""
ATTRIBUTE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""How datetime attributes are stored in the JSON column, so text order is time order."""


class ConditionParser:
    """Parses one rule's condition, collecting every problem with its position."""

    def __init__(
        self, document: SourceDocument, catalog: FieldCatalog, stages: tuple[str, ...]
    ) -> None:
        self.document = document
        self.catalog = catalog
        self.stages = stages
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        """What ``check`` prints but does not refuse: a value repeated in an ``in:`` list."""

    def problem(self, path: Path, message: str, *, key: bool = False) -> None:
        mark = self.document.mark(path, key=key)
        self.problems.append(Problem(self.document.file, mark.line, mark.column, message))

    def warning(self, path: Path, message: str) -> None:
        mark = self.document.mark(path)
        self.warnings.append(Problem(self.document.file, mark.line, mark.column, message))

    def found(self, path: Path, value: Any, wanted: Wanted = "other") -> str:
        """``value`` as the file wrote it (``~``, not ``None``), for ``found ...``."""
        return as_written(self.document, path, value, wanted=wanted)

    def parse(self, data: Any, path: Path) -> Condition | None:
        if not isinstance(data, dict) or not data:
            self.problem(path, "expected a condition: a mapping with all:, any:, not: or field:")
            return None
        if "field" in data:
            return self._comparison(data, path)
        if len(data) != 1:
            keys = ", ".join(repr(k) for k in data)
            self.problem(path, f"expected exactly one of all:, any:, not: here, found {keys}")
            return None
        key, value = next(iter(data.items()))
        if key in ("all", "any"):
            return self._group(str(key), value, (*path, key))
        if key == "not":
            inner = self.parse(value, (*path, key))
            return NotOf(inner) if inner is not None else None
        if key == "idle_beyond_average_cycle":
            return self._idle(value, (*path, key))
        hint = did_you_mean(str(key), CONDITION_KEYS, prefix="; ")
        self.problem(
            (*path, key),
            f"unknown condition {key!r}{hint} (expected one of {', '.join(CONDITION_KEYS)})",
            key=True,
        )
        return None

    def _group(self, key: str, value: Any, path: Path) -> Condition | None:
        if not isinstance(value, list) or not value:
            self.problem(path, f"{key}: expects a non-empty list of conditions")
            return None
        items = [self.parse(item, (*path, index)) for index, item in enumerate(value)]
        if any(item is None for item in items):
            return None
        parsed = tuple(item for item in items if item is not None)
        return AllOf(parsed) if key == "all" else AnyOf(parsed)

    def _comparison(self, data: dict[str, Any], path: Path) -> Condition | None:
        name = data["field"]
        spec = self.catalog.get(str(name)) if isinstance(name, str) else None
        if spec is None:
            self.problem((*path, "field"), self.catalog.unknown_message(str(name)))
            return None
        operators = [key for key in data if key != "field"]
        allowed = [entry.name for entry in operators_for(spec.type)]
        if len(operators) != 1:
            found = ", ".join(operators) or "none"
            self.problem(
                path,
                f"field {spec.name}: expected exactly one operator ({', '.join(allowed)}), found {found}",
            )
            return None
        operator = str(operators[0])
        if operator not in allowed:
            hint = did_you_mean(operator, allowed, suffix=" ")
            self.problem(
                (*path, operator),
                f"{spec.name} ({spec.type.value}) does not take {operator!r}; {hint}use one of {', '.join(allowed)}",
                key=True,
            )
            return None
        entry = OPERATORS[operator]
        operand = self._operand(spec, entry, data[operator], (*path, operator))
        return None if operand is _INVALID else Comparison(spec, entry, operand)

    def _operand(self, spec: FieldSpec, entry: Operator, value: Any, path: Path) -> Any:
        """The operator's value as the evaluators compare it, or ``_INVALID``."""
        if entry.operand is Operand.FLAG:
            if not isinstance(value, bool):
                self.problem(
                    path,
                    f"{entry.name} expects true or false, found {self.found(path, value, 'boolean')}",
                )
                return _INVALID
            return value
        if entry.operand is Operand.VALUES:
            if not isinstance(value, list) or not value:
                self.problem(path, f"{entry.name} expects a non-empty list, e.g. [a, b]")
                return _INVALID
            converted = [
                self._value(spec, item, (*path, index)) for index, item in enumerate(value)
            ]
            if any(item is _INVALID for item in converted):
                return _INVALID
            self._warn_of_repeats(entry, converted, path)
            return tuple(dict.fromkeys(converted))
        if entry.operand is Operand.DURATION:
            offset = self._duration(value, path)
            return _INVALID if offset is None else offset
        return self._value(spec, value, path)

    def _warn_of_repeats(self, entry: Operator, values: list[Any], path: Path) -> None:
        """A value listed twice changes nothing, but may stand where another was meant
        (``in: [mql, mql]`` for ``[mql, sql]``): a warning at the repeat, not a refusal,
        so a rule set that ran before still loads."""
        seen: set[Any] = set()
        warned: set[Any] = set()
        for index, value in enumerate(values):
            if value in seen and value not in warned:
                warned.add(value)
                self.warning(
                    (*path, index),
                    f"{entry.name}: {value!r} is listed more than once (a repeat changes "
                    "nothing; was another value meant?)",
                )
            seen.add(value)

    def _value(self, spec: FieldSpec, value: Any, path: Path) -> Any:
        kind = spec.type
        if kind in (ValueType.STRING, ValueType.STAGE):
            # A number for a text field is refused like null is: ``email equals 5`` is more
            # likely a slip than the text "5". An activity's properties carry no declared
            # type (a CRM sends a page number or a text alike), so a number there stays text.
            loose = spec.name.startswith(PROPERTY_PREFIX) and isinstance(value, int | float)
            if isinstance(value, bool) or not (isinstance(value, str) or loose):
                found = self.found(path, value, "text")
                self.problem(path, f"{spec.name} is text: expected a text value, found {found}")
                return _INVALID
            text = str(value)
            if kind is ValueType.STAGE and text not in self.stages:
                hint = did_you_mean(text, self.stages, suffix=" ")
                self.problem(
                    path, f"unknown stage {text!r}; {hint}stages are {', '.join(self.stages)}"
                )
                return _INVALID
            return text
        if kind in (ValueType.INTEGER, ValueType.NUMBER):
            number = self._number(value, path, integer=kind is ValueType.INTEGER)
            return _INVALID if number is None else number
        if kind is ValueType.BOOLEAN:
            if not isinstance(value, bool):
                found = self.found(path, value, "boolean")
                self.problem(path, f"{spec.name} is true or false, found {found}")
                return _INVALID
            return value
        if kind is ValueType.DAYS:
            return self._days(spec, value, path)
        return self._instant(spec, value, path)

    def _days(self, spec: FieldSpec, value: Any, path: Path) -> Any:
        days = self._number(value, path)
        if days is None:
            return _INVALID
        if abs(days) > LONGEST_DURATION.days:
            self.problem(
                path,
                f"{spec.name}: at most {LONGEST_DURATION.days} days, found {self.found(path, value)}",
            )
            return _INVALID
        return timedelta(days=days)

    def _instant(self, spec: FieldSpec, value: Any, path: Path) -> Any:
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        elif isinstance(value, date):
            moment = datetime.combine(value, time(), tzinfo=UTC)
        else:
            self.problem(
                path,
                f"{spec.name} is a {spec.type.value}: expected a date like 2026-01-31 or a time like 2026-01-31T09:00:00Z, found {self.found(path, value)}",
            )
            return _INVALID
        if spec.name.startswith("attributes."):
            return (
                moment.strftime("%Y-%m-%d")
                if spec.type is ValueType.DATE
                else moment.astimezone(UTC).strftime(ATTRIBUTE_TIME_FORMAT)
            )
        return moment.astimezone(UTC)

    def _number(self, value: Any, path: Path, *, integer: bool = False) -> float | int | None:
        # Named by its operator (``at_least: expected a number``): the column alone left the
        # reader to find which of a line's values was meant.
        key = _operator(path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(path, f"{key}: expected a number, found {self.found(path, value)}")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(path, f"{key}: expected a finite number, found {self.found(path, value)}")
            return None
        if abs(value) > LARGEST_NUMBER:
            # SQLite binds integers as 64-bit; larger ones cannot even be compared there.
            self.problem(
                path,
                f"{key}: expected a number between -{LARGEST_NUMBER} and {LARGEST_NUMBER}, found {self.found(path, value)}",
            )
            return None
        if integer and isinstance(value, float) and not value.is_integer():
            self.problem(path, f"{key}: expected a whole number, found {self.found(path, value)}")
            return None
        return int(value) if integer else value

    def _duration(self, value: Any, path: Path) -> timedelta | None:
        try:
            return parse_rule_duration(value)
        except DurationError as exc:
            self.problem(path, str(exc))
            return None

    def _idle(self, value: Any, path: Path) -> Condition | None:
        options = {"factor", "window", "min_deals", "group_by", "idle_from"}
        if not isinstance(value, dict):
            value = {} if value is None else value
            if not isinstance(value, dict):
                self.problem(
                    path,
                    "idle_beyond_average_cycle expects a mapping (factor:, window:, min_deals:, group_by:)",
                )
                return None
        for key in value:
            if key not in options:
                self.problem(
                    (*path, key),
                    f"unknown option {key!r}; {did_you_mean(str(key), options, suffix=' ')}expected {', '.join(sorted(options))}",
                    key=True,
                )
                return None
        idle_from = value.get("idle_from", "last_activity")
        if idle_from not in IDLE_FROM:
            self.problem(
                (*path, "idle_from"),
                f"idle_from: expected {' or '.join(IDLE_FROM)}, found {self.found((*path, 'idle_from'), idle_from)}",
            )
            return None
        idle = self.catalog.get(IDLE_FROM[idle_from])
        if idle is None:
            self.problem(
                path, "idle_beyond_average_cycle applies to deals: set subject: deal on this rule"
            )
            return None
        factor = self._number(value.get("factor", 2), (*path, "factor"))
        window = self._duration(value.get("window", "365d"), (*path, "window"))
        min_deals = self._number(value.get("min_deals", 20), (*path, "min_deals"), integer=True)
        group_by: FieldSpec | None = None
        if "group_by" in value:
            group_by = self.catalog.get(str(value["group_by"]))
            if group_by is None or group_by.type is not ValueType.STRING:
                self.problem(
                    (*path, "group_by"),
                    f"group_by needs a text field of the deal, e.g. product; {self.found((*path, 'group_by'), value['group_by'])} is not one",
                )
                return None
        if factor is None or window is None or min_deals is None:
            return None
        if not 0 < factor <= 100 or min_deals < 1:
            self.problem(path, "factor must be above 0 (at most 100) and min_deals at least 1")
            return None
        return IdleBeyondAverageCycle(float(factor), window, int(min_deals), group_by, idle)


class _Invalid:
    """Marks a value that failed to convert (``None`` is a legitimate value)."""


_INVALID = _Invalid()


def referenced_fields(condition: Condition) -> Iterator[FieldSpec]:
    """Every field the condition reads, in order, for the evidence of a match."""
    match condition:
        case AllOf(items) | AnyOf(items):
            for item in items:
                yield from referenced_fields(item)
        case NotOf(item):
            yield from referenced_fields(item)
        case IdleBeyondAverageCycle(group_by=group_by, idle=idle):
            yield idle
            if group_by is not None:
                yield group_by
        case Comparison(field=spec):
            yield spec


TEXT_SEARCH = frozenset({"contains", "starts_with", "ends_with"})
"""The operators matching part of a text: a JSON list or object is no text to them."""


def searches_json_text(condition: Condition) -> bool:
    """Whether ``condition`` searches the text of an attribute or an activity property with a
    :data:`TEXT_SEARCH` operator, which once matched a list or an object held there."""
    match condition:
        case AllOf(items) | AnyOf(items):
            return any(searches_json_text(item) for item in items)
        case NotOf(item):
            return searches_json_text(item)
        case Comparison(field=spec, operator=entry):
            return entry.name in TEXT_SEARCH and spec.name.startswith(
                ("attributes.", "properties.")
            )
    return False


def cycle_conditions(condition: Condition) -> Iterator[IdleBeyondAverageCycle]:
    """The average-cycle conditions inside ``condition``: their averages are fetched first."""
    match condition:
        case AllOf(items) | AnyOf(items):
            for item in items:
                yield from cycle_conditions(item)
        case NotOf(item):
            yield from cycle_conditions(item)
        case IdleBeyondAverageCycle():
            yield condition
        case _:
            return


@dataclass(frozen=True)
class CycleAverage:
    """The average sales cycle, overall and per group, as of one evaluation."""

    overall_days: float | None
    overall_deals: int
    groups: Mapping[str, tuple[float, int]]
    """group value -> (average days, won deals); only groups with at least ``min_deals``."""

    def days_for(self, group: str | None) -> float | None:
        if group is not None and group in self.groups:
            return self.groups[group][0]
        return self.overall_days


@dataclass(frozen=True)
class EvaluationContext:
    """What both evaluators need besides the record: the instant, and cycle averages."""

    now: datetime
    cycles: Mapping[IdleBeyondAverageCycle, CycleAverage]


def _operator(path: Path) -> str:
    """The key a value is written under: its operator (``at_least``), or the list's key for an
    item of one (``between``)."""
    return next((str(part) for part in reversed(path) if isinstance(part, str)), "value")
