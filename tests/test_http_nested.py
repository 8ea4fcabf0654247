"""``POST /v1/KIND`` reads nested ``attributes`` / ``properties`` objects as a JSONL import
does (leadflow.ingest.nesting): each key is the column ``NEST.KEY``, mapped as a CSV header of
that name; deeper nesting, a list, a nest that is no object and a column given flat and nested
in one object are 422 naming the column, with the file's words; the OpenAPI document describes
the same shapes, no more and no less (docs/service.md, docs/import.md "Nested objects")."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from import_support import rows
from sqlalchemy import Engine

from leadflow.clock import SettableClock
from leadflow.ingest.mapping import SPARE_COLUMNS
from tests.http_support import ATTRIBUTES, Api, build_app, http_settings, runtime_for
from tests.test_import_nested import HUBSPOT_COLUMNS, HUBSPOT_CONTACT

WRITTEN_ONE = {"kind": "leads", "received": 1, "inserted": 1, "updated": 0, "unchanged": 0}
NESTED_DEEPER = (
    "inside 'attributes' is nested deeper than one level; give it one value (text, a number, "
    "true, false or null), or leave it out"
)


@pytest.fixture
def api(engine: Engine, make_settings: Any, clock: SettableClock) -> Api:
    """Leads with the declared attributes ``region`` (string) and ``employees`` (integer)."""
    return Api(build_app(runtime_for(engine, http_settings(make_settings), clock))[0])


@pytest.fixture
def hubspot(engine: Engine, make_settings: Any, clock: SettableClock) -> Api:
    """The mapping docs/import.md gives for HubSpot's contacts."""
    settings = http_settings(
        make_settings,
        **{
            "attributes.leads": {**ATTRIBUTES, "lead_status": "string"},
            "import.mappings": {"leads": {"columns": HUBSPOT_COLUMNS}},
        },
    )
    return Api(build_app(runtime_for(engine, settings, clock))[0])


def record_schema(api: Api, kind: str) -> dict[str, Any]:
    document = api.get("/openapi.json", auth=False).json()
    body = document["paths"][f"/v1/{kind}"]["post"]["requestBody"]["content"]
    schema: dict[str, Any] = body["application/json"]["schema"]
    return schema


class TestAccepted:
    """What a JSONL line of the shape lands as, a posted object lands as."""

    def test_nested_attributes_are_the_attribute_columns(self, api: Api, engine: Engine) -> None:
        """Nested beside flat, ``null`` as no attributes, a number for an integer attribute."""
        body = [
            {"external_id": "L1", "attributes": {"region": "EU", "employees": "12"}},
            {"external_id": "L2", "attributes.region": "US"},
            {"external_id": "L3", "attributes": None, "name": "Cy"},
            {"external_id": "L4", "attributes": {"employees": 7}},
        ]
        assert api.post("/v1/leads", body).json() == {**WRITTEN_ONE, "received": 4, "inserted": 4}
        assert rows(engine, "leads", "external_id", "name", "attributes") == [
            ("L1", None, {"region": "EU", "employees": 12}),
            ("L2", None, {"region": "US"}),
            ("L3", "Cy", {}),
            ("L4", None, {"employees": 7}),
        ]

    def test_a_hubspot_contact_posted_as_its_api_sends_it(
        self, hubspot: Api, engine: Engine
    ) -> None:
        """The webhook's own shape with the mapping written for HubSpot's CSV headers."""
        other = {"id": "102", "properties": {"email": "bob@example.com", "hs_lead_status": None}}
        response = hubspot.post("/v1/leads", [HUBSPOT_CONTACT, other])
        assert response.json() == {**WRITTEN_ONE, "received": 2, "inserted": 2}
        assert rows(engine, "leads", "external_id", "email", "stage", "attributes") == [
            ("101", "ann@example.com", "lead", {"lead_status": "NEW"}),
            ("102", "bob@example.com", "lead", {}),
        ]
        assert hubspot.post("/v1/leads", HUBSPOT_CONTACT).json() == {
            **WRITTEN_ONE,
            "inserted": 0,
            "unchanged": 1,
        }

    def test_an_activity_properties_object_stays_one_field(self, api: Api, engine: Engine) -> None:
        """An activity's ``properties`` is its JSON object, as deep as it is, not flattened."""
        assert api.post("/v1/leads", {"external_id": "L1"}).status_code == 200
        activity = {
            "external_id": "ev-1",
            "lead": "L1",
            "type": "page_view",
            "occurred_at": "2026-03-02T08:15:00Z",
            "properties": {"page": {"path": "/x"}, "tags": [1]},
        }
        assert api.post("/v1/activities", activity).json()["inserted"] == 1
        assert rows(engine, "activities", "external_id", "properties") == [
            ("ev-1", {"page": {"path": "/x"}, "tags": [1]})
        ]


