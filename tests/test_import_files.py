"""Files that cannot be read as a whole: one clear error naming the file, and an untouched store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine

from leadflow.clock import SettableClock
from leadflow.errors import ImportFileError, UserInputError
from leadflow.ingest import import_file
from tests.conftest import T0


def refused(engine: Engine, settings: Any, path: Path, kind: str = "leads") -> str:
    """The error's text; also checks that no lead was written and the run was recorded as
    refused (docs/import.md: every run is recorded)."""
    with pytest.raises(UserInputError) as caught:
        import_file(engine, settings, kind, path, clock=SettableClock(T0))  # type: ignore[arg-type]
    assert rows(engine, "leads", "external_id") == []
    assert rows(engine, "import_runs", "kind", "status", "inserted", "rejected") == [
        (kind, "refused", 0, 0)
    ]
    return str(caught.value)


class TestEncodings:
    """A UTF-8 BOM is not part of the first column; bytes that are not UTF-8 are located."""

    def test_bom_is_ignored(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Excel's byte-order mark before 'external_id' does not make an unknown column."""
        path = write(tmp_path, "bom.csv", "\ufeffexternal_id,name\nL1,Zoë\n")
        report = import_file(engine, make_settings(), "leads", path, clock=clock)
        assert report.summary == "inserted 1, updated 0, unchanged 0, rejected 0"
        assert rows(engine, "leads", "external_id", "name") == [("L1", "Zoë")]

    def test_a_bom_written_twice_or_more_is_ignored(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A tool that adds its own mark to a file that had one: the header began with an
        invisible U+FEFF, refused as `unknown column '\\ufeffexternal_id'`. JSONL too."""
        csv_path = write(tmp_path, "twice.csv", "\ufeff\ufeffexternal_id,name\nL1,Zoë\n")
        report = import_file(engine, make_settings(), "leads", csv_path, clock=clock)
        assert (report.summary, report.problems) == (
            "inserted 1, updated 0, unchanged 0, rejected 0",
            [],
        )
        jsonl = '\ufeff\ufeff\ufeff{"external_id": "J1", "name": "Ann"}\n{"external_id": "J2"}\n'
        jsonl_path = write(tmp_path, "thrice.jsonl", jsonl)
        report = import_file(engine, make_settings(), "leads", jsonl_path, clock=clock)
        assert (report.summary, report.problems) == (
            "inserted 2, updated 0, unchanged 0, rejected 0",
            [],
        )
        assert rows(engine, "leads", "external_id", "name") == [
            ("J1", "Ann"),
            ("J2", None),
            ("L1", "Zoë"),
        ]

    def test_a_quote_never_closed_says_it_swallowed_the_rest_of_the_file(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """`L2,"b@x.test,B` opens a quote no line closes: the CSV reader reads lines 3-5 as one
        row. It was "cannot read the row: unexpected end of data", one rejection, and L3 and L4
        vanished without a word; now the message says which lines were lost and why."""
        text = (
            'external_id,email,name\nL1,a@x.test,A\nL2,"b@x.test,B\nL3,c@x.test,C\nL4,d@x.test,D\n'
        )
        path = write(tmp_path, "open.csv", text)
        report = import_file(engine, make_settings(), "leads", path, clock=clock)
        assert report.summary == "inserted 1, updated 0, unchanged 0, rejected 1"
        assert [str(p) for p in report.problems] == [
            f"{path}:3: a quoted field opened on this line is never closed: lines 3-5 (the rest "
            "of the file) were read as this one row and none of them is imported; close the "
            'quote, or double the quote characters inside the field ("")'
        ]
        assert rows(engine, "leads", "external_id") == [("L1",)]
        last = write(tmp_path, "last.csv", 'external_id,email,name\nL9,"z@x.test,Z\n')
        report = import_file(engine, make_settings(), "leads", last, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{last}:2: a quoted field opened on this line is never closed; close the quote, "
            'or double the quote characters inside the field ("")'
        ]

    def test_a_utf16_export_imports_with_its_encoding_and_is_named_without_it(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Excel's "Unicode Text" is UTF-16: every other byte is a NUL, so the file was refused
        as "not a CSV or JSONL text file" even with encoding: utf-16 set."""
        path = tmp_path / "unicode.csv"
        path.write_text("external_id,name\r\nL1,Zoë\r\nL2,李\r\n", encoding="utf-16")
        assert refused(engine, make_settings(), path) == (
            f"{path}:1: is UTF-16 text (it starts with a UTF-16 byte-order mark); save the file "
            "as UTF-8, or set import.mappings.leads.encoding: utf-16"
        )
        settings = make_settings(**{"import.mappings.leads.encoding": "utf-16"})
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert report.summary == "inserted 2, updated 0, unchanged 0, rejected 0"
        assert rows(engine, "leads", "external_id", "name") == [("L1", "Zoë"), ("L2", "李")]

    def test_utf32_imports_and_utf16_without_its_mark_names_the_byte_order(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A UTF-32 file (its mark starts like UTF-16's) imports with encoding: utf-32; UTF-16
        without a byte-order mark is one line naming the encodings that read it, and imports
        with one of them (Python's utf-16 codec raised UnicodeError: a traceback)."""
        bare = tmp_path / "bare.csv"
        bare.write_bytes("external_id,name\nL2,李\n".encode("utf-16-be"))
        settings = make_settings(**{"import.mappings.leads.encoding": "utf-16"})
        assert refused(engine, settings, bare) == (
            f"{bare}: cannot be read as utf-16 (UTF-16 stream does not start with BOM); set "
            "import.mappings.leads.encoding to the file's own (without a byte-order mark: "
            "utf-16-le, utf-16-be, utf-32-le, utf-32-be)"
        )
        settings = make_settings(**{"import.mappings.leads.encoding": "utf-16-be"})
        report = import_file(engine, settings, "leads", bare, clock=clock)
        assert report.summary == "inserted 1, updated 0, unchanged 0, rejected 0"
        wide = tmp_path / "wide.csv"
        wide.write_text("external_id,name\nL1,Zoë\n", encoding="utf-32")
        settings = make_settings(**{"import.mappings.leads.encoding": "utf-32"})
        report = import_file(engine, settings, "leads", wide, clock=clock)
        assert report.summary == "inserted 1, updated 0, unchanged 0, rejected 0"
        assert rows(engine, "leads", "external_id", "name") == [("L1", "Zoë"), ("L2", "李")]

    def test_a_nul_in_utf16_text_is_located(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        path = tmp_path / "unicode.csv"
        path.write_text("external_id,name\nL1,a\nL2,b\x00\n", encoding="utf-16")
        settings = make_settings(**{"import.mappings.leads.encoding": "utf-16"})
        assert refused(engine, settings, path) == (
            f"{path}:3: contains NUL bytes: this is not a CSV or JSONL text file"
        )

    def test_latin1_bytes_are_a_located_error(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """The line of the first bad byte, the byte, and the setting that fixes it."""
        path = write(tmp_path, "latin.csv", "external_id,name\nL1,Ada\nL2,Zoë\n", "latin-1")
        assert refused(engine, make_settings(), path) == (
            f"{path}:3: not valid utf-8 (byte 0xeb); save the file as UTF-8, or set "
            "import.mappings.leads.encoding (e.g. latin-1 or cp1252)"
        )

    def test_declared_latin1_is_read(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """With encoding: latin-1 the same file imports, the name intact."""
        settings = make_settings(import__mappings={"leads": {"encoding": "latin-1"}})
        path = write(tmp_path, "latin.csv", "external_id,name\nL2,Zoë\n", "latin-1")
        import_file(engine, settings, "leads", path, clock=clock)
        assert rows(engine, "leads", "external_id", "name") == [("L2", "Zoë")]

    def test_binary_junk(self, engine: Engine, make_settings: Any, tmp_path: Path) -> None:
        """A binary file is named as such, not parsed."""
        path = tmp_path / "export.csv"
        path.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00")
        assert refused(engine, make_settings(), path) == (
            f"{path}:1: contains NUL bytes: this is not a CSV or JSONL text file"
        )


class TestHeaders:
    """Empty files, unknown columns (with close matches), missing required columns."""

    @pytest.mark.parametrize(
        ("text", "name", "shown"),
        [
            ("external_id;email\nL1;a@x.test\n", "semicolons", "'external_id;email'"),
            ("external_id\temail\nL1\ta@x.test\n", "tabs", "'external_id\\temail'"),
        ],
    )
    def test_a_header_separated_otherwise_than_by_commas(
        self, engine: Engine, make_settings: Any, tmp_path: Path, text: str, name: str, shown: str
    ) -> None:
        """A spreadsheet's "CSV" with semicolons was one unknown column 'external_id;email'
        with a "did you mean"; now the file is refused saying what the separator is."""
        path = write(tmp_path, "export.csv", text)
        separator = ";" if name == "semicolons" else "\t"
        assert refused(engine, make_settings(), path) == (
            f"{path}:1: the header is one column separated by {name} ({shown}); set "
            f"import.mappings.leads.delimiter: {separator!r}, or save the file with commas as "
            "separators"
        )

    def test_a_european_excel_export_with_its_delimiter_encoding_and_decimal_comma(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """Semicolons, cp1252 and a decimal comma, as a German Excel saves a Salesforce report:
        with the mapping's delimiter, encoding and decimal_separator every row lands as written."""
        path = tmp_path / "leads_eu.csv"
        path.write_bytes(
            "Lead ID;Last Name;Company;Annual Revenue\r\n"
            '00Q5g0000000000AbC;Renée Dupont;"Smith; Jones & Co";1.234,50\r\n'
            "00Q5g0000000001AbC;Jürgen Groß;Initech;99\r\n".encode("cp1252")
        )
        settings = make_settings(
            **{
                "attributes.leads": {"revenue": "number"},
                "import.mappings.leads": {
                    "delimiter": ";",
                    "encoding": "cp1252",
                    "decimal_separator": ",",
                    "columns": {
                        "Lead ID": "external_id",
                        "Last Name": "name",
                        "Company": "company",
                        "Annual Revenue": "attributes.revenue",
                    },
                },
            }
        )
        report = import_file(engine, settings, "leads", path, clock=SettableClock(T0))
        assert [str(p) for p in report.problems] == []
        assert rows(engine, "leads", "external_id", "name", "company", "attributes") == [
            ("00Q5g0000000000AbC", "Renée Dupont", "Smith; Jones & Co", {"revenue": 1234.5}),
            ("00Q5g0000000001AbC", "Jürgen Groß", "Initech", {"revenue": 99.0}),
        ]

    def test_empty_file(self, engine: Engine, make_settings: Any, tmp_path: Path) -> None:
        path = write(tmp_path, "empty.csv", "")
        assert refused(engine, make_settings(), path) == (
            f"{path}: is empty; expected a header line naming the columns"
        )

    def test_unknown_columns_are_listed_with_close_matches(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """Each unknown column on its own line; a typo gets a suggestion."""
        path = write(tmp_path, "l.csv", "external_id,Emial,shoe_size\nL1,a@b.c,44\n")
        assert refused(engine, make_settings(), path).splitlines() == [
            f"{path}:1: unknown column 'Emial'; did you mean 'email'? (map it under "
            "import.mappings.leads.columns, declare it under attributes.leads, or map it to skip)",
            f"{path}:1: unknown column 'shoe_size' (map it under import.mappings.leads.columns, "
            "declare it under attributes.leads, or map it to skip)",
        ]

    def test_skipped_column_is_ignored(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Mapping a column to skip is how an export's extra columns are left out."""
        settings = make_settings(import__mappings={"leads": {"columns": {"shoe_size": "skip"}}})
        path = write(tmp_path, "l.csv", "external_id,shoe_size\nL1,44\n")
        assert import_file(engine, settings, "leads", path, clock=clock).counts.inserted == 1

    def test_missing_required_column(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        path = write(tmp_path, "l.csv", "email,name\na@b.c,Ada\n")
        assert refused(engine, make_settings(), path) == (
            f"{path}:1: missing required column external_id (or map a column to it under "
            "import.mappings.leads.columns)"
        )

    def test_missing_file_and_unknown_extension(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Neither reaches the store."""
        missing = tmp_path / "nope.csv"
        assert refused(engine, make_settings(), missing) == f"{missing}: no such file"
        odd = write(tmp_path, "leads.xlsx", "x")
        with pytest.raises(ImportFileError, match=r"pass --format csv or --format jsonl$"):
            import_file(engine, make_settings(), "leads", odd, clock=clock)

    @pytest.mark.parametrize("file_format", [None, "csv"])
    def test_a_folder_or_a_missing_file_without_extension(
        self, engine: Engine, make_settings: Any, tmp_path: Path, file_format: str | None
    ) -> None:
        """A folder was "cannot tell the format from the extension ''; pass --format" (with
        it, "is a folder"); a missing file without extension the same. Each says what it is."""
        folder = tmp_path / "exports"
        folder.mkdir()
        with pytest.raises(ImportFileError) as caught:
            import_file(
                engine,
                make_settings(),
                "leads",
                folder,
                clock=SettableClock(T0),
                file_format=file_format,
            )
        assert str(caught.value) == (
            f"{folder}: is a folder, not a file; give the CSV or JSONL file to import (one "
            "file per command: reps, leads, deals, activities in that order)"
        )
        missing = tmp_path / "leads"
        with pytest.raises(ImportFileError) as caught:
            import_file(
                engine,
                make_settings(),
                "leads",
                missing,
                clock=SettableClock(T0),
                file_format=file_format,
            )
        assert str(caught.value) == f"{missing}: no such file"


class TestJsonLines:
    """JSONL: one object per line; keys are the columns; a bad line is a rejected row."""

    def test_objects_import_and_bad_lines_are_rejected(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Numbers and booleans arrive typed; blank lines are skipped but counted."""
        text = (
            '{"external_id": "L1", "score": 12, "unsubscribed": true}\n'
            "\n"
            '{"external_id": "L2", "score": "x"}\n'
            "[1, 2]\n"
            '{"external_id": "L3"\n'
            '{"external_id": "L4", "name": "Grace"}\n'
        )
        path = write(tmp_path, "leads.jsonl", text)
        report = import_file(engine, make_settings(), "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:3: score: expected a whole number, got 'x'",
            f"{path}:4: expected a JSON object, got list",
            f"{path}:5: invalid JSON: Expecting ',' delimiter at column 21",
        ]
        assert rows(engine, "leads", "external_id", "score", "unsubscribed", "name") == [
            ("L1", 12, True, None),
            ("L4", 0, False, "Grace"),
        ]

    def test_an_integer_longer_than_python_reads_is_out_of_range_at_its_line(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """5,000 digits is valid JSON: the line was ``invalid JSON: Exceeds the limit (4300
        digits) for integer string conversion ... use sys.set_int_max_str_digits()``; now its
        field refuses it as any number beyond its range, and a line without one imports."""
        text = (
            f'{{"external_id": "L1", "score": {"9" * 5000}}}\n'
            '{"external_id": "L2", "score": 7}\n'
            f'{{"external_id": "L3", "score": -{"1" * 4301}}}\n'
        )
        path = write(tmp_path, "leads.jsonl", text)
        report = import_file(engine, make_settings(), "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:1: score: must be between -9223372036854775808 and 9223372036854775807",
            f"{path}:3: score: must be between -9223372036854775808 and 9223372036854775807",
        ]
        assert rows(engine, "leads", "external_id", "score") == [("L2", 7)]

    def test_a_key_first_seen_on_a_later_line_rejects_that_line(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """JSONL has no header: the keys are gathered from every line. A wrong key first seen
        on line 5 refused the whole file as `h.jsonl:1: unknown column`; now lines holding it
        are rejected at their own line, naming the key, and the good lines land."""
        text = (
            '{"external_id": "J1", "name": "Ann", "industry": "Retail"}\n'
            '{"external_id": "J2", "name": "Bob"}\n'
            '{"external_id": "J3", "name": "Cy"}\n'
            '{"external_id": "J4", "name": "Di"}\n'
            '{"external_id": "J5", "attributes": {"industry": {"name": "Banking"}}}\n'
            '{"external_id": "J6", "nmae": "Eve"}\n'
            '{"external_id": "J7", "name": "Flo", "industry": "Energy"}\n'
            '{"external_id": "J8", "nmae": "Gus"}\n'
        )
        path = write(tmp_path, "h.jsonl", text)
        settings = make_settings(attributes__leads={"industry": "string"})
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert report.summary == "inserted 5, updated 0, unchanged 0, rejected 3"
        assert [str(p) for p in report.problems] == [
            f"{path}:5: attributes.industry: an object inside 'attributes' is nested deeper "
            "than one level; give it one value (text, a number, true, false or null), or leave "
            "it out",
            f"{path}:6: key 'nmae': not a field of leads; did you mean 'name'? (map it under "
            "import.mappings.leads.columns, declare it under attributes.leads, or map it to "
            "skip)",
            f"{path}:8: key 'nmae': not a field of leads; did you mean 'name'? (map it under "
            "import.mappings.leads.columns, declare it under attributes.leads, or map it to "
            "skip)",
        ]
        assert rows(engine, "leads", "external_id", "name", "attributes") == [
            ("J1", "Ann", {"industry": "Retail"}),
            ("J2", "Bob", {}),
            ("J3", "Cy", {}),
            ("J4", "Di", {}),
            ("J7", "Flo", {"industry": "Energy"}),
        ]

    def test_an_unknown_key_on_the_first_line_refuses_the_file(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """A key on the first object's line is the file's header, as a CSV column is."""
        path = write(
            tmp_path, "h.jsonl", '{"external_id": "J1", "nmae": "Ann"}\n{"external_id": "J2"}\n'
        )
        assert refused(engine, make_settings(), path) == (
            f"{path}:1: unknown column 'nmae'; did you mean 'name'? (map it under "
            "import.mappings.leads.columns, declare it under attributes.leads, or map it to skip)"
        )


class TestJsonLinesExternalIds:
    """An external id is text: a JSON number was written out (``1.5e3`` became ``"1500.0"``),
    mapped (a HubSpot ``id``) or not."""

    def test_a_number_as_the_id_is_rejected_mapped_or_not(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        path = write(
            tmp_path,
            "leads.jsonl",
            '{"id": 1.5e3}\n{"id": 1e20}\n{"id": -0.0}\n{"id": true}\n{"id": "H1"}\n',
        )
        settings = make_settings(**{"import.mappings.leads.columns": {"id": "external_id"}})
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:1: id (external_id): expected text, got a number (1500.0); "
            "write the id as a JSON string",
            f"{path}:2: id (external_id): expected text, got a number (1e+20); "
            "write the id as a JSON string",
            f"{path}:3: id (external_id): expected text, got a number (-0.0); "
            "write the id as a JSON string",
            f"{path}:4: id (external_id): expected text, got true; write the id as a JSON string",
        ]
        unmapped = write(tmp_path, "plain.jsonl", '{"external_id": 7}\n{"external_id": "L7"}\n')
        report = import_file(engine, make_settings(), "leads", unmapped, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{unmapped}:1: external_id: expected text, got a number (7); "
            "write the id as a JSON string",
        ]
        assert rows(engine, "leads", "external_id") == [("H1",), ("L7",)]


class TestJsonLinesPools:
    def test_a_pool_that_is_not_text_rejects_the_line(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A rep's pools are text: a list or null inside was stored as ``"['east']"``, ``"None"``."""
        lines = [
            '{"external_id": "r1", "name": "A", "email": "a@x.test", "pools": [["east"]]}',
            '{"external_id": "r2", "name": "B", "email": "b@x.test", "pools": ["east", null]}',
            '{"external_id": "r3", "name": "C", "email": "c@x.test", "pools": [{"a": 1}]}',
            '{"external_id": "r4", "name": "D", "email": "d@x.test", "pools": ["east", 1]}',
            '{"external_id": "r5", "name": "E", "email": "e@x.test", "pools": ["east", "west"]}',
        ]
        path = write(tmp_path, "reps.jsonl", "\n".join(lines) + "\n")
        report = import_file(engine, make_settings(), "reps", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f'{path}:1: pools: item 0: expected text, got a list (["east"])',
            f"{path}:2: pools: item 1: expected text, got null",
            f'{path}:3: pools: item 0: expected text, got an object ({{"a": 1}})',
            f"{path}:4: pools: item 1: expected text, got a number (1)",
        ]
        assert rows(engine, "reps", "external_id", "pools") == [("r5", ["east", "west"])]

    def test_every_bad_pool_of_a_line_is_named_in_one_message(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """The first bad item only was named: fixing it showed the next, one round each."""
        lines = [
            '{"external_id": "r1", "name": "A", "email": "a@x.test", '
            '"pools": [1, "east", null, ["w"]]}',
            '{"external_id": "r2", "name": "B", "email": "b@x.test", '
            '"pools": ["a\\u0000b", "east", "c\\u0000"]}',
            '{"external_id": "r3", "name": "C", "email": "c@x.test", "pools": ["east"]}',
        ]
        path = write(tmp_path, "reps.jsonl", "\n".join(lines) + "\n")
        report = import_file(engine, make_settings(), "reps", path, clock=clock)
        nul = "text may not contain NUL characters (\\u0000)"
        assert [str(p) for p in report.problems] == [
            f"{path}:1: pools: item 0: expected text, got a number (1); item 2: expected text, "
            'got null; item 3: expected text, got a list (["w"])',
            f"{path}:2: pools: item 0: {nul}; item 2: {nul}",
        ]
        assert rows(engine, "reps", "external_id", "pools") == [("r3", ["east"])]


class TestJsonLinesValueTypes:
    """A JSONL value of a JSON type its field does not take rejects its line, naming the line,
    the field and what was expected, as the HTTP API answers 422 for the same shape; it was
    read as a CSV cell's text (``"pools": 5`` the pool ``"5"``, ``"email": 5`` no address)."""

    ACTIVE = "true or false (or text: 0, 1, false, n, no, true, x, y, yes)"

    def test_reps(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        lines = [
            '{"external_id": "r1", "name": "A", "email": "a@x.test", "pools": 5}',
            '{"external_id": "r2", "name": "B", "email": 5}',
            '{"external_id": "r3", "name": 7, "email": "c@x.test", "active": 1}',
            '{"external_id": "r4", "name": "D", "email": "d@x.test", "capacity": {"n": 1}}',
            '{"external_id": "r5", "name": "E", "email": "e@x.test", "timezone": 1.5}',
            '{"external_id": "r6", "name": "F", "email": "f@x.test", "pools": "east"}',
        ]
        path = write(tmp_path, "reps.jsonl", "\n".join(lines) + "\n")
        report = import_file(engine, make_settings(), "reps", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:1: pools: expected text or a list of text, got a number (5)",
            f"{path}:2: email: expected text, got a number (5)",
            f"{path}:3: name: expected text, got a number (7)",
            f"{path}:3: active: expected {self.ACTIVE}, got a number (1)",
            f'{path}:4: capacity: expected a whole number, got an object ({{"n": 1}})',
            f"{path}:5: timezone: expected text, got a number (1.5)",
        ]
        assert rows(engine, "reps", "external_id", "pools") == [("r6", ["east"])]

    def test_leads(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        lines = [
            '{"external_id": "L1", "email": 5, "name": "Ann"}',
            '{"external_id": "L2", "name": 6, "region": 5}',
            '{"external_id": "L3", "unsubscribed": 0, "stage": ["new"]}',
            '{"external_id": "L4", "last_activity_at": 1772442000, "score": "x"}',
            '{"external_id": "L5", "email": "e@x.test", "region": "east"}',
        ]
        path = write(tmp_path, "leads.jsonl", "\n".join(lines) + "\n")
        settings = make_settings(**{"attributes.leads": {"region": "string"}})
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:1: email: expected text, got a number (5)",
            f"{path}:2: name: expected text, got a number (6)",
            f"{path}:2: attributes.region: expected text, got a number (5)",
            f"{path}:3: unsubscribed: expected {self.ACTIVE}, got a number (0)",
            f'{path}:3: stage: expected text, got a list (["new"])',
            f"{path}:4: last_activity_at: expected a date, got a number (1772442000)",
            f"{path}:4: score: expected a whole number, got 'x'",
        ]
        assert rows(engine, "leads", "external_id", "email", "attributes") == [
            ("L5", "e@x.test", {"region": "east"})
        ]

    def test_deals_and_activities(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """An activity's ``properties.KEY`` column is free-form: a number there is its text,
        as before (and as the HTTP API takes it)."""
        settings = make_settings()
        leads = write(tmp_path, "leads.jsonl", '{"external_id": "L1"}\n')
        assert import_file(engine, settings, "leads", leads, clock=clock).rejected == 0
        deals = [
            '{"external_id": "D1", "lead": 1, "stage": "open"}',
            '{"external_id": "D2", "lead": "L1", "stage": "open", "outcome": 1}',
            '{"external_id": "D3", "lead": "L1", "stage": "open", "product": {"a": 1}}',
            '{"external_id": "D4", "lead": "L1", "stage": "open", "amount": 12.5}',
        ]
        path = write(tmp_path, "deals.jsonl", "\n".join(deals) + "\n")
        report = import_file(engine, settings, "deals", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:1: lead: expected text, got a number (1)",
            f"{path}:2: outcome: expected text, got a number (1)",
            f'{path}:3: product: expected text, got an object ({{"a": 1}})',
        ]
        assert rows(engine, "deals", "external_id", "amount") == [("D4", 12.5)]
        activities = [
            '{"external_id": "A1", "lead": "L1", "type": 5, "occurred_at": "2026-03-01"}',
            '{"external_id": "A2", "lead": "L1", "type": "visit", "occurred_at": "2026-03-01",'
            ' "properties": 5}',
            '{"external_id": "A3", "lead": "L1", "type": "visit", "occurred_at": "2026-03-01",'
            ' "properties.count": 5}',
        ]
        path = write(tmp_path, "activities.jsonl", "\n".join(activities) + "\n")
        report = import_file(engine, settings, "activities", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:1: type: expected text, got a number (5)",
            f'{path}:2: properties: expected a JSON object such as {{"page": "/pricing"}}, '
            "got a number (5)",
        ]
        assert rows(engine, "activities", "external_id", "properties") == [("A3", {"count": "5"})]
