"""The import's set-based lookups pass a batch's keys and ids to the store as one parameter:
keys needing quotes in an array literal are found like any other, and the stage history of a
batch of more ids than one IN list carries records each created lead exactly once."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from import_support import lead_entries, rows, write
from sqlalchemy import Engine

from leadflow.clock import SettableClock
from leadflow.ingest import import_file
from leadflow.ingest.references import existing_rows
from leadflow.store.id_ranges import PER_STATEMENT, id_array, text_array
from leadflow.store.tables import LEADS

AWKWARD_KEYS = ['q"uote', "back\\slash", "com,ma", "{brace}", "NULL", "two words", "plain"]
"""External ids an array literal must quote or escape (``NULL`` unquoted would be a null)."""


class TestArrayLiterals:
    """The text form of an array PostgreSQL reads back as the same items."""

    def test_texts_are_quoted_and_escaped_only_when_needed(self) -> None:
        """Plain items are joined as they are; a quote or backslash in any item escapes each."""
        assert text_array(["L1", "L2"]) == '{"L1","L2"}'
        assert text_array(["a", 'q"b', "c\\d"]) == '{"a","q\\"b","c\\\\d"}'
        assert text_array(['a","b']) == '{"a\\",\\"b"}'
        assert text_array(["NULL", ""]) == '{"NULL",""}'
        assert text_array([]) == "{}"

    def test_ids(self) -> None:
        assert id_array([3, 1, 2]) == "{3,1,2}"
        assert id_array(range(4, 6)) == "{4,5}"
        assert id_array([]) == "{}"


def _leads_file(keys: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["external_id", "stage"])
    writer.writerows([key, "lead"] for key in keys)
    return out.getvalue()


def test_keys_that_need_quoting_are_found_and_updated(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """Every awkward key is looked up as stored: the lookup returns exactly those stored, and a
    second import of the file with a changed stage updates each instead of inserting it."""
    settings = make_settings()
    first = import_file(
        engine, settings, "leads", write(tmp_path, "a.csv", _leads_file(AWKWARD_KEYS)), clock=clock
    )
    assert (first.counts.inserted, first.rejected) == (len(AWKWARD_KEYS), 0)
    with engine.connect() as connection:
        found = existing_rows(connection, LEADS, [*AWKWARD_KEYS, "absent", 'q"'])
    assert sorted(found) == sorted(AWKWARD_KEYS)
    changed = _leads_file(AWKWARD_KEYS).replace(",lead\n", ",mql\n")
    second = import_file(engine, settings, "leads", write(tmp_path, "b.csv", changed), clock=clock)
    assert (second.counts.inserted, second.counts.updated) == (0, len(AWKWARD_KEYS))
    assert rows(engine, "leads", "external_id", "stage") == [
        (key, "mql") for key in sorted(AWKWARD_KEYS)
    ]


def test_a_batch_of_more_ids_than_one_statement_records_each_first_stage_once(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """One batch creating more leads than an IN list holds (PostgreSQL: one array parameter)
    gives each created lead one history row, into its stage, and no other."""
    count = PER_STATEMENT + 234
    keys = [f"L{n:05d}" for n in range(count)]
    path = write(tmp_path, "many.csv", _leads_file(keys))
    report = import_file(engine, make_settings(), "leads", path, clock=clock)
    assert report.counts.inserted == count
    assert sorted(lead_entries(engine)) == [(key, None, "lead") for key in keys]
