"""A huge column name or key is refused cheaply, and quoted back as a short prefix.

Pins (an outside tester's find): a CSV whose header was one 100 MB cell took 4.1 GB and 19-28 s
and printed the 100 MB name back on stderr; a JSONL key of 50 MB took 2.1 GB; over HTTP a 4 MB
unknown key came back in an 8 MB 422. The did-you-mean (difflib indexing the name character by
character) and the name's normalisation held the memory. Now a name over 1,000 characters is
refused before any of that, and a message quotes its first 60 characters and its length.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine

from leadflow.cli import main
from leadflow.clock import SettableClock
from leadflow.ingest.names import quoted
from leadflow.suggestions import did_you_mean
from tests.http_support import Api, build_app, http_settings, runtime_for

HEADER_CELL = 30_000_000
"""A 30 MB name: large enough that a copy per step shows, small enough to stay fast."""
PEAK_BOUND = 8 * HEADER_CELL
"""Reading the line (the text layer's chunks and their join), its cell: measured 6.5 copies of
the name for a CSV header, 4 for a JSONL key (before: 41 for the header, 1.2 GB here)."""


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Path:
    return write(tmp_path, "config.yaml", f"database:\n  url: {store_url}\n")


def _import_traced(args: list[str]) -> tuple[int, int]:
    tracemalloc.start()
    try:
        code = main(args)
        return code, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_huge_header_cell_refuses_the_file_in_one_short_line(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: Engine
) -> None:
    path = tmp_path / "oneline.csv"
    path.write_bytes(b"x" * HEADER_CELL + b"\nL1\n")
    code, peak = _import_traced(["-c", str(config), "import", "leads", str(path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err == (
        f"error: {path}:1: column 1 '{'x' * 60}'… (30,000,000 characters): a column name may "
        "have at most 1,000 characters; rename it, or leave it out\n"
    )
    assert peak < PEAK_BOUND, peak
    assert rows(engine, "leads", "external_id") == []


def test_a_huge_jsonl_key_rejects_its_line_in_one_short_line(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: Engine
) -> None:
    path = tmp_path / "leads.jsonl"
    with path.open("w") as out_file:
        out_file.write('{"external_id": "L1"}\n{"external_id": "L2", "')
        out_file.write("k" * HEADER_CELL)
        out_file.write('": 1}\n{"external_id": "L3"}\n')
    code, peak = _import_traced(["-c", str(config), "import", "leads", str(path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == f"leads {path}: inserted 2, updated 0, unchanged 0, rejected 1\n"
    assert err == (
        f"{path}:2: key '{'k' * 60}'… (30,000,000 characters): a key may have at most 1,000 "
        "characters; rename it, or leave it out\n"
    )
    assert peak < PEAK_BOUND, peak
    assert rows(engine, "leads", "external_id") == [("L1",), ("L3",)]


def test_a_huge_posted_key_gets_a_short_422(
    engine: Engine, make_settings: Any, clock: SettableClock
) -> None:
    settings = http_settings(make_settings, **{"http.max_body_bytes": 5_000_000})
    app, _holder = build_app(runtime_for(engine, settings, clock))
    response = Api(app).post("/v1/leads", {"external_id": "L1", "y" * 4_000_000: 1})
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "loc": ["body"],
                "msg": f"column '{'y' * 60}'… (4,000,000 characters): a column name may have "
                "at most 1,000 characters; rename it, or leave it out",
                "type": "value_error",
            }
        ]
    }
    assert len(response.content) < 300
    assert rows(engine, "leads", "external_id") == []


def test_a_name_just_within_the_limit_is_still_suggested_for() -> None:
    """1,000 characters is an unknown column with its advice, quoted whole as before."""
    assert did_you_mean("nmae", ["name", "email"]) == "did you mean 'name'?"
    assert did_you_mean("n" * 1_000, ["name", "email"]) == ""


def test_quoted_shows_short_text_whole_and_long_text_as_a_prefix() -> None:
    assert quoted("Lead Source") == "'Lead Source'"
    assert quoted("a" * 61) == f"'{'a' * 60}'… (61 characters)"


def test_huge_cells_are_quoted_by_a_prefix_on_their_lines(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], engine: Engine
) -> None:
    """A 1 MB stage, owner, timezone or date, a repeated key, a nested key: each one line
    quoting 60 characters (a timezone that long refused the whole file with a path of 1 MB)."""
    big = "z" * 1_000_000
    shown = f"'{'z' * 60}'… (1,000,000 characters)"
    lines = [
        {"external_id": "L1", "stage": big},
        {"external_id": "L2", "owner": big},
        {"external_id": "L3", "timezone": big},
        {"external_id": "L4", "last_activity_at": big},
        {"external_id": "L6"},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    text += f'{{"{big}": 1, "{big}": 2}}\n{{"external_id": "L7", "attributes": {{"{big}": 1}}}}\n'
    path = write(tmp_path, "leads.jsonl", text)
    assert main(["-c", str(config), "import", "leads", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == f"leads {path}: inserted 1, updated 0, unchanged 0, rejected 6\n"
    assert err.splitlines() == [
        f"{path}:1: stage: unknown stage {shown}; expected one of subscriber, lead, mql, sql, "
        "opportunity, customer, nurture, recycled, disqualified (or map it under "
        "import.mappings.leads.values.stage)",
        f"{path}:2: owner: no rep with external id {shown}; import the reps first",
        f"{path}:3: timezone: unknown timezone {shown}; use an IANA name such as Europe/Berlin",
        f"{path}:4: last_activity_at: expected a date as ISO 8601 (2017-03-01, "
        f"2017-03-01T10:00:00+02:00), got {shown}",
        f"{path}:6: invalid JSON: the key {shown} is written twice in one object",
        f"{path}:7: attributes.{shown}: a key may have at most 1,000 characters; rename it, "
        "or leave it out",
    ]
    assert rows(engine, "leads", "external_id") == [("L6",)]
