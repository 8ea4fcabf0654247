"""An id repeated in a file more than a batch apart: the last row of it that imports is written,
once; each earlier row is superseded, noted at the row after it, and counted (in the summary
and in ``import_runs``). Batches of 2 rows put the repeats in different batches."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from import_support import lead_entries, rows, write
from sqlalchemy import Engine, select

from leadflow.clock import SettableClock
from leadflow.ingest import import_file, repeats, runner
from leadflow.ingest.activity_rows import ActivityWriter
from leadflow.ingest.mapping import compile_plan
from leadflow.ingest.readers import RowSource
from leadflow.ingest.references import RepDirectory
from leadflow.store.status import collect_status
from leadflow.store.tables import IMPORT_RUNS
from tests.conftest import T0

# L1 on lines 2 and 6: three batches apart at 2 rows a batch.
APART = (
    "external_id,name,stage\n"
    "L1,First,lead\n"
    "L2,Other,lead\n"
    "L3,Third,lead\n"
    "L4,Fourth,lead\n"
    "L1,Second,subscriber\n"
)
EXPECTED = [
    ("L1", "Second", "subscriber"),
    ("L2", "Other", "lead"),
    ("L3", "Third", "lead"),
    ("L4", "Fourth", "lead"),
]
EXPECTED_ENTRIES = [
    ("L2", None, "lead"),
    ("L3", None, "lead"),
    ("L4", None, "lead"),
    ("L1", None, "subscriber"),
]
"""One first stage a lead: L1's first row, superseded, made none."""


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(import__batch_size=2)