class TestRefused:
    """422 at the column, with the words of the file's problem; nothing is written."""

    def test_nesting_too_deep_a_list_or_a_column_twice(self, api: Api, engine: Engine) -> None:
        body = [
            {"external_id": "L1", "attributes": {"region": "EU"}},
            {"external_id": "L2", "attributes": {"region": {"name": "EU"}}},
            {"external_id": "L3", "attributes": {"region": ["EU", "US"]}},
            {"external_id": "L4", "attributes": ["EU"]},
            {"external_id": "L5", "attributes.region": "EU", "attributes": {"region": "x"}},
        ]
        response = api.post("/v1/leads", body)
        assert (response.status_code, response.json()) == (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", 1, "attributes.region"],
                        "msg": f"an object {NESTED_DEEPER}",
                        "type": "value_error",
                    },
                    {
                        "loc": ["body", 2, "attributes.region"],
                        "msg": f"a list {NESTED_DEEPER}",
                        "type": "value_error",
                    },
                    {
                        "loc": ["body", 3, "attributes"],
                        "msg": 'expected an object such as {"industry": "saas"} whose keys are '
                        "read as attributes.KEY columns, got a list",
                        "type": "dict_type",
                    },
                    {
                        "loc": ["body", 4, "attributes.region"],
                        "msg": "given twice on this line, as the key 'attributes.region' and as "
                        "'region' inside 'attributes'; keep one",
                        "type": "value_error",
                    },
                ]
            },
        )
        assert rows(engine, "leads", "external_id") == []

    def test_an_unmapped_nested_property_says_how_to_map_it(self, api: Api) -> None:
        response = api.post("/v1/leads", {"external_id": "101", "properties": {"email": "a@b.c"}})
        assert (response.status_code, response.json()) == (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", "properties.email"],
                        "msg": "unknown column 'properties.email'; to read it as email, map it "
                        "under import.mappings.leads.columns ('properties.email': email), or "
                        "map it to skip",
                        "type": "extra_forbidden",
                    }
                ]
            },
        )

    def test_an_attribute_nested_in_one_record_and_bare_in_another(
        self, api: Api, engine: Engine
    ) -> None:
        """Two keys setting one field, as two columns of a file: refused naming both, at the
        record that disagrees with those before it (as a JSONL file's line is), at its key."""
        body = [
            {"external_id": "L1", "attributes": {"region": "EU"}},
            {"external_id": "L2", "region": "US"},
        ]
        response = api.post("/v1/leads", body)
        assert (response.status_code, response.json()) == (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", 1, "region"],
                        "msg": "columns 'attributes.region' and 'region' both set "
                        "attributes.region; map one of them to skip under "
                        "import.mappings.leads.columns (a field takes one column)",
                        "type": "value_error",
                    }
                ]
            },
        )
        assert rows(engine, "leads", "external_id") == []

    def test_a_nested_value_of_another_json_type(self, api: Api) -> None:
        """The JSON types the document gives a nested key, held as a flat key's are."""
        response = api.post("/v1/leads", {"external_id": "L1", "attributes": {"employees": True}})
        assert (response.status_code, response.json()) == (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", "attributes.employees"],
                        "msg": "expected integer or string or null, got boolean",
                        "type": "type_error",
                    }
                ]
            },
        )

    def test_too_many_nested_keys_are_refused_by_their_count(self, api: Api) -> None:
        """A nest's keys count as columns: one problem, not one unknown column each."""
        many = {f"k{n}": n for n in range(150)}
        response = api.post("/v1/leads", [{"external_id": "L1", "attributes": many}])
        usable = 14  # 12 fields and 2 declared attributes
        assert (response.status_code, response.json()) == (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", 0],
                        "msg": f"151 columns, but leads have only {usable} fields, declared "
                        "attributes and mapped columns; remove the columns leadflow does not "
                        f"read (more than {usable + SPARE_COLUMNS} are not looked at one by one)",
                        "type": "too_long",
                    }
                ]
            },
        )


