"""A large file of a kind that prepares alone (leads) is read and prepared in a forked process
while this one writes: the same rows land, the same rows are rejected by line and field (those
after the last batch too, and past the kept problems' limit), and an error in the reading
process is raised by the import, the process gone either way."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine, select

from leadflow.clock import SettableClock
from leadflow.ingest import import_file, runner
from leadflow.ingest.lead_rows import LeadWriter
from leadflow.store.tables import IMPORT_RUNS
from tests.conftest import T0


@pytest.fixture
def settings(make_settings: Any) -> Any:
    return make_settings(import__batch_size=2)


@pytest.fixture
def feeds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every file is fed by a reading process; counts the items each feed delivered."""
    monkeypatch.setattr(runner, "FED_MIN_ROWS", 0)
    delivered: list[int] = []
    real = runner.fed

    @contextmanager
    def counted(produce: Callable[[Any], None], keep: int) -> Iterator[Iterator[Any]]:
        delivered.append(0)
        with real(produce, keep) as feed:

            def counting() -> Iterator[Any]:
                for item in feed:
                    delivered[-1] += 1
                    yield item

            yield counting()

    monkeypatch.setattr(runner, "fed", counted)
    return delivered


def test_fed_rows_land_and_bad_rows_are_named_by_line_and_field(
    engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock, feeds: list[int]
) -> None:
    """Bad rows inside batches and after the last one, a row of the wrong width: each named,
    in file order; the others land."""
    text = (
        "external_id,score,stage\n"
        "L1,1,lead\n"
        "L2,many,lead\n"  # line 3: rejected while read
        "L3,3,mql\n"
        "L4,4,lead,extra\n"  # line 5: wrong width
        "L5,5,lead\n"
        "L6,99999999999999999999,lead\n"  # line 7: rejected while prepared (past 64 bits)
        "L7,seven,lead\n"  # line 8: rejected while read, after the last batch's rows
    )
    report = import_file(engine, settings, "leads", write(tmp_path, "l.csv", text), clock=clock)
    assert feeds == [2]  # (L1, L3), then (L5, L6) with the rejections read since
    assert report.summary == "inserted 3, updated 0, unchanged 0, rejected 4"
    assert [(p.line, p.message.split(":")[0]) for p in report.problems] == [
        (3, "score"),
        (5, "row has 4 fields, the header has 3"),
        (7, "score"),
        (8, "score"),
    ]
    assert rows(engine, "leads", "external_id", "score", "stage") == [
        ("L1", 1, "lead"),
        ("L3", 3, "mql"),
        ("L5", 5, "lead"),
    ]
    assert multiprocessing.active_children() == []


def test_fed_rejections_beyond_the_kept_problems_are_counted(
    engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock, feeds: list[int]
) -> None:
    """1,200 bad rows and no good one (no batch to send them with): all counted, the first
    1,000 kept, in order."""
    lines = "".join(f"L{n},bad\n" for n in range(1200))
    path = write(tmp_path, "l.csv", "external_id,score\n" + lines)
    report = import_file(engine, settings, "leads", path, clock=clock)
    assert feeds == [1]
    assert report.summary == "inserted 0, updated 0, unchanged 0, rejected 1200"
    assert [p.line for p in report.problems] == list(range(2, 1002))


def test_fed_rows_name_every_bad_field_and_count_the_row_once(
    engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock, feeds: list[int]
) -> None:
    """A row with two bad cells, read by the reading process: both named, one row rejected."""
    text = "external_id,score,last_activity_at\nL1,1,\nL2,many,soon\nL3,3,\n"
    report = import_file(engine, settings, "leads", write(tmp_path, "l.csv", text), clock=clock)
    assert feeds == [1]
    assert report.summary == "inserted 2, updated 0, unchanged 0, rejected 1"
    assert [(p.line, p.message.split(":")[0]) for p in report.problems] == [
        (3, "score"),
        (3, "last_activity_at"),
    ]
    assert report.unlisted == 0


