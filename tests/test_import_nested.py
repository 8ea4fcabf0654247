"""JSONL objects nesting their columns (``{"attributes": {...}}``, HubSpot's
``{"id": ..., "properties": {...}}``) read as the flat ``attributes.NAME`` / ``properties.KEY``
columns are; and a ``properties`` object disagreeing with a ``properties.KEY`` column on one
row is a named problem (docs/import.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine

from leadflow.clock import SettableClock
from leadflow.errors import UserInputError
from leadflow.ingest import import_file
from leadflow.ingest.mapping import SPARE_COLUMNS
from tests.conftest import T0
from tests.http_support import Api, build_app, http_settings, runtime_for

HUBSPOT_COLUMNS = {
    "id": "external_id",
    "properties.email": "email",
    "properties.lifecyclestage": "stage",
    "properties.hs_lead_status": "attributes.lead_status",
    "properties.createdate": "skip",
    "createdAt": "skip",
    "archived": "skip",
}

HUBSPOT_CONTACT = {
    "id": "101",
    "properties": {
        "email": "ann@example.com",
        "lifecyclestage": "lead",
        "hs_lead_status": "NEW",
        "createdate": "2026-01-01T00:00:00Z",
    },
    "createdAt": "2026-01-01T00:00:00Z",
    "archived": False,
}
"""A contact as HubSpot's CRM API returns it."""


def lines(*objects: dict[str, Any]) -> str:
    return "".join(json.dumps(item) + "\n" for item in objects)


def hubspot_settings(make_settings: Any) -> Any:
    return make_settings(
        attributes__leads={"lead_status": "string"},
        import__mappings={"leads": {"columns": HUBSPOT_COLUMNS}},
    )


