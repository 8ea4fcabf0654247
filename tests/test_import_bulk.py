"""The bulk write path over several batches: on PostgreSQL COPY straight into the table (a batch of
new keys) or into a staging table and one merge; executemany on SQLite; a CRM export's shape with
declared (and indexed) attributes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from import_support import all_columns, rows, write
from sqlalchemy import Engine, select, text

from leadflow.clock import SettableClock
from leadflow.ingest import import_file
from leadflow.ingest.lead_rows import LeadWriter
from leadflow.ingest.mapping import compile_plan
from leadflow.ingest.readers import RowSource
from leadflow.ingest.references import RepDirectory
from leadflow.ingest.writers import Counts, TableWriter
from leadflow.store.attributes import attribute_value
from leadflow.store.database import ensure_attribute_indexes
from leadflow.store.tables import LEADS

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HEADER = (
    "Record ID,Email,Full Name,Company Name,Phone Number,Country/Region,Industry,"
    "Number of Employees,Lifecycle Stage,Last Activity Date,Unsubscribed from all email\n"
)
EXPORT = HEADER + (
    "101,ada@example.com,Ada Lovelace,Analytical,+44 1,United Kingdom,software,12,Lead,"
    "01-03-2026 10:05,No\n"
    "102,grace@example.com,Grace Hopper,Navy,,United States,defense,,Marketing Qualified Lead,"
    "28-02-2026 17:30,Yes\n"
    "103,alan@example.com,Alan Turing,Bletchley,,United Kingdom,research,7,Subscriber,,No\n"
    "104,edsger@example.com,Edsger Dijkstra,Eindhoven,,Netherlands,software,3,Lead,"
    "31-02-2026 08:00,No\n"
    "105,barbara@example.com,Barbara Liskov,MIT,,United States,software,40,Lead,"
    "1-3-2026 9:00,No\n"
)
COLUMNS = {
    "Record ID": "external_id",
    "Email": "email",
    "Full Name": "name",
    "Company Name": "company",
    "Phone Number": "skip",
    "Country/Region": "attributes.country",
    "Industry": "attributes.industry",
    "Number of Employees": "attributes.employees",
    "Lifecycle Stage": "stage",
    "Last Activity Date": "last_activity_at",
    "Unsubscribed from all email": "unsubscribed",
}
STAGES = {"Lead": "lead", "Subscriber": "subscriber", "Marketing Qualified Lead": "mql"}


@pytest.fixture
def settings(make_settings: Any) -> Any:
    """Two rows per batch, so five rows take three batches (three COPYs and merges)."""
    return make_settings(
        attributes__leads={"industry": "string", "country": "string", "employees": "integer"},
        attributes__indexed=["industry", "country"],
        import__batch_size=2,
        import__mappings={
            "leads": {
                "columns": COLUMNS,
                "values": {"stage": STAGES},
                "date_formats": ["%d-%m-%Y %H:%M"],
            }
        },
    )


@pytest.fixture
def indexed(engine: Engine, settings: Any) -> Engine:
    """The store as ``leadflow import`` opens it: with the attribute indexes."""
    attributes = settings.attributes
    ensure_attribute_indexes(engine, LEADS, attributes.leads, attributes.indexed)
    return engine


def test_rows_land_over_batches_and_a_bad_row_names_its_line_and_field(
    indexed: Engine, settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """Row 104's 31 February is rejected by line and field; the other four land, typed."""
    path = write(tmp_path, "contacts.csv", EXPORT)
    report = import_file(indexed, settings, "leads", path, clock=clock)
    assert [str(p) for p in report.problems] == [
        f"{path}:5: Last Activity Date (last_activity_at): expected a date as ISO 8601 "
        "(2017-03-01, 2017-03-01T10:00:00+02:00) or %d-%m-%Y %H:%M, got '31-02-2026 08:00'"
    ]
    assert report.summary == "inserted 4, updated 0, unchanged 0, rejected 1"
    assert rows(
        indexed,
        "leads",
        "external_id",
        "email",
        "stage",
        "last_activity_at",
        "unsubscribed",
        "attributes",
        "stage_entered_at",
        "score",
    ) == [
        (
            "101",
            "ada@example.com",
            "lead",
            datetime(2026, 3, 1, 10, 5, tzinfo=UTC),
            False,
            {"country": "United Kingdom", "industry": "software", "employees": 12},
            T0,
            0,
        ),
        (
            "102",
            "grace@example.com",
            "mql",
            datetime(2026, 2, 28, 17, 30, tzinfo=UTC),
            True,
            {"country": "United States", "industry": "defense"},
            T0,
            0,
        ),
        (
            "103",
            "alan@example.com",
            "subscriber",
            None,
            False,
            {"country": "United Kingdom", "industry": "research", "employees": 7},
            T0,
            0,
        ),
        (
            "105",
            "barbara@example.com",
            "lead",
            datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
            False,
            {"country": "United States", "industry": "software", "employees": 40},
            T0,
            0,
        ),
    ]


