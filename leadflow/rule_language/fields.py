"""What a condition may refer to: stored fields, typed attributes and computed ages.

Each :class:`FieldSpec` knows its value type, how to read it in SQL and how to read it from a
record in Python, so the two evaluators cannot disagree about what a name means.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from leadflow.settings import Settings
from leadflow.suggestions import did_you_mean

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Table


class ValueType(Enum):
    STRING = "string"
    STAGE = "stage"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    DATE = "date"
    DAYS = "days"
    """A computed age in days, counted from a stored time to ``now``."""


class Subject(Enum):
    LEAD = "lead"
    DEAL = "deal"
    ACTIVITY = "activity"
    """What a scoring model's engagement criterion may filter activities on."""

    @property
    def table(self) -> Table:
        # The tables (and SQLAlchemy) load when a condition is compiled to SQL, not when rules
        # are parsed: ``leadflow check`` never needs them.
        from leadflow.store.tables import ACTIVITIES, DEALS, LEADS

        return {Subject.LEAD: LEADS, Subject.DEAL: DEALS, Subject.ACTIVITY: ACTIVITIES}[self]


@dataclass(frozen=True)
class FieldSpec:
    """One name a condition can use."""

    name: str
    type: ValueType
    sql: Callable[[Table], ColumnElement[Any]]
    read: Callable[[Mapping[str, Any]], Any]
    since: tuple[str, ...] = ()
    """For ``DAYS`` fields: the stored time columns the age counts from (the latest wins)."""
    description: str = ""


def _column(name: str, value_type: ValueType, description: str) -> FieldSpec:
    return FieldSpec(
        name=name,
        type=value_type,
        sql=lambda table: table.c[name],
        read=lambda record: record.get(name),
        description=description,
    )


def _age(name: str, since: tuple[str, ...], description: str) -> FieldSpec:
    return FieldSpec(
        name=name,
        type=ValueType.DAYS,
        sql=lambda table: table.c[since[0]],
        read=lambda record: record.get(since[0]),
        since=since,
        description=description,
    )


def _attribute(name: str, value_type: ValueType) -> FieldSpec:
    def sql(table: Table) -> ColumnElement[Any]:
        from leadflow.store.attributes import attribute_value

        return attribute_value(table, name, value_type.value)

    def read(record: Mapping[str, Any]) -> Any:
        attributes = record.get("attributes") or {}
        return attributes.get(name)

    return FieldSpec(
        name=f"attributes.{name}",
        type=value_type,
        sql=sql,
        read=read,
        description=f"declared {value_type.value} attribute",
    )


_LEAD_FIELDS = (
    _column("external_id", ValueType.STRING, "the CRM's id of the lead"),
    _column("email", ValueType.STRING, "email address"),
    _column("name", ValueType.STRING, "full name"),
    _column("company", ValueType.STRING, "company name"),
    _column("score", ValueType.INTEGER, "lead score"),
    _column("score_fit", ValueType.INTEGER, "the fit part of the score (scoring model)"),
    _column("score_engagement", ValueType.INTEGER, "the engagement part (scoring model)"),
    _column("score_grade", ValueType.STRING, "fit letter and engagement digit, e.g. A2"),
    _column("stage", ValueType.STAGE, "funnel stage"),
    _column("stage_entered_at", ValueType.DATETIME, "when the lead entered its stage"),
    _column("last_activity_at", ValueType.DATETIME, "the lead's latest activity"),
    _column("created_at", ValueType.DATETIME, "when leadflow first saw the lead"),
    _column("unsubscribed", ValueType.BOOLEAN, "unsubscribed from marketing email"),
    _column("do_not_email", ValueType.BOOLEAN, "must not be emailed"),
    _column("hard_bounced", ValueType.BOOLEAN, "an email to the lead bounced permanently"),
    _column("owner_id", ValueType.INTEGER, "the owning rep (use is_set)"),
    _age("days_in_stage", ("stage_entered_at",), "days since the lead entered its stage"),
    _age("days_since_activity", ("last_activity_at",), "days since the lead's latest activity"),
)