@pytest.fixture
def fed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every file is read by a reading process; counts the feeds."""
    monkeypatch.setattr(runner, "FED_MIN_ROWS", 0)
    feeds: list[int] = []
    real = runner.fed

    @contextmanager
    def counted(produce: Callable[[Any], None], keep: int) -> Iterator[Iterator[Any]]:
        feeds.append(1)
        with real(produce, keep) as feed:
            yield feed

    monkeypatch.setattr(runner, "fed", counted)
    return feeds


def runs(engine: Engine) -> list[tuple[Any, ...]]:
    columns = IMPORT_RUNS.c
    query = select(
        columns.status, columns.inserted, columns.updated, columns.unchanged, columns.rejected
    ).add_columns(columns.superseded)
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query.order_by(columns.id))]


class TestAcrossBatches:
    """The file's last row of an id wins wherever the rows are, and is written once."""

    def test_the_last_row_is_written_once(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """L1's first row was written in the first batch and updated by its last in the third:
        "inserted 4, updated 1", and a stage history row for each. Now only the last is
        written: one insert, one first stage, and the first row noted as superseded."""
        path = write(tmp_path, "leads.csv", APART)
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert report.summary == "inserted 4, updated 0, unchanged 0, rejected 0, superseded 1"
        assert [str(note) for note in report.notes] == [
            f"{path}:6: external_id: 'L1' is also on line 2; the later row wins "
            "(line 2 is not imported)"
        ]
        assert rows(engine, "leads", "external_id", "name", "stage") == EXPECTED
        assert lead_entries(engine) == EXPECTED_ENTRIES
        again = import_file(engine, settings, "leads", path, clock=clock)
        assert again.summary == "inserted 0, updated 0, unchanged 4, rejected 0, superseded 1"
        assert lead_entries(engine) == EXPECTED_ENTRIES
        assert runs(engine) == [("done", 4, 0, 0, 0, 1), ("done", 0, 0, 4, 0, 1)]

    def test_a_later_row_that_is_rejected_supersedes_nothing(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """As within a batch: L1's last row names an unknown stage, so its earlier row lands
        (and an unreadable score on L2's last row leaves L2's first)."""
        text = (
            "external_id,name,stage,score\n"
            "L1,First,lead,1\n"
            "L2,Other,lead,2\n"
            "L3,Third,lead,3\n"
            "L1,Second,nowhere,4\n"
            "L2,Again,lead,many\n"
        )
        path = write(tmp_path, "leads.csv", text)
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert report.summary == "inserted 3, updated 0, unchanged 0, rejected 2"
        assert [(p.line, p.message.split(":")[0]) for p in report.problems] == [
            (5, "stage"),
            (6, "score"),
        ]
        assert report.notes == []
        assert rows(engine, "leads", "external_id", "name", "score") == [
            ("L1", "First", 1),
            ("L2", "Other", 2),
            ("L3", "Third", 3),
        ]

    def test_three_rows_of_an_id_each_superseded_by_the_next(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Lines 2, 4 (rejected: supersedes nothing), 5 and 7 hold L1: line 2 is superseded by
        line 5, line 5 by line 7, which is written."""
        text = (
            "external_id,name,stage\n"
            "L1,One,lead\n"
            "L2,Other,lead\n"
            "L1,Bad,nowhere\n"
            "L1,Two,lead\n"
            "L3,Third,lead\n"
            "L1,Three,subscriber\n"
        )
        path = write(tmp_path, "leads.csv", text)
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert report.summary == "inserted 3, updated 0, unchanged 0, rejected 1, superseded 2"
        assert [(note.line, note.message) for note in report.notes] == [
            (5, "external_id: 'L1' is also on line 2; the later row wins (line 2 is not imported)"),
            (7, "external_id: 'L1' is also on line 5; the later row wins (line 5 is not imported)"),
        ]
        assert rows(engine, "leads", "external_id", "name") == [
            ("L1", "Three"),
            ("L2", "Other"),
            ("L3", "Third"),
        ]
        assert [entry for entry in lead_entries(engine) if entry[0] == "L1"] == [
            ("L1", None, "subscriber")
        ]

    def test_strict_counts_the_same(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A strict import (one transaction) skips the same rows."""
        path = write(tmp_path, "leads.csv", APART)
        report = import_file(engine, settings, "leads", path, strict=True, clock=clock)
        assert report.summary == "inserted 4, updated 0, unchanged 0, rejected 0, superseded 1"
        assert rows(engine, "leads", "external_id", "name", "stage") == EXPECTED
        assert lead_entries(engine) == EXPECTED_ENTRIES

    def test_a_file_read_by_a_reading_process(
        self,
        engine: Engine,
        settings: Any,
        tmp_path: Path,
        clock: SettableClock,
        fed: list[int],
    ) -> None:
        """The reading process skips the same rows and sends the notes with its parts."""
        path = write(tmp_path, "leads.csv", APART)
        report = import_file(engine, settings, "leads", path, clock=clock)
        assert fed == [1]
        assert report.summary == "inserted 4, updated 0, unchanged 0, rejected 0, superseded 1"
        assert [(note.line, note.message) for note in report.notes] == [
            (6, "external_id: 'L1' is also on line 2; the later row wins (line 2 is not imported)")
        ]
        assert rows(engine, "leads", "external_id", "name", "stage") == EXPECTED
        assert lead_entries(engine) == EXPECTED_ENTRIES
        assert runs(engine) == [("done", 4, 0, 0, 0, 1)]

    def test_deals_and_activities(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A deal's and an activity's ids the same way; an activity without an id is known by
        its content, and the same activity further down is imported once."""
        leads = "external_id,name\nL1,Ada\nL2,Grace\n"
        assert import_file(engine, settings, "leads", write(tmp_path, "l.csv", leads), clock=clock)
        deals = (
            "external_id,lead,stage,amount\n"
            "D1,L1,Engaging,5\n"
            "D2,L2,Engaging,6\n"
            "D3,L2,Engaging,7\n"
            "D1,L1,Proposal,8\n"
        )
        report = import_file(
            engine, settings, "deals", write(tmp_path, "d.csv", deals), clock=clock
        )
        assert report.summary == "inserted 3, updated 0, unchanged 0, rejected 0, superseded 1"
        assert rows(engine, "deals", "external_id", "stage", "amount") == [
            ("D1", "Proposal", 8),
            ("D2", "Engaging", 6),
            ("D3", "Engaging", 7),
        ]
        activities = (
            "type,lead,occurred_at\n"
            "call,L1,2026-02-01T10:00:00Z\n"
            "call,L2,2026-02-01T10:00:00Z\n"
            "email,L2,2026-02-02T10:00:00Z\n"
            "call,L1,2026-02-01T10:00:00Z\n"
        )
        path = write(tmp_path, "a.csv", activities)
        report = import_file(engine, settings, "activities", path, clock=clock)
        assert report.summary == (
            "inserted 3, updated 0, already present 0, rejected 0, superseded 1"
        )
        assert [(note.line, note.message) for note in report.notes] == [
            (5, "the same activity as line 2: imported once")
        ]
        lead_ids = dict(rows(engine, "leads", "id", "external_id"))
        stored = rows(engine, "activities", "type", "lead_id", "occurred_at")
        assert sorted((kind, lead_ids[lead], at) for kind, lead, at in stored) == [
            ("call", "L1", datetime(2026, 2, 1, 10, tzinfo=UTC)),
            ("call", "L2", datetime(2026, 2, 1, 10, tzinfo=UTC)),
            ("email", "L2", datetime(2026, 2, 2, 10, tzinfo=UTC)),
        ]

    def test_activities_with_and_without_their_ids(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A file of activities with an id column, some cells empty: a row with its id is
        known by it alone (read from that cell), one without by its whole content."""
        leads = "external_id,name\nL1,Ada\nL2,Grace\n"
        assert import_file(engine, settings, "leads", write(tmp_path, "l.csv", leads), clock=clock)
        activities = (
            "external_id,type,lead,occurred_at\n"
            "A1,call,L1,2026-02-01T10:00:00Z\n"
            ",call,L2,2026-02-01T10:00:00Z\n"
            "A2,email,L2,2026-02-02T10:00:00Z\n"
            ",call,L2,2026-02-01T10:00:00Z\n"
            "A1,meeting,L1,2026-02-03T10:00:00Z\n"
        )
        path = write(tmp_path, "a.csv", activities)
        report = import_file(engine, settings, "activities", path, clock=clock)
        assert report.summary == (
            "inserted 3, updated 0, already present 0, rejected 0, superseded 2"
        )
        assert [(note.line, note.message) for note in report.notes] == [
            (5, "the same activity as line 3: imported once"),
            (6, "external_id: 'A1' is also on line 2; the later row wins (line 2 is not imported)"),
        ]
        stored = rows(engine, "activities", "external_id", "type")
        assert [(key if key.startswith("A") else "auto", kind) for key, kind in stored] == [
            ("A1", "meeting"),
            ("A2", "email"),
            ("auto", "call"),
        ]

    # The pre-pass reads the file, not the store: once is enough (no PostgreSQL twin).
    @pytest.mark.parametrize("store_url", ["sqlite:///never-opened.db"])
    @pytest.mark.slow
    def test_finding_repeats_holds_8_bytes_an_id(
        self, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Activities with their ids, none repeated: the pre-pass holds their hashes (8 bytes
        each) and sorts a 64th of them at a time; it sorted them all into a list of Python ints
        (about 40 bytes a hash) and read each row whole: 11 MB at its peak for 200,000 ids,
        56 MB at 1M. What each further id costs is the peak's growth from 20,000 ids to 80,000,
        measured by tracemalloc (what Python allocated: not a timing); the fixed part (the
        reader's buffers) is not the question."""

        def peak_for(ids: int) -> int:
            text = "external_id,type,lead,occurred_at\n" + "".join(
                f"A{n},call,L{n % 50},2026-02-01T10:00:00Z\n" for n in range(ids)
            )
            path = write(tmp_path, f"a{ids}.csv", text)
            with RowSource(path, "csv", "utf-8") as source:
                plan = compile_plan("activities", source.header, settings, str(path))
            writer = ActivityWriter(plan, settings, clock.now(), RepDirectory("external_id"))
            with RowSource(path, "csv", "utf-8") as source:
                tracemalloc.start()
                try:
                    repeated = repeats._repeated_hashes(writer, source)
                    _current, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
            assert repeated == set()
            return peak

        small, large = peak_for(20_000), peak_for(80_000)
        assert (large - small) / 60_000 < 12

    def test_status_shows_the_superseded_rows(
        self, engine: Engine, settings: Any, tmp_path: Path
    ) -> None:
        """``leadflow status``'s last import carries the run's superseded rows."""
        path = write(tmp_path, "leads.csv", APART)
        import_file(engine, settings, "leads", path, clock=SettableClock(T0))
        last = collect_status(engine).last_imports["leads"]
        assert (last.inserted, last.updated, last.superseded) == (4, 0, 1)

    def test_reps_with_their_managers(
        self, engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A rep's last row gives its manager; the earlier row's manager is never linked."""
        text = (
            "external_id,name,email,manager\n"
            "R1,Ada,ada@example.com,R2\n"
            "R2,Grace,grace@example.com,\n"
            "R3,Alan,alan@example.com,\n"
            "R1,Ada,ada@example.com,R3\n"
        )
        report = import_file(engine, settings, "reps", write(tmp_path, "r.csv", text), clock=clock)
        assert report.summary == "inserted 3, updated 0, unchanged 0, rejected 0, superseded 1"
        reps = dict(rows(engine, "reps", "id", "external_id"))
        managers = {reps[i]: reps.get(m) for i, m in rows(engine, "reps", "id", "manager_id")}
        assert managers == {"R1": "R3", "R2": None, "R3": None}