def test_indexed_attributes_answer_queries_on_their_expression(
    indexed: Engine, settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """A rule's filter on an indexed attribute finds exactly the imported rows with it."""
    import_file(indexed, settings, "leads", write(tmp_path, "c.csv", EXPORT), clock=clock)
    industry = attribute_value(LEADS, "industry", "string")
    employees = attribute_value(LEADS, "employees", "integer")
    with indexed.connect() as connection:
        software = connection.execute(
            select(LEADS.c.external_id).where(industry == "software").order_by(LEADS.c.id)
        ).all()
        large = connection.execute(
            select(LEADS.c.external_id).where(employees >= 10).order_by(LEADS.c.id)
        ).all()
    assert [tuple(row) for row in software] == [("101",), ("105",)]
    assert [tuple(row) for row in large] == [("101",), ("105",)]


def test_reimport_changes_nothing_and_a_changed_export_updates_only_its_rows(
    indexed: Engine, settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """Same file: all unchanged, every column identical. Then 101 moves to MQL (its clock
    restarts), 103 changes an attribute (its stage clock stays), 106 is new."""
    path = write(tmp_path, "contacts.csv", EXPORT)
    import_file(indexed, settings, "leads", path, clock=clock)
    before = all_columns(indexed, "leads")
    clock.advance(timedelta(hours=1))
    again = import_file(indexed, settings, "leads", path, clock=clock)
    assert again.summary == "inserted 0, updated 0, unchanged 4, rejected 1"
    assert all_columns(indexed, "leads") == before

    changed = (
        EXPORT.replace("software,12,Lead,", "software,12,Marketing Qualified Lead,")
        .replace("research,7,", "research,8,")
        .replace("31-02-2026", "28-02-2026")
        + "106,ken@example.com,Ken Thompson,Bell,,United States,software,9,Lead,,No\n"
    )
    report = import_file(
        indexed, settings, "leads", write(tmp_path, "changed.csv", changed), clock=clock
    )
    assert report.summary == "inserted 2, updated 2, unchanged 2, rejected 0"
    t1 = T0 + timedelta(hours=1)
    assert rows(
        indexed, "leads", "external_id", "stage", "stage_entered_at", "updated_at", "attributes"
    ) == [
        (
            "101",
            "mql",
            t1,
            t1,
            {"country": "United Kingdom", "industry": "software", "employees": 12},
        ),
        ("102", "mql", T0, T0, {"country": "United States", "industry": "defense"}),
        (
            "103",
            "subscriber",
            T0,
            t1,
            {"country": "United Kingdom", "industry": "research", "employees": 8},
        ),
        ("104", "lead", t1, t1, {"country": "Netherlands", "industry": "software", "employees": 3}),
        (
            "105",
            "lead",
            T0,
            T0,
            {"country": "United States", "industry": "software", "employees": 40},
        ),
        (
            "106",
            "lead",
            t1,
            t1,
            {"country": "United States", "industry": "software", "employees": 9},
        ),
    ]


def test_strict_over_several_batches_writes_all_or_nothing(
    indexed: Engine, settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """Strict: every batch in one transaction (one staging table, emptied between batches);
    a bad row in the last batch rolls back the two before it."""
    bad = write(tmp_path, "bad.csv", EXPORT)
    report = import_file(indexed, settings, "leads", bad, strict=True, clock=clock)
    assert report.rolled_back
    assert rows(indexed, "leads", "external_id") == []
    good = write(tmp_path, "good.csv", EXPORT.replace("31-02-2026", "28-02-2026"))
    report = import_file(indexed, settings, "leads", good, strict=True, clock=clock)
    assert report.summary == "inserted 5, updated 0, unchanged 0, rejected 0"
    assert rows(indexed, "leads", "external_id") == [(str(n),) for n in range(101, 106)]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # PostgreSQL stores times
def test_sqlite_stores_an_early_year_as_sqlalchemy_does(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """The bulk path's text of a time before year 1000 is the ORM's (zero-padded), so stored
    times still order correctly as text."""
    path = write(
        tmp_path,
        "leads.csv",
        "external_id,last_activity_at\nL1,0999-01-02T03:04:05+00:00\nL2,2020-01-02\n",
    )
    import_file(engine, make_settings(), "leads", path, clock=clock)
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT last_activity_at FROM leads ORDER BY last_activity_at")
        ).all()
    assert [row[0] for row in stored] == [
        "0999-01-02 03:04:05.000000",
        "2020-01-02 00:00:00.000000",
    ]


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_new_batch_whose_key_was_stored_since_the_check_is_merged(
    indexed: Engine, settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """PostgreSQL copies a batch of keys it did not hold straight into the table. Should one of
    them be stored by then (another transaction's, between the check and the copy: here the
    batch's 101 stored by an earlier import, the copy forced), the copy is undone to its
    savepoint and the same transaction merges the batch: 101 updated, 106 inserted once."""
    first = write(tmp_path, "first.csv", HEADER + EXPORT.splitlines(keepends=True)[1])
    import_file(indexed, settings, "leads", first, clock=clock)
    later = (
        HEADER
        + "101,ada@example.com,Ada Lovelace,Analytical,,United Kingdom,software,13,Lead,,No\n"
        + "106,ken@example.com,Ken Thompson,Bell,,United States,software,9,Lead,,No\n"
    )
    path = write(tmp_path, "later.csv", later)
    with RowSource(path, "csv", "utf-8") as source, indexed.begin() as connection:
        plan = compile_plan("leads", source.header, settings, str(path))
        writer = LeadWriter(plan, settings, T0, RepDirectory("external_id"))
        batch = []
        for line, cells, _problem in source.rows():
            record = plan.read(cells)
            batch.append((line, writer.key(record), record))
        prepared, rejected = writer.prepare(connection, batch)
        table_writer = TableWriter(connection, writer.shape(), T0)
        copy = table_writer._copy
        assert copy is not None
        assert copy._copy_new(connection, table_writer.form.rows(prepared)) is None
        written = table_writer.write(connection, prepared)
    assert rejected == []
    assert written.counts == Counts(inserted=1, updated=1, unchanged=0)
    assert rows(indexed, "leads", "external_id", "attributes") == [
        ("101", {"country": "United Kingdom", "industry": "software", "employees": 13}),
        ("106", {"country": "United States", "industry": "software", "employees": 9}),
    ]