_DEAL_FIELDS = (
    _column("external_id", ValueType.STRING, "the CRM's id of the deal"),
    _column("account", ValueType.STRING, "account name"),
    _column("product", ValueType.STRING, "product"),
    _column("stage", ValueType.STRING, "pipeline stage as the CRM names it"),
    _column("outcome", ValueType.STRING, "won, lost or recycled; not set while open"),
    _column("amount", ValueType.NUMBER, "deal value"),
    _column("engaged_at", ValueType.DATETIME, "when the deal entered the pipeline"),
    _column("closed_at", ValueType.DATETIME, "when the deal closed"),
    _column("last_activity_at", ValueType.DATETIME, "the deal's latest activity"),
    _column("owner_id", ValueType.INTEGER, "the owning rep (use is_set)"),
    _age("idle_days", ("engaged_at", "last_activity_at"), "days since engaged or last activity"),
    _age("age_days", ("engaged_at",), "days since the deal was engaged"),
)

_ACTIVITY_FIELDS = (
    _column("type", ValueType.STRING, "the activity's type (visit, email_open, form_fill...)"),
    _column("occurred_at", ValueType.DATETIME, "when it happened"),
)
PROPERTY_PREFIX = "properties."


def _property(name: str) -> FieldSpec:
    """A property of an activity (``url``, ``template``, ``campaign``...), read as text."""

    def sql(table: Table) -> ColumnElement[Any]:
        from leadflow.store.attributes import AttributeValue

        return AttributeValue(table.c.properties, name, "string")

    def read(record: Mapping[str, Any]) -> Any:
        value = (record.get("properties") or {}).get(name)
        if value is None or isinstance(value, list | dict):
            return value  # a list or an object is no text: the text operators do not match it
        return str(value)

    return FieldSpec(
        name=PROPERTY_PREFIX + name,
        type=ValueType.STRING,
        sql=sql,
        read=read,
        description="a property of the activity, as text",
    )


_ATTRIBUTE_TYPES = {
    "string": ValueType.STRING,
    "integer": ValueType.INTEGER,
    "number": ValueType.NUMBER,
    "boolean": ValueType.BOOLEAN,
    "datetime": ValueType.DATETIME,
    "date": ValueType.DATE,
}


@dataclass(frozen=True)
class FieldCatalog:
    """The fields of one subject (lead or deal) under one configuration."""

    subject: Subject
    fields: Mapping[str, FieldSpec]

    def get(self, name: str) -> FieldSpec | None:
        return self.fields.get(name)

    def unknown_message(self, name: str) -> str:
        known = "known fields: " + ", ".join(sorted(self.fields))
        hint = did_you_mean(name, self.fields, n=3, quote=False, otherwise=known)
        return f"unknown {self.subject.value} field {name!r}; {hint}"


@dataclass(frozen=True)
class ActivityCatalog(FieldCatalog):
    """An activity's stored fields and any ``properties.<name>``: activities carry what their
    source sent (a URL, a template, a campaign), with no declaration to check names against."""

    def get(self, name: str) -> FieldSpec | None:
        found = self.fields.get(name)
        if found is None and name.startswith(PROPERTY_PREFIX):
            from leadflow.settings import ATTRIBUTE_NAME

            key = name.removeprefix(PROPERTY_PREFIX)
            return _property(key) if ATTRIBUTE_NAME.match(key) else None
        return found

    def unknown_message(self, name: str) -> str:
        return (
            f"unknown activity field {name!r}; known fields: type, occurred_at and "
            "properties.<name> (letters, digits and underscores)"
        )


ACTIVITY_CATALOG = ActivityCatalog(
    Subject.ACTIVITY, MappingProxyType({spec.name: spec for spec in _ACTIVITY_FIELDS})
)


def field_catalog(subject: Subject, settings: Settings) -> FieldCatalog:
    """Stored fields, computed ages and the attributes declared in ``settings.attributes``."""
    if subject is Subject.ACTIVITY:
        return ACTIVITY_CATALOG
    declared = settings.attributes.leads if subject is Subject.LEAD else settings.attributes.deals
    return _catalog(subject, tuple(declared.items()))


@functools.lru_cache(maxsize=64)
def _catalog(subject: Subject, declared: tuple[tuple[str, str], ...]) -> FieldCatalog:
    """Built once per declaration: routing asks for it once per assignment."""
    base = _LEAD_FIELDS if subject is Subject.LEAD else _DEAL_FIELDS
    fields = {spec.name: spec for spec in base}
    for name, type_name in declared:
        spec = _attribute(name, _ATTRIBUTE_TYPES[type_name])
        fields[spec.name] = spec
    return FieldCatalog(subject=subject, fields=MappingProxyType(fields))