def test_nested_attributes_are_the_attribute_columns(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """``{"attributes": {"industry": ...}}`` was refused (first line) or rejected (later
    lines) with advice to flatten it; it is the ``attributes.industry`` column, on any line,
    beside lines writing that column flat. ``"attributes": null`` is no attributes."""
    settings = make_settings(attributes__leads={"industry": "string", "employees": "integer"})
    text = lines(
        {"external_id": "J1", "attributes": {"industry": "saas", "employees": "12"}},
        {"external_id": "J2", "attributes.industry": "retail"},
        {"external_id": "J3", "attributes": None, "name": "Cy"},
        {"external_id": "J4", "attributes": {"employees": 7}},
    )
    path = write(tmp_path, "l.jsonl", text)
    report = import_file(engine, settings, "leads", path, clock=clock)
    assert (report.summary, report.problems) == (
        "inserted 4, updated 0, unchanged 0, rejected 0",
        [],
    )
    assert rows(engine, "leads", "external_id", "name", "attributes") == [
        ("J1", None, {"industry": "saas", "employees": 12}),
        ("J2", None, {"industry": "retail"}),
        ("J3", "Cy", {}),
        ("J4", None, {"employees": 7}),
    ]


def test_hubspot_properties_map_as_the_flat_headers_do(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """HubSpot's API shape: the mapping written for a CSV with ``properties.email`` headers
    reads the JSONL objects nesting them, to the same rows."""
    settings = hubspot_settings(make_settings)
    contact = HUBSPOT_CONTACT
    other = {"id": "102", "properties": {"email": "bob@example.com", "hs_lead_status": None}}
    jsonl = write(tmp_path, "contacts.jsonl", lines(contact, other))
    report = import_file(engine, settings, "leads", jsonl, clock=clock)
    assert (report.summary, report.problems) == (
        "inserted 2, updated 0, unchanged 0, rejected 0",
        [],
    )
    expected = [
        ("101", "ann@example.com", "lead", {"lead_status": "NEW"}),
        ("102", "bob@example.com", "lead", {}),
    ]
    assert rows(engine, "leads", "external_id", "email", "stage", "attributes") == expected
    flat = write(
        tmp_path,
        "contacts.csv",
        "id,properties.email,properties.lifecyclestage,properties.hs_lead_status\n"
        "101,ann@example.com,lead,NEW\n"
        "102,bob@example.com,,\n",
    )
    report = import_file(engine, settings, "leads", flat, clock=clock)
    assert report.summary == "inserted 0, updated 0, unchanged 2, rejected 0"
    assert rows(engine, "leads", "external_id", "email", "stage", "attributes") == expected


def test_an_unmapped_nested_property_is_refused_saying_how_to_map_it(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """As a ``properties.email`` header is: an unknown column; the advice names the mapping."""
    path = write(
        tmp_path, "c.jsonl", lines({"external_id": "101", "properties": {"email": "a@b.test"}})
    )
    with pytest.raises(UserInputError) as caught:
        import_file(engine, make_settings(), "leads", path, clock=SettableClock(T0))
    assert str(caught.value) == (
        f"{path}:1: unknown column 'properties.email'; to read it as email, map it under "
        "import.mappings.leads.columns ('properties.email': email), or map it to skip"
    )


def test_an_attribute_nested_on_one_line_and_named_bare_on_another_refuses_the_file(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """``industry`` and ``attributes.industry`` are two columns setting one field, as two such
    flat keys are: the file is refused naming both (a deliberate rule, docs/import.md), at the
    line that writes the second of them (line 1 was blamed, which set the field first), and
    the line of the first."""
    settings = make_settings(attributes__leads={"industry": "string"})
    text = lines(
        {"external_id": "J1", "attributes": {"industry": "saas"}},
        {"external_id": "J2", "name": "Bo"},
        {"external_id": "J3", "industry": "retail"},
    )
    path = write(tmp_path, "l.jsonl", text)
    with pytest.raises(UserInputError) as caught:
        import_file(engine, settings, "leads", path, clock=SettableClock(T0))
    assert str(caught.value) == (
        f"{path}:3: columns 'attributes.industry' (line 1) and 'industry' both set "
        "attributes.industry; map one of them to skip under import.mappings.leads.columns (a "
        "field takes one column)"
    )
    # Flat first, then nested; and both on one line, which is then the line named alone.
    flat_first = write(
        tmp_path,
        "f.jsonl",
        lines(
            {"external_id": "J1", "industry": "saas"},
            {"external_id": "J2", "attributes": {"industry": "retail"}},
        ),
    )
    one_line = write(
        tmp_path,
        "o.jsonl",
        lines(
            {"external_id": "J1", "name": "Al"},
            {"external_id": "J2", "industry": "saas", "attributes.industry": "saas"},
        ),
    )
    refusals = []
    for path in (flat_first, one_line):
        with pytest.raises(UserInputError) as caught:
            import_file(engine, settings, "leads", path, clock=SettableClock(T0))
        refusals.append(str(caught.value))
    both = (
        " both set attributes.industry; map one of them to skip under "
        "import.mappings.leads.columns (a field takes one column)"
    )
    assert refusals == [
        f"{flat_first}:2: columns 'industry' (line 1) and 'attributes.industry'{both}",
        f"{one_line}:2: columns 'industry' and 'attributes.industry'{both}",
    ]


def test_lines_nesting_too_deep_or_twice_are_rejected_and_the_others_land(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """A nested object or list inside ``attributes``, ``attributes`` not an object, and a
    column given both flat and nested on one line: one problem each, naming line and column."""
    settings = make_settings(attributes__leads={"industry": "string", "region": "string"})
    text = lines(
        {"external_id": "J1", "attributes": {"industry": "saas"}},
        {"external_id": "J2", "attributes": {"industry": {"name": "saas"}}},
        {"external_id": "J3", "attributes": {"region": ["EU", "US"]}},
        {"external_id": "J4", "attributes": ["saas"]},
        {"external_id": "J5", "attributes.industry": "saas", "attributes": {"industry": "x"}},
        {"external_id": "J6", "attributes": {"region": "EU"}, "attributes.industry": "retail"},
    )
    path = write(tmp_path, "l.jsonl", text)
    report = import_file(engine, settings, "leads", path, clock=clock)
    assert report.summary == "inserted 2, updated 0, unchanged 0, rejected 4"
    assert [str(p) for p in report.problems] == [
        f"{path}:2: attributes.industry: an object inside 'attributes' is nested deeper than "
        "one level; give it one value (text, a number, true, false or null), or leave it out",
        f"{path}:3: attributes.region: a list inside 'attributes' is nested deeper than one "
        "level; give it one value (text, a number, true, false or null), or leave it out",
        f'{path}:4: attributes: expected an object such as {{"industry": "saas"}} whose keys '
        "are read as attributes.KEY columns, got a list",
        f"{path}:5: attributes.industry: given twice on this line, as the key "
        "'attributes.industry' and as 'industry' inside 'attributes'; keep one",
    ]
    assert rows(engine, "leads", "external_id", "attributes") == [
        ("J1", {"industry": "saas"}),
        ("J6", {"region": "EU", "industry": "retail"}),
    ]


def test_too_many_nested_keys_refuse_the_file_by_their_count(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """The limit of a header's columns counts a nested object's keys: one problem, not one
    unknown column each."""
    many = {f"k{n}": n for n in range(200)}
    path = write(tmp_path, "l.jsonl", lines({"external_id": "J1", "attributes": many}))
    with pytest.raises(UserInputError) as caught:
        import_file(engine, make_settings(), "leads", path, clock=SettableClock(T0))
    usable = 12
    assert str(caught.value) == (
        f"{path}:1: 201 columns, but leads have only {usable} fields, declared attributes and "
        "mapped columns; remove the columns leadflow does not read (more than "
        f"{usable + SPARE_COLUMNS} are not looked at one by one)"
    )


ACTIVITY_SETUP = "external_id\nL1\nL2\nL3\nL4\n"


def test_an_activity_properties_object_disagreeing_with_its_column_is_rejected(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """A ``properties`` JSON cell and a ``properties.url`` cell with another url: the column
    won silently. It is a problem on that line now; the same value (a number as its text, too)
    or a key in one place only merges as before."""
    settings = make_settings()
    leads = write(tmp_path, "leads.csv", ACTIVITY_SETUP)
    assert import_file(engine, settings, "leads", leads, clock=clock).rejected == 0
    path = write(
        tmp_path,
        "activities.csv",
        "external_id,type,lead,occurred_at,properties,properties.url\n"
        'A1,page_view,L1,2026-02-01T10:00:00Z,"{""url"": ""/blog""}",/pricing\n'
        'A2,page_view,L2,2026-02-01T10:00:00Z,"{""url"": ""/pricing""}",/pricing\n'
        'A3,page_view,L3,2026-02-01T10:00:00Z,"{""url"": 5, ""ms"": 1}",5\n'
        'A4,page_view,L4,2026-02-01T10:00:00Z,"{""ms"": 2}",/docs\n',
    )
    report = import_file(engine, settings, "activities", path, clock=clock)
    assert report.summary == "inserted 3, updated 0, already present 0, rejected 1"
    assert [str(p) for p in report.problems] == [
        f"{path}:2: properties.url: '/pricing' differs from the properties object's 'url', "
        "'/blog'; give url once (in the object or as properties.url), or the same value in both"
    ]
    assert rows(engine, "activities", "external_id", "properties") == [
        ("A2", {"url": "/pricing"}),
        ("A3", {"url": "5", "ms": 1}),
        ("A4", {"ms": 2, "url": "/docs"}),
    ]


def test_an_activity_properties_object_stays_one_field_in_jsonl(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """An activity's ``properties`` is a field (a JSON object, nested as deep as it likes), not
    flattened; beside a ``properties.url`` key it is checked as in a CSV."""
    settings = make_settings()
    leads = write(tmp_path, "leads.csv", ACTIVITY_SETUP)
    assert import_file(engine, settings, "leads", leads, clock=clock).rejected == 0
    base = {"type": "page_view", "lead": "L1", "occurred_at": "2026-02-01T10:00:00Z"}
    text = lines(
        {**base, "external_id": "A1", "properties": {"page": {"path": "/x"}, "tags": [1]}},
        {**base, "external_id": "A2", "properties": {"url": "/a"}, "properties.url": "/b"},
    )
    path = write(tmp_path, "activities.jsonl", text)
    report = import_file(engine, settings, "activities", path, clock=clock)
    assert [str(p) for p in report.problems] == [
        f"{path}:2: properties.url: '/b' differs from the properties object's 'url', '/a'; "
        "give url once (in the object or as properties.url), or the same value in both"
    ]
    assert rows(engine, "activities", "external_id", "properties") == [
        ("A1", {"page": {"path": "/x"}, "tags": [1]}),
    ]


def test_the_http_api_flattens_a_posted_attributes_object(
    engine: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """``POST /v1/leads`` with ``{"attributes": {"region": ...}}`` was a 422 telling to flatten
    it, while a JSONL line of that shape landed; it is the attribute now, as in the file
    (more in tests/test_http_nested.py)."""
    runtime = runtime_for(engine, http_settings(make_settings), clock)
    api = Api(build_app(runtime)[0])
    response = api.post("/v1/leads", {"external_id": "L1", "attributes": {"region": "EU"}})
    assert (response.status_code, response.json()) == (
        200,
        {"kind": "leads", "received": 1, "inserted": 1, "updated": 0, "unchanged": 0},
    )
    assert rows(engine, "leads", "external_id", "attributes") == [("L1", {"region": "EU"})]


def test_a_posted_activity_disagreeing_with_its_properties_object_is_422(
    engine: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """The same rule over HTTP: 422 at the posted key, nothing written."""
    api = Api(build_app(runtime_for(engine, http_settings(make_settings), clock))[0])
    assert api.post("/v1/leads", {"external_id": "L1"}).status_code == 200
    activity = {
        "external_id": "ev-1",
        "lead": "L1",
        "type": "page_view",
        "occurred_at": "2026-03-02T08:15:00Z",
        "properties": {"url": "/blog"},
        "properties.url": "/pricing",
    }
    response = api.post("/v1/activities", activity)
    assert (response.status_code, response.json()) == (
        422,
        {
            "detail": [
                {
                    "loc": ["body", "properties.url"],
                    "msg": "'/pricing' differs from the properties object's 'url', '/blog'; "
                    "give url once (in the object or as properties.url), or the same value in "
                    "both",
                    "type": "value_error",
                }
            ]
        },
    )
    assert rows(engine, "activities", "external_id") == []


def test_a_file_whose_every_line_is_refused_for_its_keys_names_the_first_such_line(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """Every line refused while its keys were read (nested too deep here) left the file no
    columns, and it was refused for ``missing required column external_id``, which its lines
    hold: the refusal names the first line's own problem."""
    settings = make_settings(attributes__leads={"region": "string"})
    text = lines(
        {"external_id": "N1", "attributes": {"region": ["x"]}},
        {"external_id": "N2", "attributes": {"region": {"name": "EU"}}},
    )
    path = write(tmp_path, "n.jsonl", text)
    with pytest.raises(UserInputError) as refused:
        import_file(engine, settings, "leads", path, clock=clock)
    assert str(refused.value) == (
        f"{path}:1: attributes.region: a list inside 'attributes' is nested deeper than one "
        "level; give it one value (text, a number, true, false or null), or leave it out (no "
        "line of the file can be read)"
    )
