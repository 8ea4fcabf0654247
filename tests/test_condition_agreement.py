"""SQL and Python agree: ``to_where`` in the database selects exactly the rows ``matches`` accepts.

Generated leads and deals are stored in a real SQLite file and a real PostgreSQL schema, read
back (so both evaluators see stored values), and generated condition trees over every field
type and operator are evaluated both ways. The regular tests below pin the cases the property
test found or that matter most: NULLs under NOT, JSON booleans on SQLite, ints against floats,
ages over several columns, and the average sales cycle with and without groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, Table, delete, insert, select

from leadflow.rule_language.conditions import (
    ATTRIBUTE_TIME_FORMAT,
    Condition,
    ConditionParser,
    CycleAverage,
    EvaluationContext,
    IdleBeyondAverageCycle,
    cycle_conditions,
)
from leadflow.rule_language.fields import Subject, ValueType, field_catalog
from leadflow.rule_language.operators import operators_for
from leadflow.rule_language.to_python import matches
from leadflow.rule_language.to_sql import to_where
from leadflow.rule_language.yaml_source import SourceDocument
from leadflow.settings import Settings
from leadflow.store.tables import ACTIVITIES, DEALS, LEADS

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ATTRIBUTES = {
    "industry": "string",
    "employees": "integer",
    "revenue": "number",
    "partner": "boolean",
    "signed_up_at": "datetime",
    "founded": "date",
}
STAGES = ("subscriber", "lead", "mql", "sql", "opportunity", "customer", "nurture", "recycled")
TEXTS = ("a", "A", "b", "é", "", " a", "a%", "Acme GmbH")
INTEGERS = (-3, 0, 1, 2, 7, 60, 61, 100)
NUMBERS = (0, 1, -2.25, 0.1, 0.3, 0.1 + 0.2, 1.5, 1e6, 61)
PRODUCTS = ("core", "addon", "Core")
SETTINGS = Settings.model_validate({"attributes": {"leads": ATTRIBUTES}})

Row = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# Generated records


def _instants() -> st.SearchStrategy[datetime]:
    """Times around ``NOW``, often exactly on a day boundary so ``at_least: 2`` is tested at 2d."""
    exact_days = st.integers(0, 12).map(lambda days: NOW - timedelta(days=days))
    nudged = st.tuples(exact_days, st.sampled_from([-1, 1, -1_000_000, 500_000])).map(
        lambda pair: pair[0] + timedelta(microseconds=pair[1])
    )
    anywhere = st.integers(-20 * 86400, 2 * 86400).map(lambda s: NOW + timedelta(seconds=s))
    return st.one_of(exact_days, nudged, anywhere)


def _attribute_value(kind: str) -> st.SearchStrategy[Any]:
    values: dict[str, st.SearchStrategy[Any]] = {
        "string": st.sampled_from(TEXTS),
        "integer": st.sampled_from(INTEGERS),
        "number": st.sampled_from(NUMBERS),
        "boolean": st.booleans(),
        "datetime": _instants().map(lambda when: when.strftime(ATTRIBUTE_TIME_FORMAT)),
        "date": _instants().map(lambda when: when.strftime("%Y-%m-%d")),
    }
    return st.one_of(st.none(), values[kind])


@st.composite
def _attributes(draw: st.DrawFn) -> dict[str, Any]:
    present = draw(st.lists(st.sampled_from(sorted(ATTRIBUTES)), unique=True))
    return {name: draw(_attribute_value(ATTRIBUTES[name])) for name in sorted(present)}


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


LEAD_ROW = st.fixed_dictionaries(
    {
        "email": _optional(st.sampled_from(TEXTS)),
        "name": _optional(st.sampled_from(TEXTS)),
        "company": _optional(st.sampled_from(TEXTS)),
        "score": st.sampled_from(INTEGERS),
        "stage": st.sampled_from(STAGES),
        "stage_entered_at": _instants(),
        "last_activity_at": _optional(_instants()),
        "created_at": _instants(),
        "unsubscribed": st.booleans(),
        "do_not_email": st.booleans(),
        "hard_bounced": st.booleans(),
        "attributes": _attributes(),
    }
)

DEAL_ROW = st.fixed_dictionaries(
    {
        "account": _optional(st.sampled_from(TEXTS)),
        "product": _optional(st.sampled_from(PRODUCTS)),
        "stage": st.sampled_from(("discovery", "proposal")),
        "amount": _optional(st.sampled_from(NUMBERS)),
        "engaged_at": _optional(_instants().map(lambda when: when - timedelta(days=20))),
        "last_activity_at": _optional(_instants()),
        "attributes": st.just({}),
    }
)

# ---------------------------------------------------------------------------------------------
# Generated conditions, written as a rule file would write them


def _durations() -> st.SearchStrategy[str]:
    return st.sampled_from(("1s", "90m", "1d", "2d", "2d 12h", "1w"))


def _instant_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        _instants(), _instants().map(lambda when: date(when.year, when.month, when.day))
    )


def _operand(kind: ValueType, operator: str) -> st.SearchStrategy[Any]:
    scalars: dict[ValueType, st.SearchStrategy[Any]] = {
        ValueType.STRING: st.sampled_from(TEXTS),
        ValueType.STAGE: st.sampled_from(STAGES),
        ValueType.INTEGER: st.sampled_from(INTEGERS),
        ValueType.NUMBER: st.sampled_from(NUMBERS),
        ValueType.BOOLEAN: st.booleans(),
        ValueType.DAYS: st.sampled_from((0, 1, 2, 2.5, 7, -1)),
        ValueType.DATETIME: _instant_values(),
        ValueType.DATE: _instant_values(),
    }
    if operator == "is_set":
        return st.booleans()
    if operator in ("in", "not_in"):
        return st.lists(scalars[kind], min_size=1, max_size=3)
    if operator in ("older_than", "within"):
        return _durations()
    return scalars[kind]


def _leaf(subject: Subject) -> st.SearchStrategy[dict[str, Any]]:
    catalog = field_catalog(subject, SETTINGS)
    pairs = [
        (spec.name, spec.type, entry.name)
        for spec in catalog.fields.values()
        for entry in operators_for(spec.type)
    ]
    return st.sampled_from(pairs).flatmap(
        lambda pair: _operand(pair[1], pair[2]).map(
            lambda value: {"field": pair[0], pair[2]: value}
        )
    )


def _idle_leaf() -> st.SearchStrategy[dict[str, Any]]:
    options = st.fixed_dictionaries(
        {"factor": st.sampled_from((0.5, 1, 2))},
        optional={"group_by": st.just("product")},
    )
    return options.map(lambda value: {"idle_beyond_average_cycle": value})


def _tree(leaf: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda items: {"all": items}),
            st.lists(inner, min_size=1, max_size=3).map(lambda items: {"any": items}),
            inner.map(lambda item: {"not": item}),
        ),
        max_leaves=5,
    )


CYCLES = st.builds(
    CycleAverage,
    overall_days=st.one_of(st.none(), st.sampled_from((1.0, 2.5, 4.0, 10.0))),
    overall_deals=st.integers(0, 50),
    groups=st.dictionaries(
        st.sampled_from(PRODUCTS), st.tuples(st.sampled_from((0.5, 3.0, 6.0)), st.just(25))
    ),
)

# ---------------------------------------------------------------------------------------------
# Both evaluators


def parse(data: dict[str, Any], subject: Subject = Subject.LEAD) -> Condition:
    catalog = field_catalog(subject, SETTINGS)
    parser = ConditionParser(SourceDocument("generated", data), catalog, STAGES)
    condition = parser.parse(data, ())
    assert parser.problems == [], (data, parser.problems)
    assert condition is not None
    return condition


def store(engine: Engine, table: Table, rows: list[Row]) -> list[Row]:
    """Replace the table's rows with ``rows``; return them as the database now holds them."""
    stamped = [
        {
            "external_id": f"x{index}",
            "created_at": NOW,
            "updated_at": NOW,
            **row,
        }
        for index, row in enumerate(rows)
    ]
    with engine.begin() as connection:
        connection.execute(delete(table))
        if stamped:
            connection.execute(insert(table), stamped)
        stored = connection.execute(select(table).order_by(table.c.id)).mappings().all()
    return [dict(row) for row in stored]


