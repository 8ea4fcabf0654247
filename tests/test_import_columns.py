"""A large CSV file's parts are read and checked column by column in the reading process
(ColumnPlan.read_columns, KindWriter.checked_columns): the same values, keys and hashes as the
row-by-row reading, and a part with a row that does not read or pass goes row by row, so that
every bad field is still named by line."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine, event

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.ingest import import_file, index_builds, runner
from leadflow.ingest.lead_rows import LeadWriter
from leadflow.ingest.mapping import compile_plan
from leadflow.ingest.references import RepDirectory
from leadflow.ingest.writers import DriverForm
from leadflow.settings import Settings

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CONFIG = """\
attributes:
  leads: {industry: string, employees: integer, signed: date, seen: datetime, paid: boolean}
import:
  mappings:
    leads:
      columns: {Record ID: external_id, Lifecycle Stage: stage, City: skip}
      values:
        stage: {Marketing Qualified Lead: mql, Lead: lead}
      empty_values: [Select, n/a]
      date_formats: ["%d-%m-%Y %H:%M", "%d-%m-%Y"]
"""
HEADER = (
    "Record ID,email,name,company,score,Lifecycle Stage,unsubscribed,last_activity_at,"
    "stage_entered_at,industry,employees,signed,seen,paid,City"
)
GOOD = [
    "L1,ann@x.test,Ann Lee,Acme,5,Lead,Yes,01-03-2025 10:00,,software,12,01-02-2024,,yes,Berlin",
    "L2,,Bob,Acme,,Marketing Qualified Lead,No,,01-01-2026 08:00,software,,,,no,Zürich",
    " L3 ,n/a,Ünal Çelik,Café Ltd,  7 ,lead,,2025-03-01T10:00:00+02:00,,Select,1 000,,"
    "01-03-2025 10:00,,Köln",
    "L4,dee@x.test,Dee,,0,,no,01-03-2025 10:00,,retail,-3,01-02-2024,01-03-2025 10:00,,",
    "L5,eve@x.test,  ,Acme,100,mql,YES,,,retail,12,,,NO,Paris",
]


def _settings(tmp_path: Path) -> Settings:
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'unused.db'}"
    return load_settings(config, env={}, overrides={"database.url": url}).settings


def _writer(tmp_path: Path) -> LeadWriter:
    settings = _settings(tmp_path)
    plan = compile_plan("leads", HEADER.split(","), settings, "l.csv")
    return LeadWriter(plan, settings, NOW, RepDirectory("external_id"))


def _part(lines: list[str]) -> tuple[list[int], list[list[str]]]:
    cells = list(csv.reader(io.StringIO("\n".join(lines))))
    return list(range(2, 2 + len(cells))), cells


def _row_by_row(writer: LeadWriter, lines: list[int], cells: list[list[str]]) -> list[Any]:
    read = []
    for line, row in zip(lines, cells, strict=True):
        record = writer.plan.read(row)
        read.append((line, writer.key(record), record))
    checked, rejected = writer.checked(read)
    assert rejected == []
    return checked


def test_a_part_reads_column_by_column_as_row_by_row(tmp_path: Path) -> None:
    """Text, emails, numbers with spaces, renamed and empty values, day-first and ISO times,
    every attribute type, ASCII and not, an attribute with no value: the same checked values
    in the same order, and so the same driver rows and hashes."""
    writer = _writer(tmp_path)
    lines, cells = _part(GOOD * 3)  # repeated cells: each distinct one parsed once
    by_columns = writer.checked_columns(lines, cells)
    expected = _row_by_row(writer, lines, cells)
    assert by_columns == expected
    assert [repr(row[2]) for row in by_columns] == [repr(row[2]) for row in expected]
    form = DriverForm(writer.shape(), "sqlite")
    assert form.hashed_rows(by_columns) == form.hashed_rows(expected)
    assert by_columns[2][:2] == (4, "L3")
    attributes = by_columns[2][2][0]
    assert attributes == {"employees": 1000, "paid": False, "seen": "2025-03-01T10:00:00+00:00"}
    assert list(attributes) == ["employees", "paid", "seen"]  # read()'s order: the hash's
    assert by_columns[1][2][0] == {"industry": "software", "paid": False}


@pytest.mark.parametrize(
    ("bad", "id_reads"),
    [
        ("L9,ann@x.test,Ann,Acme,many,Lead,Yes,,,,,,,,", True),  # a number that does not read
        ("L9,ann@x.test,Ann,Acme,1,Customer,Yes,,,,,,,,", True),  # an unknown stage
        ("L9,ann@x.test,Ann,Acme,99999999999999999999,Lead,Yes,,,,,,,,", True),  # past 64 bits
        ("L9,ann@x.test,Ann,Acme,1,Lead,Yes,,01-01-2027 08:00,,,,,,", True),  # in the future
        ("L9,ann@,Ann,Acme,1,Lead,Yes,,,,,,,,", True),  # not an email address
        ("L9,ann@x.test,Ann,Acme,1,Lead,Yes,,,,12.5,,,,", True),  # an attribute that does not
        (f"L9,ann@x.test,{'N' * 301},Acme,1,Lead,Yes,,,,,,,,", True),  # a name too long
        (",ann@x.test,Ann,Acme,1,Lead,Yes,,,,,,,,", False),  # no id
        (f"{'L' * 201},ann@x.test,Ann,Acme,1,Lead,Yes,,,,,,,,", False),  # an id too long
        ('"L\t9",ann@x.test,Ann,Acme,1,Lead,Yes,,,,,,,,', False),  # a tab in the id
    ],
    ids=[
        "number",
        "stage",
        "range",
        "future",
        "email",
        "attribute",
        "length",
        "no-id",
        "id-length",
        "id-tab",
    ],
)
def test_a_part_with_a_row_that_does_not_pass_is_left_to_the_rows(
    tmp_path: Path, bad: str, id_reads: bool
) -> None:
    """None: the caller reads that part row by row, which names the row's bad fields."""
    writer = _writer(tmp_path)
    lines, cells = _part([*GOOD, bad])
    assert writer.checked_columns(lines, cells) is None
    keys = writer.cells_keys(cells)
    assert keys == (["L1", "L2", "L3", "L4", "L5", "L9"] if id_reads else None)
    assert writer.checked_columns(*_part(GOOD)) is not None