class TestAsDocumented:
    """The OpenAPI document declares valid exactly the nested shapes the server takes."""

    def test_the_nests_are_documented_as_the_server_reads_them(self, api: Api) -> None:
        record = record_schema(api, "leads")["anyOf"][0]
        assert record["properties"]["attributes"] == {
            "type": ["object", "null"],
            "properties": {
                "region": {
                    "type": ["string", "null"],
                    "maxLength": 2000,
                    "description": "attribute (string)",
                },
                "employees": {
                    "type": ["integer", "string", "null"],
                    "description": "attribute (integer)",
                },
            },
            "additionalProperties": False,
            "description": "each key is read as the column attributes.KEY; null is none",
        }
        assert record["properties"]["properties"]["properties"] == {}
        activity = record_schema(api, "activities")["anyOf"][0]
        assert activity["properties"]["properties"] == {"type": ["object", "null"]}

    @pytest.mark.parametrize(
        ("kind", "body", "valid"),
        [
            ("leads", {"external_id": "L1", "attributes": {"region": "EU"}}, True),
            ("leads", {"external_id": "L1", "attributes": None, "properties": {}}, True),
            ("leads", [{"external_id": "L1", "attributes": {"employees": 3}}], True),
            ("leads", {"external_id": "L1", "attributes": {"region": {"a": 1}}}, False),
            ("leads", {"external_id": "L1", "attributes": {"region": ["EU"]}}, False),
            ("leads", {"external_id": "L1", "attributes": "EU"}, False),
            ("leads", {"external_id": "L1", "attributes": {"city": "Oslo"}}, False),
            ("leads", {"external_id": "L1", "attributes": {"employees": True}}, False),
            ("leads", {"external_id": "L1", "properties": {"email": "a@b.c"}}, False),
            ("leads", {"external_id": "L1", "region": "EU", "attributes": {"region": "EU"}}, False),
            (
                "leads",
                [{"external_id": "L1", "region": "EU"}, {"external_id": "L2", "attributes": {}}],
                True,
            ),
            (
                "leads",
                [
                    {"external_id": "L1", "region": "EU"},
                    {"external_id": "L2", "attributes": {"region": "US"}},
                ],
                False,
            ),
            ("reps", {"name": "Rita", "email": "r@x.test", "attributes": {"region": "EU"}}, False),
        ],
    )
    def test_valid_by_the_document_exactly_when_the_server_takes_it(
        self, api: Api, kind: str, body: Any, valid: bool
    ) -> None:
        """schemathesis-style: the document's verdict is the server's (200 or 422)."""
        schema = record_schema(api, kind)
        assert jsonschema.Draft202012Validator(schema).is_valid(body) is valid
        assert api.post(f"/v1/{kind}", body).status_code == (200 if valid else 422)

    @pytest.mark.parametrize(
        ("body", "valid"),
        [
            (HUBSPOT_CONTACT, True),
            ({"id": "101", "properties": {"email": "a@b.c"}, "properties.email": "a@b.c"}, False),
            ([{"id": "1", "properties": {"email": "a@b.c"}}, {"id": "2", "email": "b@c.d"}], False),
            ({"id": "1", "external_id": "1"}, False),
            ({"id": "1", "properties.createdate": "x", "properties": {"createdate": "y"}}, False),
            (
                [{"id": "1", "properties.createdate": "x"}, {"id": "2", "properties": {}}],
                True,
            ),
            ({"id": "1", "properties": {"email": {"value": "a@b.c"}}}, False),
            # A nested mapped key has its field's type, as the flat one: an email of 5 was
            # valid to the document and refused by the server.
            ({"id": "1", "properties": {"email": 5}}, False),
            (
                [{"id": "1", "properties.email": "a@b.c"}, {"id": "2", "properties": {}}],
                True,
            ),
        ],
    )
    def test_a_mapped_nest_is_documented_as_mapped(
        self, hubspot: Api, body: Any, valid: bool
    ) -> None:
        """With the HubSpot mapping, ``properties`` holds the mapped ``properties.KEY`` names;
        two keys setting one field are invalid, in one record or across a list."""
        schema = record_schema(hubspot, "leads")
        assert jsonschema.Draft202012Validator(schema).is_valid(body) is valid
        assert hubspot.post("/v1/leads", body).status_code == (200 if valid else 422)
