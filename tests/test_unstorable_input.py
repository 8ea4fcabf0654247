"""Values the store cannot hold are refused where they come in, on SQLite and PostgreSQL.

Pins:
- text with a lone UTF-16 surrogate (JSON's ``"\\ud800"``) or a NUL character, in any field,
  attribute key or value, object or list, or key of a JSONL line, is a 422 naming the field
  over HTTP and a rejected row ``FILE:LINE: field: reason`` in an import whose other rows land;
  a file name that is not UTF-8 is reported and recorded escaped;
- whole numbers beyond their column (score: 32 bits) or beyond what rules compare (integer
  attributes: 64 bits), numbers that are not finite, and times that are not in years 1 to 9999
  once in UTC, are refused the same way;
- one such value stored before these checks (or by hand) no longer stops a rule for the other
  leads on PostgreSQL, and an expression index can be built over it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine, select, text

from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.errors import ProblemsError
from leadflow.ingest import ImportReport, import_file
from leadflow.settings import ImportKind
from leadflow.store.database import ensure_attribute_indexes
from leadflow.store.tables import IMPORT_RUNS, LEADS
from tests.conftest import T0
from tests.http_support import AUTH, Api, build_app, http_settings, runtime_for

NUL = "text may not contain NUL characters (\\u0000)"
INT64 = "must be between -9223372036854775808 and 9223372036854775807"
INT32 = "must be between -2147483648 and 2147483647"
ATTRIBUTES = {"region": "string", "employees": "integer", "revenue": "number"}
YEAR_ONE = (
    "expected a time between 0001-01-01 and 9999-12-31 in UTC, got '0001-01-01T00:00:00+05:00'"
)


def surrogate(code: str) -> str:
    return (
        f"text may not contain a lone UTF-16 surrogate (\\u{code}); write the character "
        "itself, or a complete surrogate pair such as \\ud83d\\ude00"
    )


@pytest.fixture
def api(engine: Engine, make_settings: Any, clock: SettableClock) -> Api:
    settings = http_settings(make_settings, **{"attributes.leads": ATTRIBUTES})
    return Api(build_app(runtime_for(engine, settings, clock))[0])


def post_raw(api: Api, path: str, body: str) -> Any:
    """POST ``body`` exactly as written: JSON escapes such as \\ud800 reach the server as such."""
    headers = {**AUTH, "Content-Type": "application/json"}
    return api.request("POST", path, content=body.encode(), headers=headers)


def import_lines(
    engine: Engine, settings: Any, kind: ImportKind, folder: Path, lines: list[str]
) -> tuple[Path, ImportReport]:
    """Import ``lines`` as a JSONL file of ``kind``; the file (for the messages) and the report."""
    path = write(folder, f"{kind}.jsonl", "\n".join(lines) + "\n")
    return path, import_file(engine, settings, kind, path, clock=SettableClock(T0))


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    return rows(engine, "leads", "external_id", "name", "score", "attributes")


class TestTextTheStoreCannotHold:
    """A lone surrogate or NUL anywhere is one located rejection; the good rows still land."""

    def test_http_is_422_naming_each_field_and_writes_nothing(
        self, api: Api, engine: Engine
    ) -> None:
        response = post_raw(api, "/v1/leads", '{"external_id": "U2", "name": "\\ud800"}')
        assert (response.status_code, response.json()) == (
            422,
            {
                "detail": [
                    {"loc": ["body", "name"], "msg": surrogate("d800"), "type": "string_type"}
                ]
            },
        )
        body = (
            '[{"external_id": "U1", "region": "\\udfff"},'
            ' {"external_id": "U\\ud800"},'
            ' {"external_id": "U3", "re\\udc00gion": "East"},'
            ' {"external_id": "U4", "company": "a\\u0000b"}]'
        )
        response = post_raw(api, "/v1/leads", body)
        assert response.status_code == 422
        assert response.json()["detail"] == [
            {"loc": ["body", 0, "region"], "msg": surrogate("dfff"), "type": "string_type"},
            {"loc": ["body", 1, "external_id"], "msg": surrogate("d800"), "type": "string_type"},
            {"loc": ["body", 2, "re\\udc00gion"], "msg": surrogate("dc00"), "type": "string_type"},
            {"loc": ["body", 3, "company"], "msg": NUL, "type": "string_type"},
        ]
        assert stored(engine) == []

    def test_jsonl_import_rejects_the_lines_and_lands_the_rest(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """Values, external ids, attribute values and keys: each its own located rejection."""
        settings = make_settings(**{"attributes.leads": ATTRIBUTES})
        lines = [
            '{"external_id": "G1", "name": "Ann \\ud83d\\ude00"}',
            '{"external_id": "U2", "name": "\\ud800"}',
            '{"external_id": "U3", "name": "a\\u0000b"}',
            '{"external_id": "U\\udbff"}',
            '{"external_id": "U5", "region": "\\udfff"}',
            '{"external_id": "U6", "re\\ud800gion": "East"}',
            '{"external_id": "U7", "na\\u0000me": "Bo"}',
            '{"external_id": "G2", "region": "East"}',
        ]
        path, report = import_lines(engine, settings, "leads", tmp_path, lines)
        assert [str(p) for p in report.problems] == [
            f"{path}:2: name: {surrogate('d800')}",
            f"{path}:3: name: {NUL}",
            f"{path}:4: external_id: {surrogate('dbff')}",
            f"{path}:5: attributes.region: {surrogate('dfff')}",
            f"{path}:6: key 're\\ud800gion': {surrogate('d800')}",
            f"{path}:7: key 'na\\x00me': {NUL}",
        ]
        assert report.summary == "inserted 2, updated 0, unchanged 0, rejected 6"
        assert stored(engine) == [
            ("G1", "Ann \U0001f600", 0, {}),
            ("G2", None, 0, {"region": "East"}),
        ]

    def test_objects_and_lists_are_checked_inside(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """An activity's properties (keys and nested values) and a rep's pools."""
        settings = make_settings()
        reps = [
            '{"external_id": "R1", "name": "Rita", "email": "rita@example.com"}',
            '{"external_id": "R2", "name": "Max", "email": "max@example.com", "pools": ["a\\u0000"]}',
        ]
        path, report = import_lines(engine, settings, "reps", tmp_path, reps)
        assert [str(p) for p in report.problems] == [f"{path}:2: pools: item 0: {NUL}"]
        write(tmp_path, "leads.csv", "external_id\nL1\n")
        import_file(engine, settings, "leads", tmp_path / "leads.csv", clock=clock)
        activities = [
            '{"external_id": "A1", "type": "visit", "lead": "L1", "occurred_at": "2026-03-01",'
            ' "properties": {"page": "/pricing"}}',
            '{"external_id": "A2", "type": "visit", "lead": "L1", "occurred_at": "2026-03-01",'
            ' "properties": {"utm": {"source": "\\ud800"}}}',
            '{"external_id": "A3", "type": "visit", "lead": "L1", "occurred_at": "2026-03-01",'
            ' "properties": {"pa\\udfffge": "/"}}',
        ]
        path, report = import_lines(engine, settings, "activities", tmp_path, activities)
        assert [str(p) for p in report.problems] == [
            f"{path}:2: properties.utm.source: {surrogate('d800')}",
            f"{path}:3: properties.pa\\udfffge: {surrogate('dfff')}",
        ]
        assert rows(engine, "activities", "external_id", "properties") == [
            ("A1", {"page": "/pricing"})
        ]
        assert rows(engine, "reps", "external_id") == [("R1",)]

    def test_csv_header_and_cells_from_an_escaping_encoding(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """UTF-8 cannot carry either; an encoding that decodes escapes (unicode_escape) can."""
        settings = make_settings(**{"import.mappings.leads.encoding": "unicode_escape"})
        path = write(tmp_path, "leads.csv", "external_id,name\nL1,Ann\nL2,a\\x00b\nL3,\\udc80\n")
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:3: name: {NUL}",
            f"{path}:4: name: {surrogate('dc80')}",
        ]
        assert [row[:2] for row in stored(engine)] == [("L1", "Ann")]
        bad_header = write(tmp_path, "header.csv", "external_id,na\\ud800me\nL9,x\n")
        with pytest.raises(ProblemsError) as refused:
            import_file(engine, settings, "leads", bad_header, clock=clock)
        assert str(refused.value) == f"{bad_header}:1: column 2 'na\\ud800me': {surrogate('d800')}"

    def test_a_file_name_that_is_not_utf8_is_reported_and_recorded_escaped(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Such a name reaches Python with a lone surrogate; import_runs could not store it."""
        path = tmp_path / os.fsdecode(b"leads-\xff.csv")
        path.write_text("external_id,name\nL1,Ann\n", encoding="utf-8")
        report = import_file(engine, make_settings(), "leads", path, clock=clock)
        shown = f"{tmp_path}/leads-\\xff.csv"
        assert (report.file, report.summary) == (
            shown,
            "inserted 1, updated 0, unchanged 0, rejected 0",
        )
        with engine.connect() as connection:
            recorded = connection.execute(select(IMPORT_RUNS.c.file, IMPORT_RUNS.c.status)).one()
        assert tuple(recorded) == (shown, "done")

    def test_nul_in_a_looked_up_external_id_is_422(self, api: Api) -> None:
        """PostgreSQL refused the lookup itself: a 500 before."""
        response = api.get("/v1/leads/L%001")
        assert (response.status_code, response.json()) == (
            422,
            {"detail": [{"loc": ["path", "external_id"], "msg": NUL, "type": "string_type"}]},
        )