def selected_by_sql(
    engine: Engine, table: Table, condition: Condition, context: EvaluationContext
) -> set[str]:
    query = select(table.c.external_id).where(to_where(condition, table, context))
    with engine.connect() as connection:
        return set(connection.execute(query).scalars())


def selected_by_python(
    rows: list[Row], condition: Condition, context: EvaluationContext
) -> set[str]:
    return {row["external_id"] for row in rows if matches(condition, row, context)}


def assert_agree(
    engine: Engine, table: Table, rows: list[Row], condition: Condition, context: EvaluationContext
) -> set[str]:
    in_sql = selected_by_sql(engine, table, condition, context)
    in_python = selected_by_python(rows, condition, context)
    assert in_sql == in_python, condition
    return in_sql


def context_for(condition: Condition, average: CycleAverage | None = None) -> EvaluationContext:
    cycles: Mapping[IdleBeyondAverageCycle, CycleAverage] = {
        node: average or CycleAverage(None, 0, {}) for node in cycle_conditions(condition)
    }
    return EvaluationContext(now=NOW, cycles=cycles)


# Each example empties and refills the table itself, so the function-scoped engine is safe.
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class TestAgreementProperty:
    """For generated records and conditions, SQL selects exactly what Python accepts."""

    @PROPERTY
    @given(
        rows=st.lists(LEAD_ROW, min_size=1, max_size=50),
        conditions=st.lists(_tree(_leaf(Subject.LEAD)), min_size=6, max_size=6),
    )
    @pytest.mark.slow
    def test_leads(self, engine: Engine, rows: list[Row], conditions: list[dict[str, Any]]) -> None:
        stored = store(engine, LEADS, rows)
        for data in conditions:
            condition = parse(data)
            assert_agree(engine, LEADS, stored, condition, context_for(condition))

    @PROPERTY
    @given(
        rows=st.lists(DEAL_ROW, min_size=1, max_size=50),
        conditions=st.lists(
            _tree(st.one_of(_leaf(Subject.DEAL), _idle_leaf())), min_size=4, max_size=4
        ),
        average=CYCLES,
    )
    @pytest.mark.slow
    def test_deals_with_the_average_cycle(
        self,
        engine: Engine,
        rows: list[Row],
        conditions: list[dict[str, Any]],
        average: CycleAverage,
    ) -> None:
        stored = store(engine, DEALS, rows)
        for data in conditions:
            condition = parse(data, Subject.DEAL)
            assert_agree(engine, DEALS, stored, condition, context_for(condition, average))


