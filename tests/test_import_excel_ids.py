"""Ids a spreadsheet saved in scientific notation are refused, row by row.

A CRM export opened and saved in Excel shows a long numeric id as ``1.01235E+11``: two ids
become the same text, and the later row overwrote the earlier lead (or its activities joined the
wrong lead) without a word. Such a value in an id column (``external_id``, or a reference such as
a deal's or an activity's ``lead``, mapped from another name or not) rejects its row, naming the
line and the field; the other rows land. An id that merely holds an E (``E123``,
``LEAD-1E5X``) is an id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.ingest import import_file
from leadflow.ingest.mapping import compile_plan
from leadflow.ingest.values import excel_number_problem, excel_numbers_in
from leadflow.settings import Settings
from tests.http_support import Api, build_app, http_settings, runtime_for


def excel(value: str) -> str:
    return (
        f"{value!r} looks like Excel's scientific notation (a long number Excel shortened, "
        "so other ids may read the same); export the column as text and import again"
    )


def settings_of(tmp_path: Path, store_url: str, config: str = "") -> Settings:
    path = write(tmp_path, "config.yaml", config)
    return load_settings(path, env={}, overrides={"database.url": store_url}).settings


class TestTheShape:
    """Only a number in exponent notation as a spreadsheet writes it: digits, a decimal part
    (point or comma), E, a sign, the exponent."""

    @pytest.mark.parametrize(
        "text", ["1.01235E+11", "1.2E+5", "1,2E+05", "3E+12", "9.9e-3", "-1.5E+10"]
    )
    def test_refused(self, text: str) -> None:
        assert excel_number_problem(text) == excel(text)
        assert excel_numbers_in(["L1", text, "L3"]) is True

    @pytest.mark.parametrize(
        "text", ["E123", "LEAD-1E5X", "1E5", "12e45", "101234567890", "1.2E+5x", "E+5", "1.E+5"]
    )
    def test_taken(self, text: str) -> None:
        assert excel_number_problem(text) is None
        assert excel_numbers_in(["L1", text, "L3"]) is False

    def test_a_part_read_column_by_column_leaves_such_a_row_to_be_read_alone(
        self, tmp_path: Path
    ) -> None:
        """A large CSV file's parts are read a column at a time (``read_columns``), a text
        column without a parser call per cell: an id column is searched once, and a part
        holding such an id is read row by row, which names the row."""
        settings = load_settings(write(tmp_path, "config.yaml", ""), env={}).settings
        plan = compile_plan("deals", ("external_id", "lead", "stage"), settings, "deals.csv")
        good = [["D1", "E123", "Won"], ["D2", "101234567890", "Lost"]]
        columns = plan.read_columns(good)
        assert columns is not None
        assert (columns["external_id"], columns["lead"]) == (
            ["D1", "D2"],
            ["E123", "101234567890"],
        )
        assert plan.read_columns([*good, ["D3", "1.01235E+11", "Won"]]) is None
        assert plan.read_columns([*good, ["1.01235E+11", "L1", "Won"]]) is None


class TestImport:
    def test_leads_in_scientific_notation_are_rejected_the_others_land(
        self, engine: Engine, store_url: str, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Two leads both saved as ``1.01235E+11`` were one lead, the second overwriting the
        first; now each is a rejected row. Enough rows that the ids are read column by column
        (the CSV hot path) before the rows holding them are read one by one."""
        good = [f"{101234567000 + n},lead{n}@x.test" for n in range(3000)]
        text = "external_id,email\n" + "\n".join(
            [
                *good[:1000],
                "1.01235E+11,bob@x.test",
                "E123,dee@x.test",
                *good[1000:2000],
                "1.01235E+11,cid@x.test",
                "LEAD-1E5X,eve@x.test",
                " 1.2E+5 ,fay@x.test",
                *good[2000:],
            ]
        )
        path = write(tmp_path, "leads.csv", text + "\n")
        settings = settings_of(tmp_path, store_url)
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:1002: external_id: {excel('1.01235E+11')}",
            f"{path}:2004: external_id: {excel('1.01235E+11')}",
            f"{path}:2006: external_id: {excel('1.2E+5')}",
        ]
        assert report.summary == "inserted 3002, updated 0, unchanged 0, rejected 3"
        landed = [external_id for (external_id,) in rows(engine, "leads", "external_id")]
        assert landed == sorted(
            [f"{101234567000 + n}" for n in range(3000)] + ["E123", "LEAD-1E5X"]
        )

    def test_a_mapped_lead_id_of_activities_and_deals(
        self, engine: Engine, store_url: str, tmp_path: Path, clock: SettableClock
    ) -> None:
        """``lead_id`` mapped to ``lead``: a reference in scientific notation would name the
        wrong lead, or none; its row is rejected at the file's column."""
        settings = settings_of(
            tmp_path,
            store_url,
            "import:\n  mappings:\n"
            "    activities:\n      columns: {lead_id: lead}\n"
            "    deals:\n      columns: {lead_id: lead}\n",
        )
        leads = write(tmp_path, "leads.csv", "external_id\n101234567890\nE123\n")
        assert import_file(engine, settings, "leads", leads, clock=clock).problems == []
        activities = write(
            tmp_path,
            "activities.csv",
            "external_id,lead_id,type,occurred_at\n"
            "A1,101234567890,call,2026-03-01T10:00:00Z\n"
            "A2,1.01235E+11,call,2026-03-01T10:00:00Z\n"
            "A3,E123,call,2026-03-01T10:00:00Z\n",
        )
        report = import_file(engine, settings, "activities", activities, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{activities}:3: lead_id (lead): {excel('1.01235E+11')}"
        ]
        assert rows(engine, "activities", "external_id") == [("A1",), ("A3",)]
        # Each joined to its own lead: 101234567890 imported first (id 1), E123 second.
        assert rows(engine, "activities", "external_id", "lead_id") == [("A1", 1), ("A3", 2)]
        deals = write(
            tmp_path,
            "deals.csv",
            "external_id,lead_id,stage\nD1,1.01235E+11,Engaging\nD2,E123,Engaging\n",
        )
        report = import_file(engine, settings, "deals", deals, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{deals}:2: lead_id (lead): {excel('1.01235E+11')}"
        ]
        assert rows(engine, "deals", "external_id") == [("D2",)]
        assert rows(engine, "deals", "external_id", "lead_id") == [("D2", 2)]


def test_the_http_api_refuses_it_at_the_field(
    engine: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """The API reads records as an import does: a 422 at the record and field."""
    app, _holder = build_app(runtime_for(engine, http_settings(make_settings), clock))
    response = Api(app).post(
        "/v1/leads", [{"external_id": "L1"}, {"external_id": "1.2E+5", "owner": "3E+12"}]
    )
    assert (response.status_code, response.json()["detail"]) == (
        422,
        [
            {"loc": ["body", 1, "external_id"], "msg": excel("1.2E+5"), "type": "value_error"},
            {"loc": ["body", 1, "owner"], "msg": excel("3E+12"), "type": "value_error"},
        ],
    )
    assert rows(engine, "leads", "external_id") == []