def nested(depth: int, inner: str = "1") -> str:
    return '{"a": ' * depth + inner + "}" * depth


def activity(number: int, properties: str) -> str:
    return (
        f'{{"external_id": "A{number}", "type": "visit", "lead": "L1",'
        f' "occurred_at": "2026-03-01", "properties": {properties}}}'
    )


class TestDeepNesting:
    """Objects nested beyond what checking, hashing and storing recurse through are refused."""

    def test_import_rejects_the_line_and_lands_the_rest(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A line nested beyond what Python's JSON reader takes ended the import in a traceback."""
        settings = make_settings()
        write(tmp_path, "leads.csv", "external_id\nL1\n")
        import_file(engine, settings, "leads", tmp_path / "leads.csv", clock=clock)
        lines = [
            activity(1, nested(32)),
            activity(2, nested(33)),
            activity(3, nested(500)),
            activity(4, nested(5000)),
        ]
        path, report = import_lines(engine, settings, "activities", tmp_path, lines)
        assert [str(p) for p in report.problems] == [
            f"{path}:2: properties{'.a' * 32}: nested deeper than 32 levels; flatten it",
            f"{path}:3: properties{'.a' * 32}: nested deeper than 32 levels; flatten it",
            f"{path}:4: invalid JSON: nested too deeply",
        ]
        ((key, properties),) = rows(engine, "activities", "external_id", "properties")
        assert (key, json.dumps(properties)) == ("A1", nested(32))

    def test_http_is_422_naming_the_place(self, api: Api, engine: Engine) -> None:
        response = post_raw(api, "/v1/leads", f'{{"external_id": "L1", "name": {nested(40)}}}')
        assert (response.status_code, response.json()) == (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", "name", *["a"] * 31],
                        "msg": "nested deeper than 32 levels; flatten it",
                        "type": "value_error",
                    }
                ]
            },
        )
        assert stored(engine) == []