def _lead(**values: Any) -> Row:
    base: Row = {
        "score": 0,
        "stage": "lead",
        "stage_entered_at": NOW,
        "last_activity_at": None,
        "attributes": {},
    }
    return {**base, **values}


class TestPinnedLeads:
    """Cases worth naming: both evaluators must give exactly these leads."""

    ROWS = (
        _lead(score=60, attributes={"partner": True, "revenue": 61, "employees": 60}),
        _lead(score=59, attributes={"partner": False, "revenue": 60.5, "employees": None}),
        _lead(score=61, last_activity_at=NOW - timedelta(days=3), attributes={"industry": "a"}),
        _lead(stage="mql", stage_entered_at=NOW - timedelta(days=2), attributes={"industry": "A"}),
        _lead(stage="mql", stage_entered_at=NOW - timedelta(days=2) + timedelta(microseconds=1)),
    )

    @pytest.mark.parametrize(
        ("condition", "expected"),
        [
            # NOT of an unknown stays unknown: leads without the attribute match neither side.
            ({"not": {"field": "attributes.partner", "equals": True}}, {"x1"}),
            ({"field": "attributes.partner", "is_set": False}, {"x2", "x3", "x4"}),
            # JSON booleans (1/0 on SQLite) compare as booleans.
            ({"field": "attributes.partner", "equals": True}, {"x0"}),
            # ints and floats in one number attribute compare as numbers.
            ({"field": "attributes.revenue", "more_than": 60}, {"x0", "x1"}),
            ({"field": "attributes.revenue", "at_least": 61.0}, {"x0"}),
            ({"field": "attributes.employees", "in": [60, 7]}, {"x0"}),
            ({"field": "attributes.employees", "not_in": [7]}, {"x0"}),
            # text equality is exact: case matters.
            ({"field": "attributes.industry", "equals": "a"}, {"x2"}),
            # an age of exactly 2 days is at least 2 days; a microsecond less is not.
            ({"field": "days_in_stage", "at_least": 2}, {"x3"}),
            ({"field": "days_in_stage", "less_than": 2}, {"x0", "x1", "x2", "x4"}),
            # an unknown time is neither older nor newer.
            ({"field": "last_activity_at", "older_than": "2d"}, {"x2"}),
            ({"not": {"field": "last_activity_at", "older_than": "2d"}}, set()),
            (
                {"any": [{"field": "score", "at_least": 61}, {"field": "stage", "equals": "mql"}]},
                {"x2", "x3", "x4"},
            ),
        ],
    )
    def test_exact_leads(
        self, engine: Engine, condition: dict[str, Any], expected: set[str]
    ) -> None:
        stored = store(engine, LEADS, list(self.ROWS))
        parsed = parse(condition)
        assert assert_agree(engine, LEADS, stored, parsed, context_for(parsed)) == expected


