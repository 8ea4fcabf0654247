"""An import changes only the attributes it has columns for; the others are kept.

A file of ``external_id,converted`` (an outcome column for fit scoring, docs/scoring-fit.md)
replaced a lead's whole attributes: its ``region`` and ``industry`` were gone, and with them
its routing and fit. Now the file's attributes are merged into the stored ones in the database,
by every writer (SQLite's UPDATE; PostgreSQL's staging merge; a file read in a process of its
own; a bulk import), for leads and deals, and by ``POST /v1/leads``. An empty cell in an
attribute column clears that attribute, as an empty cell clears a plain field. On real SQLite
and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine, update

from leadflow.clock import SettableClock
from leadflow.ingest import import_file, runner
from leadflow.store.tables import LEADS
from tests.http_support import Api, build_app, http_settings, runtime_for

FIRST = """\
external_id,stage,source,region,industry,converted
T00005,lead,ads,East,retail,no
T00006,lead,,West,banking,no
T00007,lead,seo,North,,no
"""
OUTCOMES = """\
external_id,converted
T00005,yes
T00006,yes
T00007,no
"""
STORED = {
    "T00005": {"source": "ads", "region": "East", "industry": "retail", "converted": "no"},
    "T00006": {"region": "West", "industry": "banking", "converted": "no"},
    "T00007": {"source": "seo", "region": "North", "converted": "no"},
}


@pytest.fixture
def settings(make_settings: Any) -> Any:
    declared = {"source": "string", "region": "string", "industry": "string"}
    return make_settings(
        **{
            "attributes.leads": {**declared, "converted": "string"},
            "attributes.deals": {"channel": "string", "discount": "integer"},
            "import.mappings.leads.empty_values": ["Select"],
        }
    )


def _attributes(engine: Engine, table: str = "leads") -> dict[str, dict[str, Any]]:
    return dict(rows(engine, table, "external_id", "attributes"))  # type: ignore[arg-type]


def _import(engine: Engine, settings: Any, folder: Path, clock: SettableClock, text: str) -> str:
    clock.advance(timedelta(hours=1))
    path = write(folder, f"leads-{clock.now().timestamp():.0f}.csv", text)
    return import_file(engine, settings, "leads", path, clock=clock).summary


@pytest.fixture(params=["batches", "read apart", "bulk"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How the second file is written: batch by batch, its rows read in a process of their
    own (COPY into the staging table on PostgreSQL, the rows in the driver's form), or as a
    bulk import (one transaction, the indexes built after the rows)."""
    if request.param == "read apart":
        monkeypatch.setattr(runner, "FED_MIN_ROWS", 0)
    if request.param == "bulk":
        # However few rows the file has against the table's.
        monkeypatch.setattr(runner, "bulk_tables", lambda _engine, tables, _rows: list(tables))
    return str(request.param)