class TestNumbersOutOfRange:
    """Whole numbers beyond their column or beyond 64 bits, and non-finite numbers, are refused."""

    def test_http_is_422_naming_the_field_and_the_range(self, api: Api, engine: Engine) -> None:
        body = [
            {"external_id": "N1", "employees": 10**20},
            {"external_id": "N2", "employees": 2**63},
            # Written out as text: an exponent in text is not read (test_import_values).
            {"external_id": "N3", "employees": "1" + "0" * 30},
            {"external_id": "N4", "employees": -(2**63) - 1},
            {"external_id": "N5", "revenue": 10**400},
            {"external_id": "N6", "last_activity_at": "0001-01-01T00:00:00+05:00"},
            {"external_id": "N7", "score": 2**63},
        ]
        response = api.post("/v1/leads", body)
        assert response.status_code == 422
        assert response.json()["detail"] == [
            *(
                {"loc": ["body", index, "employees"], "msg": INT64, "type": "value_error"}
                for index in range(4)
            ),
            {
                "loc": ["body", 4, "revenue"],
                "msg": "expected a finite number, got 1" + "0" * 56 + "...",
                "type": "value_error",
            },
            {"loc": ["body", 5, "last_activity_at"], "msg": YEAR_ONE, "type": "value_error"},
            {"loc": ["body", 6, "score"], "msg": INT64, "type": "value_error"},
        ]
        response = post_raw(api, "/v1/leads", '{"external_id": "N7", "revenue": 1e400}')
        assert response.json()["detail"] == [
            {
                "loc": ["body", "revenue"],
                "msg": "expected a finite number, got inf",
                "type": "value_error",
            }
        ]
        assert stored(engine) == []
        edges = [
            {"external_id": "E1", "employees": 2**63 - 1, "score": 2**63 - 1},
            {"external_id": "E2", "employees": -(2**63), "score": -(2**63)},
        ]
        assert api.post("/v1/leads", edges).status_code == 200
        assert stored(engine) == [
            ("E1", None, 2**63 - 1, {"employees": 2**63 - 1}),
            ("E2", None, -(2**63), {"employees": -(2**63)}),
        ]

    def test_import_rejects_the_rows_and_lands_the_rest(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A score beyond its column (32 bits then, 64 now) failed the whole import before."""
        settings = make_settings(**{"attributes.leads": ATTRIBUTES})
        lines = [
            json.dumps({"external_id": "G1", "employees": 2**63 - 1}),
            json.dumps({"external_id": "B2", "employees": 10**20}),
            json.dumps({"external_id": "B3", "employees": 1e30}),
            json.dumps({"external_id": "B4", "score": 2**63}),
            '{"external_id": "B5", "revenue": NaN}',
            '{"external_id": "B6", "revenue": 1e400}',
            '{"external_id": "B7", "score": ' + "9" * 5000 + "}",
            '{"external_id": "B8", "last_activity_at": "0001-01-01T00:00:00+05:00"}',
            json.dumps({"external_id": "G2", "score": -(2**63), "revenue": 1.5}),
        ]
        path, report = import_lines(engine, settings, "leads", tmp_path, lines)
        assert [str(p) for p in report.problems] == [
            f"{path}:2: attributes.employees: {INT64}",
            f"{path}:3: attributes.employees: {INT64}",
            f"{path}:4: score: {INT64}",
            f"{path}:5: invalid JSON: NaN is not JSON",
            f"{path}:6: attributes.revenue: expected a finite number, got inf",
            f"{path}:7: score: {INT64}",
            f"{path}:8: last_activity_at: {YEAR_ONE}",
        ]
        assert stored(engine) == [
            ("G1", None, 0, {"employees": 2**63 - 1}),
            ("G2", None, -(2**63), {"revenue": 1.5}),
        ]
        reps = write(
            tmp_path,
            "reps.csv",
            "external_id,name,email,capacity\n"
            "R1,Rita,rita@example.com,2147483648\nR2,Max,max@example.com,12\n",
        )
        report = import_file(engine, settings, "reps", reps, clock=clock)
        assert [str(p) for p in report.problems] == [f"{reps}:2: capacity: {INT32}"]
        assert rows(engine, "reps", "external_id", "capacity") == [("R2", 12)]


HAND_WRITTEN = {
    "B1": '{"employees": 100000000000000000000, "revenue": 1e400, "partner": "maybe"}',
    "B2": '{"employees": "many", "revenue": "lots", "partner": 1}',
    "B3": '{"employees": 150.5, "revenue": {"eur": 1}, "partner": null}',
}
BIG_COMPANIES = """\
rules:
  - id: big-companies
    every: 1s
    when:
      any:
        - {field: attributes.employees, at_least: 100}
        - {field: attributes.revenue, at_least: 1000000}
        - {field: attributes.partner, equals: true}
    actions:
      - set_stage: mql
"""


class TestStoredValuesOfTheWrongType:
    """A value written before ingest checked it, or by hand, is unknown to rules, not an error.

    PostgreSQL only: its casts raised for the whole query. SQLite's json_extract never raises;
    it compares such a value by SQLite's own type order.
    """

    @pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
    def test_the_rule_matches_the_other_leads_and_the_index_builds(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "big.yaml").write_text(BIG_COMPANIES, encoding="utf-8")
        settings = make_settings(
            **{
                "attributes.leads": {**ATTRIBUTES, "partner": "boolean"},
                "attributes.indexed": ["employees", "revenue", "partner"],
                "paths.rules": str(rules),
            }
        )
        leads = "external_id,stage,employees,revenue,partner\n"
        leads += "G1,lead,500,,\nG2,lead,,2000000,\nG3,lead,,,yes\nS1,lead,5,10,no\n"
        leads += "".join(f"{key},lead,,,\n" for key in HAND_WRITTEN)
        report = import_file(
            engine, settings, "leads", write(tmp_path, "l.csv", leads), clock=clock
        )
        assert report.rejected == 0
        with engine.begin() as connection:
            for key, doc in HAND_WRITTEN.items():
                connection.execute(
                    text(
                        "UPDATE leads SET attributes = CAST(:doc AS jsonb) WHERE external_id = :key"
                    ),
                    {"doc": doc, "key": key},
                )
        # Building the indexes evaluates the expression on every row: a cast failed on B1.
        created = ensure_attribute_indexes(
            engine, LEADS, settings.attributes.leads, settings.attributes.indexed
        )
        assert created == [
            "ix_leads_attr_employees",
            "ix_leads_attr_revenue",
            "ix_leads_attr_partner",
        ]
        runtime = Runtime.build(engine, settings, clock)
        (outcome,) = run_due_rules(runtime, runtime.load_rules(), T0)
        assert (outcome.rule_id, outcome.error, outcome.matched) == ("big-companies", None, 3)
        assert rows(engine, "leads", "external_id", "stage") == [
            ("B1", "lead"),
            ("B2", "lead"),
            ("B3", "lead"),
            ("G1", "mql"),
            ("G2", "mql"),
            ("G3", "mql"),
            ("S1", "lead"),
        ]


class TestNegativeCapacity:
    """A rep's ``capacity: -5`` was stored (200 from the API) and read as "takes no MQL", which
    0 says: refused at its field, by the API and by an import; 0 and empty (no limit) land."""

    MESSAGE = "must be 0 or more (the most open MQLs the rep may own; empty for no limit), got -5"

    def test_import(self, engine: Engine, make_settings: Any, tmp_path: Path) -> None:
        reps = write(
            tmp_path,
            "reps.csv",
            "external_id,name,email,capacity\n"
            "R1,Rita,rita@example.com,-5\nR2,Max,max@example.com,0\nR3,Ann,ann@example.com,\n",
        )
        report = import_file(engine, make_settings(), "reps", reps, clock=SettableClock(T0))
        assert [str(p) for p in report.problems] == [f"{reps}:2: capacity: {self.MESSAGE}"]
        assert rows(engine, "reps", "external_id", "capacity") == [("R2", 0), ("R3", None)]

    def test_http(self, api: Api, engine: Engine) -> None:
        body = (
            '[{"external_id": "R1", "name": "Rita", "email": "rita@example.com", "capacity": 3},'
            ' {"external_id": "R2", "name": "Max", "email": "max@example.com", "capacity": -5}]'
        )
        response = post_raw(api, "/v1/reps", body)
        assert (response.status_code, response.json()["detail"]) == (
            422,
            [{"loc": ["body", 1, "capacity"], "msg": self.MESSAGE, "type": "value_error"}],
        )
        assert rows(engine, "reps", "external_id") == []