class TestTextOperatorsOnJsonLists:
    """An outside tester's find: ``contains`` matched a list or an object held by a JSON
    attribute or an activity property (``{"url": ["/pricing"]}`` earned pricing-page points):
    SQL searched the list's JSON text, Python its ``str()``. The text operators (docs/rules.md:
    "match part of a text") now find a list or an object unknown, as a missing value is, on
    both stores and in both evaluators; ``is_set`` still sees it, ``equals`` compares as
    before."""

    VALUES = (
        "/pricing",  # x0
        "/blog/pricing",  # x1
        ["/pricing"],  # x2
        {"a": "/pricing"},  # x3
        None,  # x4
        ["/pricing", "/blog"],  # x5
        7,  # x6: a number a property reads as its text
    )

    @pytest.mark.parametrize(
        ("condition", "expected", "negated"),
        [
            ({"contains": "/pricing"}, {"x0", "x1"}, {"x6"}),
            ({"contains": "pricing"}, {"x0", "x1"}, {"x6"}),
            ({"starts_with": "/pricing"}, {"x0"}, {"x1", "x6"}),
            ({"starts_with": '["/pri'}, set(), {"x0", "x1", "x6"}),
            ({"ends_with": "pricing"}, {"x0", "x1"}, {"x6"}),
            ({"ends_with": '/pricing"]'}, set(), {"x0", "x1", "x6"}),
            ({"ends_with": "7"}, {"x6"}, {"x0", "x1"}),
            # the object's key "a": no text has it, and the object is no text
            ({"contains": "a"}, set(), {"x0", "x1", "x6"}),
            # a list is a value, and equals no text
            ({"is_set": True}, {"x0", "x1", "x2", "x3", "x5", "x6"}, {"x4"}),
            ({"equals": "/pricing"}, {"x0"}, {"x1", "x2", "x3", "x5", "x6"}),
        ],
    )
    def test_activity_properties(
        self, engine: Engine, condition: dict[str, Any], expected: set[str], negated: set[str]
    ) -> None:
        """NOT of an unknown is unknown: a list matches neither a text operator nor its not."""
        stored = _store_activities(engine, self.VALUES)
        parsed = parse({"field": "properties.url", **condition}, Subject.ACTIVITY)
        context = context_for(parsed)
        assert assert_agree(engine, ACTIVITIES, stored, parsed, context) == expected
        parsed = parse({"not": {"field": "properties.url", **condition}}, Subject.ACTIVITY)
        assert assert_agree(engine, ACTIVITIES, stored, parsed, context) == negated

    @pytest.mark.parametrize(
        ("condition", "expected", "negated"),
        [
            ({"contains": "/pricing"}, {"x0", "x1"}, set()),
            ({"starts_with": "/"}, {"x0", "x1"}, set()),
            ({"ends_with": "g"}, {"x0", "x1"}, set()),
            ({"contains": "blog"}, {"x1"}, {"x0"}),
        ],
    )
    def test_lead_attributes(
        self, engine: Engine, condition: dict[str, Any], expected: set[str], negated: set[str]
    ) -> None:
        """A text attribute holding a list or an object (import refuses one: written by hand
        or by an older version)."""
        rows = [_lead(attributes={"industry": value}) for value in self.VALUES[:6]]
        stored = store(engine, LEADS, rows)
        parsed = parse({"field": "attributes.industry", **condition})
        assert assert_agree(engine, LEADS, stored, parsed, context_for(parsed)) == expected
        parsed = parse({"not": {"field": "attributes.industry", **condition}})
        assert assert_agree(engine, LEADS, stored, parsed, context_for(parsed)) == negated