def test_a_part_s_keys_are_read_from_their_column(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    _lines, cells = _part(GOOD)
    assert writer.cells_keys(cells) == [writer.cells_key(row) for row in cells]
    assert writer.cells_keys(cells) == ["L1", "L2", "L3", "L4", "L5"]


@pytest.fixture
def columns_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every leads file is fed by a reading process, which writes the size of each part it
    read by column into the file returned, a line each (it is another process)."""
    monkeypatch.setattr(runner, "FED_MIN_ROWS", 0)
    sizes = tmp_path / "sizes.txt"
    real = LeadWriter.checked_columns

    def counted(self: LeadWriter, lines: Any, cells: Any) -> Any:
        checked = real(self, lines, cells)
        if checked is not None:
            with sizes.open("a", encoding="utf-8") as out:
                out.write(f"{len(checked)}\n")
        return checked

    monkeypatch.setattr(LeadWriter, "checked_columns", counted)
    return sizes


def test_a_fed_csv_file_is_read_by_column_and_its_bad_rows_by_row(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock, columns_read: Path
) -> None:
    """Parts of two rows: the good parts by column, the part with a bad row row by row (its
    row named by line and field); a repeated id's later row wins; every good row lands."""
    settings = make_settings(import__batch_size=2)
    text = (
        "external_id,score,stage,name\n"
        "L1,1,lead,Ann\n"
        "L2,2,mql,Bob\n"
        "L3,many,lead,Cy\n"  # line 4: rejected while read
        "L4,4,lead,Dee\n"
        "L5,5,lead,Eve\n"
        "L6,6,lead,Fay\n"
        "L1,7,lead,Ann Lee\n"  # line 8: supersedes line 2
        "L7,8,mql,Gus\n"
    )
    path = write(tmp_path, "l.csv", text)
    report = import_file(engine, settings, "leads", path, clock=clock)
    assert report.summary == "inserted 6, updated 0, unchanged 0, rejected 1, superseded 1"
    assert [(p.line, p.message) for p in report.problems] == [
        (4, "score: expected a whole number, got 'many'")
    ]
    # Line 2 is superseded unread; (L2, L3) has a bad row: L2 and L4 read row by row; then
    # (L5, L6) and (L1, L7) by column.
    assert columns_read.read_text(encoding="utf-8").split() == ["2", "2"]
    assert rows(engine, "leads", "external_id", "score", "stage", "name") == [
        ("L1", 7, "lead", "Ann Lee"),
        ("L2", 2, "mql", "Bob"),
        ("L4", 4, "lead", "Dee"),
        ("L5", 5, "lead", "Eve"),
        ("L6", 6, "lead", "Fay"),
        ("L7", 8, "mql", "Gus"),
    ]


def _lookups(engine: Engine) -> list[str]:
    """The statements ``engine`` runs that look a batch's keys up in ``leads``."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def before(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith(
            ("SELECT external_id, id, source_hash FROM leads", "SELECT EXISTS (SELECT FROM leads")
        ):
            seen.append(statement[:40])

    return seen


def test_a_bulk_import_into_an_empty_table_looks_no_key_up(
    engine: Engine,
    make_settings: Any,
    tmp_path: Path,
    clock: SettableClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The table was empty when the import's transaction took it, and each key is written
    once: every row is new, and the batches insert (copy) them without a lookup. Into a table
    already holding rows (still fewer than half the file's), each batch looks its keys up:
    the stored row is updated, not inserted twice."""
    monkeypatch.setattr(index_builds, "BULK_MIN_ROWS", 3)
    settings = make_settings(import__batch_size=2)
    text = "external_id,score\nL1,1\nL2,2\nL3,3\nL4,4\nL5,5\nL1,6\n"
    lookups = _lookups(engine)
    report = import_file(engine, settings, "leads", write(tmp_path, "l.csv", text), clock=clock)
    assert report.summary == "inserted 5, updated 0, unchanged 0, rejected 0, superseded 1"
    assert lookups == []
    assert rows(engine, "leads", "external_id", "score") == [
        ("L1", 6),
        ("L2", 2),
        ("L3", 3),
        ("L4", 4),
        ("L5", 5),
    ]
    engine.dispose()
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM stage_changes")
        connection.exec_driver_sql("DELETE FROM leads WHERE external_id <> 'L1'")
    text = "external_id,score\nL1,7\nL2,2\nL3,3\nL4,4\nL5,5\nL6,6\nL7,7\n"
    report = import_file(engine, settings, "leads", write(tmp_path, "m.csv", text), clock=clock)
    assert report.summary == "inserted 6, updated 1, unchanged 0, rejected 0"
    # A lookup per batch of two, in the store's own words (the filter above sees both).
    lookup = (
        "SELECT EXISTS (SELECT FROM leads WHERE e"
        if engine.dialect.name == "postgresql"
        else "SELECT external_id, id, source_hash FROM"
    )
    assert lookups == [lookup] * 4
    assert rows(engine, "leads", "external_id", "score") == [
        ("L1", 7),
        ("L2", 2),
        ("L3", 3),
        ("L4", 4),
        ("L5", 5),
        ("L6", 6),
        ("L7", 7),
    ]
