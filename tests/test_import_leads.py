"""Importing leads: upsert by external id, change detection, rejected rows, strict mode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from import_support import all_columns, lead_entries, rows, write
from sqlalchemy import Engine, update

from leadflow.clock import SettableClock
from leadflow.errors import ImportRowError, ProblemsError
from leadflow.ingest import import_file
from leadflow.ingest.lead_rows import LeadWriter
from leadflow.ingest.mapping import compile_plan
from leadflow.ingest.readers import RowSource
from leadflow.ingest.references import RepDirectory
from leadflow.store.models import metadata

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEADS = """\
external_id,email,name,company,score,stage,unsubscribed
L1,ada@example.com,Ada Lovelace,Analytical,10,lead,No
L2,grace@example.com,Grace Hopper,Navy,,subscriber,Yes
L3,alan@example.com,Alan Turing,Bletchley,55,,
"""


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(
        attributes__leads={"industry": "string", "employees": "integer", "signed_up": "date"}
    )


class TestUpsert:
    """The same file twice changes nothing; a changed row is updated, only in its file's fields."""

    def test_first_import_inserts_every_row(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Each row lands with its typed values; missing stage and score get the defaults."""
        report = import_file(
            engine, settings, "leads", write(tmp_path, "leads.csv", LEADS), clock=clock
        )
        assert report.summary == "inserted 3, updated 0, unchanged 0, rejected 0"
        assert rows(
            engine,
            "leads",
            "external_id",
            "email",
            "score",
            "stage",
            "unsubscribed",
            "stage_entered_at",
            "created_at",
        ) == [
            ("L1", "ada@example.com", 10, "lead", False, T0, T0),
            ("L2", "grace@example.com", 0, "subscriber", True, T0, T0),
            ("L3", "alan@example.com", 55, "lead", False, T0, T0),
        ]

    def test_second_import_of_the_same_file_changes_nothing(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """All rows unchanged and every column of every row identical, updated_at included."""
        path = write(tmp_path, "leads.csv", LEADS)
        import_file(engine, settings, "leads", path, clock=clock)
        before = all_columns(engine, "leads")
        clock.advance(timedelta(hours=1))
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert report.summary == "inserted 0, updated 0, unchanged 3, rejected 0"
        assert all_columns(engine, "leads") == before

    def test_reimport_keeps_what_leadflow_changed(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """An unchanged row does not revert a stage or owner leadflow set since the last import."""
        path = write(tmp_path, "leads.csv", LEADS)
        import_file(engine, settings, "leads", path, clock=clock)
        leads = metadata.tables["leads"]
        with engine.begin() as connection:
            connection.execute(update(leads).where(leads.c.external_id == "L1").values(stage="mql"))
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert report.summary == "inserted 0, updated 0, unchanged 3, rejected 0"
        assert rows(engine, "leads", "external_id", "stage") == [
            ("L1", "mql"),
            ("L2", "subscriber"),
            ("L3", "lead"),
        ]

    def test_changed_row_is_updated_and_a_new_stage_restarts_its_clock(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Only the changed rows are rewritten; a changed stage sets stage_entered_at to now."""
        import_file(engine, settings, "leads", write(tmp_path, "leads.csv", LEADS), clock=clock)
        changed = LEADS.replace("Grace Hopper,Navy,,subscriber", "Grace Hopper,Navy,,lead").replace(
            "Bletchley,55", "Bletchley,60"
        )
        later = T0 + timedelta(days=1)
        clock.set(later)
        report = import_file(
            engine, settings, "leads", write(tmp_path, "leads.csv", changed), clock=clock
        )
        assert report.summary == "inserted 0, updated 2, unchanged 1, rejected 0"
        assert rows(
            engine, "leads", "external_id", "stage", "score", "stage_entered_at", "updated_at"
        ) == [
            ("L1", "lead", 10, T0, T0),
            ("L2", "lead", 0, later, later),
            ("L3", "lead", 60, T0, later),
        ]

    def test_same_id_twice_in_a_file_the_later_row_wins(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """The later row of an id wins and the earlier is not written: the earlier was written
        first and then updated, so every import of the file, even an identical one, said
        'updated' and wrote the id twice. It is counted as superseded, noted at the later line."""
        text = "external_id,name\nL1,First\nL2,Other\nL1,Second\nL3,x,extra\nL3,Third\n"
        path = write(tmp_path, "l.csv", text)
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert report.summary == "inserted 3, updated 0, unchanged 0, rejected 1, superseded 1"
        assert [str(n) for n in report.notes] == [
            f"{path}:4: external_id: 'L1' is also on line 2; the later row wins "
            "(line 2 is not imported)"
        ]
        expected = [("L1", "Second"), ("L2", "Other"), ("L3", "Third")]
        assert rows(engine, "leads", "external_id", "name") == expected
        # one first stage each: L1's earlier row is not recorded then overwritten
        assert sorted(lead_entries(engine)) == [
            ("L1", None, "lead"),
            ("L2", None, "lead"),
            ("L3", None, "lead"),
        ]
        again = import_file(engine, settings, "leads", path, clock=clock)
        assert again.summary == "inserted 0, updated 0, unchanged 3, rejected 1, superseded 1"
        assert rows(engine, "leads", "external_id", "name") == expected

    def test_a_rejected_later_row_leaves_the_earlier_row_of_its_id(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """The later row wins only if it imports: rejected, the earlier row lands."""
        text = "external_id,name,owner\nL1,First,\nL1,Second,R9\n"
        path = write(tmp_path, "l.csv", text)
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert report.summary == "inserted 1, updated 0, unchanged 0, rejected 1"
        assert [str(p) for p in report.problems] == [
            f"{path}:3: owner: no rep with external id 'R9'; import the reps first"
        ]
        assert report.notes == []
        assert rows(engine, "leads", "external_id", "name") == [("L1", "First")]


class TestSameValuesOtherColumns:
    """A row's hash says which columns its values came from: the same cells under other
    headers are a change, not "unchanged" (the company was never written)."""

    @pytest.mark.parametrize("bulk", [False, True], ids=["batches", "second process"])
    def test_the_same_value_under_another_column_is_written(
        self,
        engine: Engine,
        settings: Any,
        tmp_path: Path,
        clock: SettableClock,
        bulk: bool,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        if bulk:  # a large leads file is read and hashed by a process of its own
            monkeypatch.setattr("leadflow.ingest.runner.FED_MIN_ROWS", 0)
        first = write(tmp_path, "a.csv", "external_id,name\nL1,Acme\n")
        second = write(tmp_path, "b.csv", "external_id,company\nL1,Acme\n")
        third = write(tmp_path, "c.csv", "external_id,industry\nL1,\n")
        fourth = write(tmp_path, "d.csv", "external_id,employees\nL1,\n")
        summaries = [
            import_file(engine, settings, "leads", path, clock=clock).summary
            for path in (first, second, third, fourth, fourth)
        ]
        assert summaries == [
            "inserted 1, updated 0, unchanged 0, rejected 0",
            "inserted 0, updated 1, unchanged 0, rejected 0",
            "inserted 0, updated 1, unchanged 0, rejected 0",
            "inserted 0, updated 1, unchanged 0, rejected 0",
            "inserted 0, updated 0, unchanged 1, rejected 0",
        ]
        assert rows(engine, "leads", "external_id", "name", "company") == [("L1", "Acme", "Acme")]


class TestAttributes:
    """Columns named like declared attributes are typed; an undeclared attribute is refused."""

    def test_declared_attributes_are_converted(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Integer as int, date as ISO text; an empty cell leaves the attribute out."""
        text = "external_id,industry,employees,signed_up\nL1,software,250,2017-10-20\nL2,,,\n"
        import_file(engine, settings, "leads", write(tmp_path, "l.csv", text), clock=clock)
        assert rows(engine, "leads", "external_id", "attributes") == [
            ("L1", {"industry": "software", "employees": 250, "signed_up": "2017-10-20"}),
            ("L2", {}),
        ]

    def test_mapping_to_an_undeclared_attribute_is_a_file_error(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """The message names the setting and says how to declare the attribute."""
        settings = make_settings(
            import__mappings={"leads": {"columns": {"Size": "attributes.size"}}}
        )
        path = write(tmp_path, "l.csv", "external_id,Size\nL1,5\n")
        with pytest.raises(ProblemsError) as caught:
            import_file(engine, settings, "leads", path, clock=clock)
        assert str(caught.value) == (
            f"{path}:1: import.mappings.leads.columns.Size: attributes.size is not declared; "
            "add size with its type (string, integer, number, boolean, datetime, date) "
            "under attributes.leads"
        )
        assert rows(engine, "leads", "external_id") == []


class TestRejectedRows:
    """Bad rows are reported as FILE:LINE: field: reason; the good rows land; strict rolls back."""

    BAD = """\
external_id,email,score,stage,owner,employees
L1,ada@example.com,10,lead,,5
L2,grace@example.com,many,lead,,5
,nobody@example.com,1,lead,,5
L4,alan@example.com,1,pending,,5
L5,edsger@example.com,1,lead,R9,5
L6,barbara@example.com,1,lead,,"12,5"
L7,donald@example.com,1,lead,,7,extra
L8,ken@example.com,1,lead,,8
"""

    def expected(self, path: Path) -> list[str]:
        return [
            f"{path}:3: score: expected a whole number, got 'many'",
            f"{path}:4: external_id: missing; every row needs its CRM id",
            f"{path}:5: stage: unknown stage 'pending'; expected one of subscriber, lead, mql, "
            "sql, opportunity, customer, nurture, recycled, disqualified "
            "(or map it under import.mappings.leads.values.stage)",
            f"{path}:6: owner: no rep with external id 'R9'; import the reps first",
            f"{path}:7: attributes.employees: expected a whole number, got '12,5'",
            f"{path}:8: row has 7 fields, the header has 6",
        ]

    def test_good_rows_land_and_bad_rows_are_reported(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Every rejection with its physical line (header = 1); L1 and L8 are stored."""
        path = write(tmp_path, "leads.csv", self.BAD)
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == self.expected(path)
        assert report.summary == "inserted 2, updated 0, unchanged 0, rejected 6"
        assert rows(engine, "leads", "external_id") == [("L1",), ("L8",)]
        assert rows(engine, "import_runs", "kind", "status", "inserted", "rejected") == [
            ("leads", "rejected rows", 2, 6)
        ]

    def test_an_external_id_with_a_control_character_is_rejected(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A quoted cell may hold a line break; as an id it would split an export's row or a log
        line, so the row is rejected, as the HTTP API refuses it (one rule for both)."""
        path = write(
            tmp_path, "leads.csv", 'external_id,email\n"L\n1",a@example.com\nL2,b@example.com\n'
        )
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:2: external_id: may not contain a line break, tab or other control "
            "character (\\n, character 2); write the id on one line"
        ]
        assert rows(engine, "leads", "external_id") == [("L2",)]

    def test_an_id_with_an_invisible_format_character_is_rejected(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A right-to-left override (U+202E) in an id reverses the rest of every line that
        prints it (plan, status, audit); a zero-width space hides a second id that looks the
        same. Refused in an external id and in a reference, by line and field."""
        path = write(
            tmp_path,
            "leads.csv",
            "external_id,email,owner\n"
            "H10\u202e,a@example.com,\n"
            "L\u200b2,b@example.com,\n"
            "L3,c@example.com,R\u20661\n"
            "L4,d@example.com,\n"
            # The zero-width non-joiner and joiner are letters' business (Persian, Indic
            # scripts, emoji): an id holding one is taken.
            "L\u200c5,e@example.com,\n"
            "L6\u200d,f@example.com,\n",
        )
        report = import_file(engine, settings, "leads", path, clock=clock)
        why = (
            "may not contain an invisible formatting character (a right-to-left or other "
            "direction mark, or a zero-width character) ({0}); it reorders or hides the text "
            "wherever the id is shown: remove it"
        )
        assert [str(p) for p in report.problems] == [
            f"{path}:2: external_id: " + why.format("\\u202e, character 4"),
            f"{path}:3: external_id: " + why.format("\\u200b, character 2"),
            f"{path}:4: owner: " + why.format("\\u2066, character 2"),
        ]
        assert rows(engine, "leads", "external_id") == [("L4",), ("L6\u200d",), ("L\u200c5",)]

    SEVERAL = (
        "\ufeffexternal_id,score,employees,signed_up,last_activity_at,name\r\n"
        "L1,10,5,2017-10-20,2017-10-21T10:00:00Z,Ada\r\n"
        "L2,lots,many,2017-02-30,yesterday,Grace\r\n"
        "L3,3,,,,Alan\r\n"
    )

    def test_every_bad_field_a_write_checks_is_named(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """An unknown owner, an unknown stage and an overlong company are checked as the row
        is prepared, not read: only the first checked (owner) was named. Each is named now,
        in column order, and the row counts once as rejected."""
        text = f"external_id,stage,owner,company\nL1,lead,,Acme\nL2,hot,R9,{'x' * 301}\n"
        path = write(tmp_path, "l.csv", text)
        report = import_file(engine, settings, "leads", path, clock=clock)
        stages = (
            "subscriber, lead, mql, sql, opportunity, customer, nurture, recycled, disqualified"
        )
        assert [str(p) for p in report.problems] == [
            f"{path}:3: stage: unknown stage 'hot'; expected one of {stages} (or map it under "
            "import.mappings.leads.values.stage)",
            f"{path}:3: owner: no rep with external id 'R9'; import the reps first",
            f"{path}:3: company: longer than 300 characters (301); shorten it",
        ]
        assert report.summary == "inserted 1, updated 0, unchanged 0, rejected 1"
        assert rows(engine, "leads", "external_id") == [("L1",)]

    def test_beyond_the_kept_problems_a_rejected_row_is_counted(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """1,200 leads with an unknown stage and an unknown owner: the report keeps the first
        1,000 problems (two a row, the first 500 rows, in column order) and counts each row
        rejected once; nothing is written."""
        bad = "".join(f"L{n},hot,R9\n" for n in range(1, 1201))
        path = write(tmp_path, "l.csv", "external_id,stage,owner\n" + bad)
        report = import_file(engine, settings, "leads", path, clock=clock)
        stages = (
            "subscriber, lead, mql, sql, opportunity, customer, nurture, recycled, disqualified"
        )
        assert [str(p) for p in report.problems] == [
            message
            for line in range(2, 502)
            for message in (
                f"{path}:{line}: stage: unknown stage 'hot'; expected one of {stages} (or map "
                "it under import.mappings.leads.values.stage)",
                f"{path}:{line}: owner: no rep with external id 'R9'; import the reps first",
            )
        ]
        assert (report.rejected, report.unlisted) == (1200, 700)
        assert report.summary == "inserted 0, updated 0, unchanged 0, rejected 1200"
        assert rows(engine, "leads", "external_id") == []

    def test_a_writer_looks_for_every_bad_field_while_its_problems_last(
        self, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """An import names the first 1,000 problems only: a rejected row beyond them is named
        by its first problem, not checked again field by field for messages no one keeps (a
        200k-row file of bad owners took 3.7 s of reading, not 1.75 s)."""
        path = write(tmp_path, "l.csv", "external_id,stage,owner\nL1,hot,R9\n")
        with RowSource(path, "csv", "utf-8") as source:
            plan = compile_plan("leads", source.header, settings, str(path))
            record = plan.read(next(iter(source.rows()))[1])
        writer = LeadWriter(plan, settings, clock.now(), RepDirectory("external_id"))
        writer.problems_to_name = 3

        def named() -> list[str]:
            with pytest.raises(ImportRowError) as caught:
                writer.values(record)
            return [error.field for error in caught.value.each()]

        assert [named(), named(), named()] == [["stage", "owner"], ["stage", "owner"], ["owner"]]
        assert writer.problems_to_name == -1

    def test_every_bad_field_of_a_row_is_named(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A row with four bad cells named only the first (attributes.employees): fixing a file
        took a round per field. Each is named now, in column order, on the row's line; the
        row counts once as rejected."""
        path = write(tmp_path, "crlf_bom.csv", self.SEVERAL)
        report = import_file(engine, settings, "leads", path, clock=clock)
        iso = "ISO 8601 (2017-03-01, 2017-03-01T10:00:00+02:00)"
        assert [str(p) for p in report.problems] == [
            f"{path}:3: score: expected a whole number, got 'lots'",
            f"{path}:3: attributes.employees: expected a whole number, got 'many'",
            f"{path}:3: attributes.signed_up: expected a date as {iso}, got '2017-02-30'",
            f"{path}:3: last_activity_at: expected a date as {iso}, got 'yesterday'",
        ]
        assert report.summary == "inserted 2, updated 0, unchanged 0, rejected 1"
        assert rows(engine, "leads", "external_id") == [("L1",), ("L3",)]
        strict = import_file(engine, settings, "leads", path, strict=True, clock=clock)
        assert [str(p) for p in strict.problems] == [str(p) for p in report.problems]
        assert strict.rolled_back
        assert strict.summary == "inserted 0, updated 0, unchanged 0, rejected 1"

    def test_a_day_or_month_first_date_is_refused_naming_the_setting(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """01-02-2024 was read as 1 February by a default day-first format: a US export's
        January 2, silently wrong. Without date_formats it is refused by line and field, naming
        the setting; with the setting the file imports, read that way."""
        text = "external_id,last_activity_at\nL1,2024-01-02\nL2,01-02-2024\nL3,\n"
        path = write(tmp_path, "us.csv", text)
        report = import_file(engine, make_settings(), "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:3: last_activity_at: expected a date as ISO 8601 (2017-03-01, "
            "2017-03-01T10:00:00+02:00), got '01-02-2024'; day or month first? none is guessed: "
            "set import.mappings.leads.date_formats: ['%d-%m-%Y'] (day first) or ['%m-%d-%Y'] "
            "(month first)"
        ]
        assert rows(engine, "leads", "external_id") == [("L1",), ("L3",)]
        us = make_settings(import__mappings={"leads": {"date_formats": ["%m-%d-%Y"]}})
        assert import_file(engine, us, "leads", path, clock=clock).rejected == 0
        assert rows(engine, "leads", "external_id", "last_activity_at") == [
            ("L1", datetime(2024, 1, 2, tzinfo=UTC)),
            ("L2", datetime(2024, 1, 2, tzinfo=UTC)),
            ("L3", None),
        ]

    def test_strict_leaves_the_store_untouched(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """One bad row and nothing of the file is written; the run is recorded as rolled back."""
        import_file(engine, settings, "leads", write(tmp_path, "leads.csv", LEADS), clock=clock)
        before = all_columns(engine, "leads")
        text = LEADS.replace("L3,alan@example.com,Alan Turing,Bletchley,55", "L3,a,b,c,lots") + (
            "L4,new@example.com,New,New Co,1,lead,No\n"
        )
        path = write(tmp_path, "strict.csv", text.replace("Ada Lovelace", "Ada King"))
        report = import_file(engine, settings, "leads", path, strict=True, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:4: score: expected a whole number, got 'lots'"
        ]
        assert report.rolled_back
        assert report.summary == "inserted 0, updated 0, unchanged 0, rejected 1"
        assert all_columns(engine, "leads") == before
        assert rows(engine, "import_runs", "status", "inserted", "rejected") == [
            ("done", 3, 0),
            ("rolled back", 0, 1),
        ]


class TestNumberSpellings:
    """Text is read as a number only as a CRM or a spreadsheet writes one: digits 0-9, a sign,
    a decimal part, thousands separators. Python's own spellings (``1_000``, ``1e3``, an
    Arabic-Indic ``٣``) landed as 1000, 1000 and 3; each is now a rejected row naming line,
    field and value. A JSON number (``1000.0``) is a number already and lands."""

    CSV = (
        "external_id,score,employees\n"
        "C1,1_000,5\n"
        "C2,\u0663,5\n"
        "C3,1e3,5\n"
        "C4,5,2_5\n"
        'C5,"1,000",007\n'
        "C6,-7, +12 \n"
    )
    JSONL = (
        '{"external_id": "J1", "score": "1e3"}\n'
        '{"external_id": "J2", "score": 1000.0, "employees": "1000"}\n'
        '{"external_id": "J3", "score": "\u0663"}\n'
        '{"external_id": "J4", "score": "42", "employees": "1E3"}\n'
    )

    def test_csv_cells(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        path = write(tmp_path, "leads.csv", self.CSV)
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:2: score: expected a whole number, got '1_000' (a _ is no thousands "
            "separator: write 1000)",
            f"{path}:3: score: expected a whole number, got '\u0663' (only the digits 0-9 are "
            "read)",
            f"{path}:4: score: expected a whole number, got '1e3' (an exponent is not read: "
            "write the number out in digits)",
            f"{path}:5: attributes.employees: expected a whole number, got '2_5' (a _ is no "
            "thousands separator: write 25)",
        ]
        assert rows(engine, "leads", "external_id", "score", "attributes") == [
            ("C5", 1000, {"employees": 7}),
            ("C6", -7, {"employees": 12}),
        ]

    def test_jsonl_text_and_numbers(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        path = write(tmp_path, "leads.jsonl", self.JSONL)
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:1: score: expected a whole number, got '1e3' (an exponent is not read: "
            "write the number out in digits)",
            f"{path}:3: score: expected a whole number, got '\u0663' (only the digits 0-9 are "
            "read)",
            f"{path}:4: attributes.employees: expected a whole number, got '1E3' (an exponent "
            "is not read: write the number out in digits)",
        ]
        assert rows(engine, "leads", "external_id", "score", "attributes") == [
            ("J2", 1000, {"employees": 1000}),
        ]
