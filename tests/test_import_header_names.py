"""A CRM export's headers as people write them (``Lead Source``, ``TotalVisits``, ``Do Not
Email``) are matched to fields and declared attributes by their written-out name, and a
picklist's placeholder (``Select``) can mean "no value" in every column: the X Education lead
export's shape, which otherwise needed 37 column mappings and a value map per column."""

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
from leadflow.ingest.mapping import field_name

ATTRIBUTES = {
    "lead_source": "string",
    "total_visits": "integer",
    "what_is_your_current_occupation": "string",
}
EXPORT = (
    "Prospect ID,Lead Source,Do Not Email,TotalVisits,What is your current occupation\n"
    "p1,Google,No,5,Select\n"
    "p2,Olark Chat,Yes,,Unemployed\n"
    "p3, select ,No,SELECT,Student\n"
)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Lead Source", "lead_source"),
        ("TotalVisits", "total_visits"),
        ("Total Time Spent on Website", "total_time_spent_on_website"),
        ("Do Not Email", "do_not_email"),
        ("Prospect ID", "prospect_id"),
        ("externalID", "external_id"),
        (" Lead-Source ", "lead_source"),
        ("How did you hear about X Education", "how_did_you_hear_about_x_education"),
    ],
)
def test_field_name(header: str, name: str) -> None:
    assert field_name(header) == name


def _settings(make_settings: Any, **mapping: Any) -> Any:
    return make_settings(
        attributes__leads=ATTRIBUTES,
        import__mappings={"leads": {"columns": {"Prospect ID": "external_id"}, **mapping}},
    )


def test_headers_written_out_and_placeholders_as_empty(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """``Do Not Email`` sets the field, the others the attributes; ``Select`` in any case and
    spacing is no value: no occupation for p1, no visits (an integer column) for p3."""
    settings = _settings(make_settings, empty_values=["Select"])
    path = write(tmp_path, "Leads.csv", EXPORT)
    report = import_file(engine, settings, "leads", path, clock=clock)
    assert (report.problems, report.counts.inserted) == ([], 3)
    found = rows(engine, "leads", "external_id", "do_not_email", "attributes")
    assert [(e, d, a if isinstance(a, dict) else json.loads(a)) for e, d, a in found] == [
        ("p1", False, {"lead_source": "Google", "total_visits": 5}),
        (
            "p2",
            True,
            {"lead_source": "Olark Chat", "what_is_your_current_occupation": "Unemployed"},
        ),
        ("p3", False, {"what_is_your_current_occupation": "Student"}),
    ]


def test_without_empty_values_the_placeholder_is_a_value(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """Not configured, ``Select`` is text where text is wanted and a bad integer where a
    number is: the row is rejected naming the field, the others land."""
    path = write(tmp_path, "Leads.csv", EXPORT)
    report = import_file(engine, _settings(make_settings), "leads", path, clock=clock)
    assert [(p.line, p.message) for p in report.problems] == [
        (4, "TotalVisits (attributes.total_visits): expected a whole number, got 'SELECT'")
    ]
    assert rows(engine, "leads", "external_id") == [("p1",), ("p2",)]


def test_a_header_matching_nothing_is_still_refused(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """Written out, ``Shoe Size`` is ``shoe_size``, neither a field nor declared: refused as
    before, by its own name; two headers meaning one field are refused too."""
    path = write(tmp_path, "l.csv", "Prospect ID,Shoe Size\np1,44\n")
    with pytest.raises(UserInputError) as caught:
        import_file(engine, _settings(make_settings), "leads", path, clock=clock)
    assert str(caught.value) == (
        f"{path}:1: unknown column 'Shoe Size' (map it under import.mappings.leads.columns, "
        "declare it under attributes.leads, or map it to skip)"
    )
    twice = write(tmp_path, "twice.csv", "Prospect ID,Lead Source,LeadSource\np1,a,b\n")
    with pytest.raises(UserInputError) as caught:
        import_file(engine, _settings(make_settings), "leads", twice, clock=clock)
    assert str(caught.value) == (
        f"{twice}:1: columns 'Lead Source' and 'LeadSource' both set attributes.lead_source; "
        "map one of them to skip under import.mappings.leads.columns (a field takes one column)"
    )


def test_attributes_nested_in_a_jsonl_object_on_the_first_line_are_read(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """``{"attributes": {...}}`` on a file's first line was refused, later told how to
    flatten it; its keys are the ``attributes.NAME`` columns now (test_import_nested)."""
    settings = make_settings(attributes={"leads": {"region": "string"}})
    path = write(tmp_path, "l.jsonl", '{"external_id": "J1", "attributes": {"region": "EU"}}\n')
    report = import_file(engine, settings, "leads", path, clock=clock)
    assert (report.summary, report.problems) == (
        "inserted 1, updated 0, unchanged 0, rejected 0",
        [],
    )
    assert rows(engine, "leads", "external_id", "attributes") == [("J1", {"region": "EU"})]


def test_a_header_naming_its_target_needs_no_mapping(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """docs/import.md's field table: ``attributes.NAME`` of a declared attribute is that
    attribute without a mapping (it was refused, telling the user to declare what was declared);
    an undeclared one is refused saying the bare name to declare."""
    settings = make_settings(attributes__leads={"region": "string"})
    path = write(tmp_path, "l.csv", "external_id,attributes.region\np1,EMEA\n")
    report = import_file(engine, settings, "leads", path, clock=clock)
    assert (report.problems, report.counts.inserted) == ([], 1)
    found = rows(engine, "leads", "external_id", "attributes")
    assert [(e, a if isinstance(a, dict) else json.loads(a)) for e, a in found] == [
        ("p1", {"region": "EMEA"})
    ]
    undeclared = write(tmp_path, "u.csv", "external_id,attributes.size\np1,44\n")
    with pytest.raises(UserInputError) as caught:
        import_file(engine, settings, "leads", undeclared, clock=clock)
    assert str(caught.value) == (
        f"{undeclared}:1: unknown column 'attributes.size': size is not declared; add size with "
        "its type (string, integer, number, boolean, datetime, date) under attributes.leads, or "
        "map the column to skip under import.mappings.leads.columns"
    )