class TestLeads:
    def test_a_file_with_one_attribute_keeps_the_others(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock, way: str
    ) -> None:
        """The tester's case: ``converted`` changes, region, industry and source stay."""
        assert _import(engine, settings, tmp_path, clock, FIRST).startswith("inserted 3,")
        assert _attributes(engine) == STORED
        summary = _import(engine, settings, tmp_path, clock, OUTCOMES)
        assert summary == "inserted 0, updated 3, unchanged 0, rejected 0"
        assert _attributes(engine) == {
            "T00005": {"source": "ads", "region": "East", "industry": "retail", "converted": "yes"},
            "T00006": {"region": "West", "industry": "banking", "converted": "yes"},
            "T00007": {"source": "seo", "region": "North", "converted": "no"},
        }
        # The same file again: every row unchanged, nothing written.
        summary = _import(engine, settings, tmp_path, clock, OUTCOMES)
        assert summary == "inserted 0, updated 0, unchanged 3, rejected 0"

    def test_new_rows_get_the_file_attributes_only(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock, way: str
    ) -> None:
        _import(engine, settings, tmp_path, clock, FIRST)
        _import(engine, settings, tmp_path, clock, "external_id,converted\nT00005,yes\nT00008,no\n")
        assert _attributes(engine)["T00008"] == {"converted": "no"}
        assert _attributes(engine)["T00005"]["region"] == "East"

    def test_an_empty_cell_clears_its_attribute_only(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """An empty cell (or an ``empty_values`` placeholder) in an attribute column clears that
        attribute, as an empty cell clears a plain field; the columns not in the file stay."""
        _import(engine, settings, tmp_path, clock, FIRST)
        text = "external_id,industry,converted\nT00005,,yes\nT00006, select ,\nT00007,,\n"
        summary = _import(engine, settings, tmp_path, clock, text)
        assert summary == "inserted 0, updated 3, unchanged 0, rejected 0"
        assert _attributes(engine) == {
            "T00005": {"source": "ads", "region": "East", "converted": "yes"},
            "T00006": {"region": "West"},
            "T00007": {"source": "seo", "region": "North"},
        }

    def test_first_source_is_kept_and_given_once(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A source column alone changes the current source, never the first one, except for
        a lead created without one (T00006); the other attributes stay."""
        _import(engine, settings, tmp_path, clock, FIRST)
        _import(engine, settings, tmp_path, clock, OUTCOMES)
        _import(
            engine, settings, tmp_path, clock, "external_id,source\nT00005,webinar\nT00006,seo\n"
        )
        assert rows(engine, "leads", "external_id", "first_source", "attributes") == [
            (
                "T00005",
                "ads",
                {"source": "webinar", "region": "East", "industry": "retail", "converted": "yes"},
            ),
            (
                "T00006",
                "seo",
                {"source": "seo", "region": "West", "industry": "banking", "converted": "yes"},
            ),
            ("T00007", "seo", {"source": "seo", "region": "North", "converted": "no"}),
        ]

    def test_attributes_stored_as_json_null_are_none(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A JSON null written by hand (PostgreSQL's jsonb minus raises for one) is taken as
        no attributes: the file's land, the batch does not fail."""
        _import(engine, settings, tmp_path, clock, FIRST)
        with engine.begin() as connection:
            connection.execute(update(LEADS).values(attributes=None))
        assert _attributes(engine)["T00005"] is None
        summary = _import(engine, settings, tmp_path, clock, OUTCOMES)
        assert summary == "inserted 0, updated 3, unchanged 0, rejected 0"
        assert _attributes(engine) == {
            "T00005": {"converted": "yes"},
            "T00006": {"converted": "yes"},
            "T00007": {"converted": "no"},
        }


class TestDeals:
    def test_a_deal_file_with_one_attribute_keeps_the_others(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        _import(engine, settings, tmp_path, clock, FIRST)
        first = "external_id,lead,stage,channel,discount\nD1,T00005,Negotiation,partner,10\n"
        second = "external_id,stage,discount\nD1,Negotiation,15\n"
        summaries = []
        for text in (first, second):
            path = write(tmp_path, "deals.csv", text)
            report = import_file(engine, settings, "deals", path, clock=clock)
            summaries.append(report.summary)
        assert summaries == [
            "inserted 1, updated 0, unchanged 0, rejected 0",
            "inserted 0, updated 1, unchanged 0, rejected 0",
        ]
        assert _attributes(engine, "deals") == {"D1": {"channel": "partner", "discount": 15}}


def test_a_posted_lead_keeps_the_attributes_it_does_not_name(
    engine: Engine, make_settings: Any, clock: SettableClock
) -> None:
    runtime = runtime_for(engine, http_settings(make_settings), clock)
    app, _holder = build_app(runtime)
    api = Api(app)
    first = {"external_id": "L1", "region": "East", "employees": 40}
    assert api.post("/v1/leads", first).json()["inserted"] == 1
    assert api.post("/v1/leads", {"external_id": "L1", "employees": 50}).json()["updated"] == 1
    assert _attributes(engine) == {"L1": {"region": "East", "employees": 50}}