def _store_activities(engine: Engine, urls: tuple[Any, ...]) -> list[Row]:
    """One page view per url (``properties.url``; None: no such property), as stored."""
    with engine.begin() as connection:
        connection.execute(delete(ACTIVITIES))
        connection.execute(
            insert(ACTIVITIES),
            [
                {
                    "external_id": f"x{index}",
                    "type": "page_view",
                    "occurred_at": NOW,
                    "properties": {} if url is None else {"url": url},
                    "created_at": NOW,
                }
                for index, url in enumerate(urls)
            ],
        )
        stored = connection.execute(select(ACTIVITIES).order_by(ACTIVITIES.c.id)).mappings()
        return [dict(row) for row in stored]


def _deal(
    product: str | None, engaged_days_ago: float | None, active_days_ago: float | None = None
) -> Row:
    def ago(days: float | None) -> datetime | None:
        return None if days is None else NOW - timedelta(days=days)

    return {
        "product": product,
        "stage": "proposal",
        "engaged_at": ago(engaged_days_ago),
        "last_activity_at": ago(active_days_ago),
        "attributes": {},
    }


class TestPinnedAverageCycle:
    """idle_beyond_average_cycle: the group's average when it has one, else the overall one."""

    ROWS = (
        _deal("core", 30),
        _deal("core", 30, active_days_ago=5),  # recent activity: not idle
        _deal("addon", 13),
        _deal(None, 30),
        _deal("core", None, active_days_ago=90),  # never engaged: not idle
    )

    @pytest.mark.parametrize(
        ("group_by", "average", "expected"),
        [
            (False, CycleAverage(10.0, 40, {}), {"x0", "x3"}),
            (True, CycleAverage(10.0, 40, {"addon": (6.0, 25)}), {"x0", "x2", "x3"}),
            (True, CycleAverage(10.0, 40, {"core": (20.0, 25)}), {"x3"}),
            (True, CycleAverage(None, 3, {"addon": (6.0, 25)}), {"x2"}),
            (False, CycleAverage(None, 0, {}), set()),
        ],
    )
    def test_exact_deals(
        self, engine: Engine, group_by: bool, average: CycleAverage, expected: set[str]
    ) -> None:
        stored = store(engine, DEALS, list(self.ROWS))
        options: dict[str, Any] = {"factor": 1.5}
        if group_by:
            options["group_by"] = "product"
        parsed = parse({"idle_beyond_average_cycle": options}, Subject.DEAL)
        context = context_for(parsed, average)
        assert assert_agree(engine, DEALS, stored, parsed, context) == expected
