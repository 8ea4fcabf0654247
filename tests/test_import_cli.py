"""``leadflow import`` and ``leadflow status`` from the command line: output and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from import_support import write

from leadflow.cli import main


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Path:
    return write(tmp_path, "config.yaml", f"database:\n  url: {store_url}\n")


class TestImportCommand:
    """Exit 0 when all rows land, 1 with rejected rows or an unreadable file, 2 for bad usage."""

    def test_clean_file_exits_0_with_the_summary(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, "leads.csv", "external_id,name\nL1,Ada\nL2,Grace\n")
        assert main(["-c", str(config), "import", "leads", str(path)]) == 0
        out, err = capsys.readouterr()
        assert out == f"leads {path}: inserted 2, updated 0, unchanged 0, rejected 0\n"
        assert err == ""

    @pytest.mark.parametrize("command", [["check"], ["config"], ["import", "leads"]])
    def test_a_bad_date_format_refuses_the_config_before_anything_runs(
        self, tmp_path: Path, store_url: str, command: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A `%Q` was found out only as every date cell rejected; now no command starts."""
        config = write(
            tmp_path,
            "config.yaml",
            f"database:\n  url: {store_url}\nimport:\n  mappings:\n    leads:\n"
            "      date_formats: ['%Q']\n",
        )
        path = write(tmp_path, "leads.csv", "external_id,last_activity_at\nL1,01-02-2017\n")
        args = [*command, str(path)] if command[0] == "import" else command
        assert main(["-c", str(config), *args]) == 1
        out, err = capsys.readouterr()
        assert (out, err) == (
            "",
            f"error: {config}:6:22: import.mappings.leads.date_formats.0: '%Q': %Q is not a "
            "strftime directive; use e.g. %d (day), %m (month), %Y (year), %H:%M:%S (time), see "
            "https://docs.python.org/3/library/datetime.html#format-codes\n",
        )

    def test_rejected_rows_exit_1_and_are_listed_on_stderr(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, "leads.csv", "external_id,score\nL1,1\nL2,lots\n")
        assert main(["-c", str(config), "import", "leads", str(path)]) == 1
        out, err = capsys.readouterr()
        assert out == f"leads {path}: inserted 1, updated 0, unchanged 0, rejected 1\n"
        assert err == f"{path}:3: score: expected a whole number, got 'lots'\n"

    def test_a_deals_file_with_the_testers_findings(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A won deal without a close date, a row with two bad cells, a day-or-month-first
        date, an id on two rows: each on stderr in file order, the good rows land; run again,
        the repeated id is unchanged, not updated."""
        reps = write(tmp_path, "reps.csv", "external_id,name,email\nR1,Ada,ada@example.com\n")
        assert main(["-c", str(config), "import", "reps", str(reps)]) == 0
        path = write(
            tmp_path,
            "deals.csv",
            "external_id,owner,stage,closed_at,engaged_at,amount\n"
            "D1,R1,Won,2024-02-01,2024-01-01,5\n"
            "D7,R1,Won,,2024-01-01,\n"
            "D8,R1,Engaging,,01-02-2024,lots\n"
            "D1,R1,Won,2024-02-02,2024-01-01,6\n",
        )
        capsys.readouterr()
        assert main(["-c", str(config), "import", "deals", str(path)]) == 1
        out, err = capsys.readouterr()
        assert out == (
            f"deals {path}: inserted 1, updated 0, unchanged 0, rejected 2, superseded 1\n"
        )
        iso = "expected a date as ISO 8601 (2017-03-01, 2017-03-01T10:00:00+02:00)"
        assert err.splitlines() == [
            f"{path}:3: closed_at: a won deal needs its close date; give the date it was won",
            f"{path}:4: engaged_at: {iso}, got '01-02-2024'; day or month first? none is "
            "guessed: set import.mappings.deals.date_formats: ['%d-%m-%Y'] (day first) or "
            "['%m-%d-%Y'] (month first)",
            f"{path}:4: amount: expected a number, got 'lots'",
            f"{path}:5: external_id: 'D1' is also on line 2; the later row wins "
            "(line 2 is not imported)",
        ]
        assert main(["-c", str(config), "import", "deals", str(path)]) == 1
        out, _err = capsys.readouterr()
        assert out == (
            f"deals {path}: inserted 0, updated 0, unchanged 1, rejected 2, superseded 1\n"
        )

    def test_strict_says_nothing_was_imported(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, "leads.csv", "external_id,score\nL1,1\nL2,lots\n")
        assert main(["-c", str(config), "import", "leads", str(path), "--strict"]) == 1
        out, err = capsys.readouterr()
        assert out == f"leads {path}: inserted 0, updated 0, unchanged 0, rejected 1\n"
        assert err.splitlines() == [
            f"{path}:3: score: expected a whole number, got 'lots'",
            f"{path}: --strict: nothing was imported because rows were rejected",
        ]

    def test_unreadable_file_is_one_line_and_exit_1(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, "leads.csv", "external_id,name\nL1,Zoë\n", "latin-1")
        assert main(["-c", str(config), "import", "leads", str(path)]) == 1
        assert capsys.readouterr().err == (
            f"error: {path}:2: not valid utf-8 (byte 0xeb); save the file as UTF-8, or set "
            "import.mappings.leads.encoding (e.g. latin-1 or cp1252)\n"
        )

    def test_jsonl_by_format_option(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, "leads.txt", '{"external_id": "L1"}\n')
        assert main(["-c", str(config), "import", "leads", str(path), "--format", "jsonl"]) == 0
        assert capsys.readouterr().out.endswith("inserted 1, updated 0, unchanged 0, rejected 0\n")

    def test_unknown_kind_is_a_usage_error(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, "x.csv", "external_id\n")
        assert main(["-c", str(config), "import", "accounts", str(path)]) == 2
        assert capsys.readouterr().err == (
            "error: kind: 'accounts' is not one of reps, leads, deals, activities, sample\n"
        )

    def test_a_kind_a_typo_away_is_one_line_with_its_suggestion(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """It was the usage lines and `Invalid value for 'kind': Value error, 'deal' is not
        one of 'reps', ...`: a library's prefix and no hint at 'deals'."""
        path = write(tmp_path, "x.csv", "external_id\n")
        assert main(["-c", str(config), "import", "deal", str(path)]) == 2
        assert capsys.readouterr().err == (
            "error: kind: 'deal' is not one of reps, leads, deals, activities, sample;"
            " did you mean 'deals'?\n"
        )

    def test_an_option_outside_its_choices_is_one_line(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, "x.csv", "external_id\n")
        assert main(["-c", str(config), "import", "leads", str(path), "--format", "JSONL"]) == 2
        assert capsys.readouterr().err == (
            "error: --format: 'JSONL' is not one of csv, jsonl; did you mean 'jsonl'?\n"
        )


class TestSampleAndStatus:
    """The bundled sample imports cleanly, twice, and status shows it."""

    def test_sample_then_status(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["-c", str(config), "import", "sample"]) == 0
        first = capsys.readouterr().out.splitlines()
        assert [line.split(": ", 1)[1] for line in first] == [
            "inserted 12, updated 0, unchanged 0, rejected 0",
            "inserted 200, updated 0, unchanged 0, rejected 0",
            "inserted 45, updated 0, unchanged 0, rejected 0",
            "inserted 444, updated 0, already present 0, rejected 0",
        ]
        assert main(["-c", str(config), "import", "sample"]) == 0
        second = capsys.readouterr().out.splitlines()
        assert [line.split(": ", 1)[1] for line in second] == [
            "inserted 0, updated 0, unchanged 12, rejected 0",
            "inserted 0, updated 0, unchanged 200, rejected 0",
            "inserted 0, updated 0, unchanged 45, rejected 0",
            "inserted 0, updated 0, already present 444, rejected 0",
        ]
        assert main(["-c", str(config), "status"]) == 0
        out = capsys.readouterr().out
        assert "leads: 200" in out
        assert "deals: open 29; closed: lost 5, won 11" in out
        assert "reps: active 11, inactive 1" in out


class TestTrailingComma:
    """A spreadsheet export ending every line with a comma imports; the empty column is named."""

    def test_unnamed_last_column_is_ignored_and_said(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Rows with and without the trailing comma land; a value under it rejects its row."""
        path = write(tmp_path, "leads.csv", "external_id,name,\nL1,Ada,\nL2,Grace,oops\nL3,Lin\n")
        assert main(["-c", str(config), "import", "leads", str(path)]) == 1
        out, err = capsys.readouterr()
        assert out == f"leads {path}: inserted 2, updated 0, unchanged 0, rejected 1\n"
        assert err.splitlines() == [
            f"{path}:1: column 3 has no name (a trailing comma); ignored",
            f"{path}:3: column 3 has no name but holds 'oops'; name the column in the header "
            "or empty it",
        ]
        assert main(["-c", str(config), "status"]) == 0
        assert "leads: 2" in capsys.readouterr().out

    def test_clean_trailing_comma_file_exits_0(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = write(tmp_path, "leads.csv", "external_id,name,,\nL1,Ada,,\n")
        assert main(["-c", str(config), "import", "leads", str(path)]) == 0
        out, err = capsys.readouterr()
        assert out == f"leads {path}: inserted 1, updated 0, unchanged 0, rejected 0\n"
        assert err == f"{path}:1: columns 3-4 have no name (a trailing comma); ignored\n"

    def test_a_semicolon_files_trailing_separator_is_named_a_semicolon(
        self, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A European Excel export's trailing ";;" was called "a trailing comma"."""
        config = write(
            tmp_path,
            "config.yaml",
            f"database:\n  url: {store_url}\n"
            "import:\n  mappings:\n    leads:\n      delimiter: ';'\n",
        )
        path = write(tmp_path, "leads.csv", "external_id;name;;\nL1;Ada;;\n")
        assert main(["-c", str(config), "import", "leads", str(path)]) == 0
        out, err = capsys.readouterr()
        assert out == f"leads {path}: inserted 1, updated 0, unchanged 0, rejected 0\n"
        assert err == f"{path}:1: columns 3-4 have no name (a trailing semicolon); ignored\n"


def test_a_mapped_attributes_and_ids_problems_name_the_files_columns(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A HubSpot export's 'Number of Employees' mapped to attributes.employees was named
    'attributes.employees' in its rejection, and the repeated 'Record ID' 'external_id': a
    user with sixty columns had to work out which one (plain fields were named by column)."""
    config = write(
        tmp_path,
        "config.yaml",
        f"database:\n  url: {store_url}\n"
        "attributes:\n  leads:\n    employees: integer\n"
        "import:\n  mappings:\n    leads:\n      columns:\n"
        "        Record ID: external_id\n        Number of Employees: attributes.employees\n",
    )
    path = write(
        tmp_path,
        "hubspot.csv",
        "Record ID,Number of Employees\n101,50\n102,lots\n101,60\n",
    )
    assert main(["-c", str(config), "import", "leads", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == (f"leads {path}: inserted 1, updated 0, unchanged 0, rejected 1, superseded 1\n")
    assert err.splitlines() == [
        f"{path}:3: Number of Employees (attributes.employees): expected a whole number, "
        "got 'lots'",
        f"{path}:4: Record ID (external_id): '101' is also on line 2; the later row wins "
        "(line 2 is not imported)",
    ]