def test_fed_rows_of_one_id_the_later_wins_and_is_noted(
    engine: Engine, settings: Any, tmp_path: Path, clock: SettableClock, feeds: list[int]
) -> None:
    """As in this process: the earlier row of an id is superseded, noted, not written."""
    text = "external_id,score\nL1,1\nL1,2\nL2,3\n"
    path = write(tmp_path, "l.csv", text)
    report = import_file(engine, settings, "leads", path, clock=clock)
    assert report.summary == "inserted 2, updated 0, unchanged 0, rejected 0, superseded 1"
    assert [str(n) for n in report.notes] == [
        f"{path}:3: external_id: 'L1' is also on line 2; the later row wins "
        "(line 2 is not imported)"
    ]
    assert rows(engine, "leads", "external_id", "score") == [("L1", 2), ("L2", 3)]
    again = import_file(engine, settings, "leads", path, clock=clock)
    assert again.summary == "inserted 0, updated 0, unchanged 2, rejected 0, superseded 1"


def test_an_error_in_the_reading_process_fails_the_import(
    engine: Engine,
    settings: Any,
    tmp_path: Path,
    clock: SettableClock,
    feeds: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reading process fails at its second batch: the import raises its error, the first
    batch (committed on its own) stays, the run is ``failed``."""
    real = LeadWriter.checked
    calls = 0

    def failing(self: LeadWriter, batch: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            msg = "the file's disk is gone"
            raise OSError(msg)
        return real(self, batch)

    monkeypatch.setattr(LeadWriter, "checked", failing)
    lines = "".join(f"L{n},{n}\n" for n in range(6))
    path = write(tmp_path, "l.csv", "external_id,score\n" + lines)
    with pytest.raises(OSError, match="the file's disk is gone"):
        import_file(engine, settings, "leads", path, clock=clock)
    assert rows(engine, "leads", "external_id") == [("L0",), ("L1",)]
    with engine.connect() as connection:
        run = connection.execute(select(IMPORT_RUNS.c.status, IMPORT_RUNS.c.inserted)).one()
    assert tuple(run) == ("failed", 2)
    assert multiprocessing.active_children() == []


def test_fed_rows_update_changed_leads_with_their_times_and_attributes(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock, feeds: list[int]
) -> None:
    """Rows come from the reading process in the driver's form (SQLite: times and attributes as
    text): a second import updates the changed leads with exactly the file's values, leaves the
    unchanged one alone, inserts the new one, and records the changed stage once."""
    settings = make_settings(
        import__batch_size=2,
        attributes__leads={"industry": "string", "employees": "integer"},
        import__mappings={"leads": {"date_formats": ["%d-%m-%Y %H:%M"]}},
    )
    header = "external_id,stage,last_activity_at,industry,employees\n"
    first = header + "L1,lead,01-02-2026 10:30,software,12\nL2,lead,,retail,\nL3,lead,,,\n"
    import_file(engine, settings, "leads", write(tmp_path, "a.csv", first), clock=clock)
    clock.advance(timedelta(hours=1))
    second = (
        header
        + "L1,mql,02-02-2026 11:45,software,13\n"  # stage, time and an attribute changed
        + "L2,lead,,retail,\n"  # unchanged
        + "L3,lead,03-02-2026 08:00,medical,\n"  # a time and an attribute where there were none
        + "L4,subscriber,,,7\n"  # new
    )
    report = import_file(engine, settings, "leads", write(tmp_path, "b.csv", second), clock=clock)
    assert feeds == [2, 2]
    assert report.summary == "inserted 1, updated 2, unchanged 1, rejected 0"
    later = T0 + timedelta(hours=1)
    assert rows(
        engine,
        "leads",
        "external_id",
        "stage",
        "stage_entered_at",
        "last_activity_at",
        "attributes",
    ) == [
        (
            "L1",
            "mql",
            later,
            datetime(2026, 2, 2, 11, 45, tzinfo=UTC),
            {
                "industry": "software",
                "employees": 13,
            },
        ),
        ("L2", "lead", T0, None, {"industry": "retail"}),
        ("L3", "lead", T0, datetime(2026, 2, 3, 8, 0, tzinfo=UTC), {"industry": "medical"}),
        ("L4", "subscriber", later, None, {"employees": 7}),
    ]
    history = rows(engine, "stage_changes", "lead_id", "from_stage", "to_stage", "at")
    assert [(entry[1], entry[2], entry[3]) for entry in history] == [
        (None, "lead", T0),
        (None, "lead", T0),
        (None, "lead", T0),
        ("lead", "mql", later),
        (None, "subscriber", later),
    ]
