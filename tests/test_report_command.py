"""``leadflow report`` on the command line: the same figures as CSV, JSON, a table and an HTML
file that opens offline; bad options are one line and exit 1."""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from leadflow.cli import main
from leadflow.funnel.text import CONVERSION_SECTIONS, OVER_ONE, left_out_note
from leadflow.store.tables import LEADS
from tests.test_report import seed

PERIOD = ["--from", "2026-03-02T09:00:00Z", "--to", "2026-03-09T09:00:00Z"]


def config(tmp_path: Path, store_url: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database:\n  url: {store_url}\ncalendar:\n  timezone: UTC\n"
        "attributes:\n  leads:\n    source: string\n",
        encoding="utf-8",
    )
    return str(path)


def run(tmp_path: Path, store_url: str, *options: str) -> int:
    return main(["-c", config(tmp_path, store_url), "report", *PERIOD, *options])


class TestFormats:
    """CSV, JSON, table and HTML carry the same figures."""

    def test_json_and_csv(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The JSON's pipeline is the hand-computed one (won 3 of 4, cycle 23 days); the CSV
        has the same rows, a section column first."""
        seed(engine)
        assert run(tmp_path, store_url, "--format", "json", "--stall", "mql=3d") == 0
        document = json.loads(capsys.readouterr().out)
        assert document["period"] == {
            "from": "2026-03-02T09:00:00+00:00",
            "to": "2026-03-09T09:00:00+00:00",
            "by": "none",
            # Run long after the period: what is open is measured at its end.
            "as_of": "2026-03-09T09:00:00+00:00",
        }
        (line,) = document["pipeline"]
        assert (line["won"], line["lost"], line["win_rate"]) == (3, 1, 0.75)
        assert line["average_won_cycle_days"] == pytest.approx(23.0)
        assert run(tmp_path, store_url, "--format", "csv") == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        pipeline = [r for r in rows if r["section"] == "pipeline"]
        assert [(r["won"], r["lost"], r["win_rate"]) for r in pipeline] == [("3", "1", "0.75")]
        assert len([r for r in rows if r["section"] == "sla"]) == len(document["sla"])

    def test_now_measures_what_is_open_at_that_instant(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--now`` inside the period (a demo's last simulated instant) is the report's as-of;
        one that is no instant is a located usage mistake, no traceback."""
        seed(engine)
        options = ("--format", "json", "--now", "2026-03-05T07:00:00Z")
        assert run(tmp_path, store_url, *options) == 0
        period = json.loads(capsys.readouterr().out)["period"]
        assert (period["to"], period["as_of"]) == (
            "2026-03-09T09:00:00+00:00",
            "2026-03-05T07:00:00+00:00",
        )
        assert run(tmp_path, store_url, "--now", "friday") == 1
        error = capsys.readouterr().err
        assert error.startswith("error: --now: ")
        assert "Traceback" not in error

    def test_generated_is_when_it_was_made_not_now(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With ``--now`` in the past, ``generated_at`` was that instant too (the HTML said
        "generated 2026-03-05T07:00:00+00:00" of a file made in 2026-11): it is the wall clock's
        time the report was made at, and ``as_of`` the ``--now``; the HTML, CSV and table say
        both."""
        seed(engine)
        now = ("--now", "2026-03-05T07:00:00Z")
        as_of = "2026-03-05T07:00:00+00:00"
        before = datetime.now(UTC)
        assert run(tmp_path, store_url, "--format", "json", *now) == 0
        document = json.loads(capsys.readouterr().out)
        after = datetime.now(UTC)
        generated = document["generated_at"]
        assert before <= datetime.fromisoformat(generated) <= after
        assert document["period"]["as_of"] == as_of

        def made(text: str) -> str:
            found = re.search(r"generated (\S+?)\.? ", text)
            assert found is not None, text
            stamp = found.group(1)
            assert before <= datetime.fromisoformat(stamp) <= datetime.now(UTC)
            return stamp

        target = tmp_path / "report.html"
        assert run(tmp_path, store_url, "-o", str(target), *now) == 0
        page = target.read_text(encoding="utf-8")
        stamp = made(page)
        assert f"(end excluded), not grouped; as of {as_of}, generated {stamp}." in page
        assert run(tmp_path, store_url, *now) == 0
        table = capsys.readouterr().out.splitlines()
        stamp = made(table[1] + " ")
        assert table[1] == f"Figures as of {as_of}, generated {stamp}."
        assert run(tmp_path, store_url, "--format", "csv", *now) == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        assert len({(r["as_of"], r["generated_at"]) for r in rows}) == 1
        assert rows[0]["as_of"] == as_of
        assert before <= datetime.fromisoformat(rows[0]["generated_at"]) <= datetime.now(UTC)

    def test_csv_cells_a_spreadsheet_would_run_are_quoted(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A source written as a formula by whoever filled the CRM reaches the CSV with a
        leading apostrophe; the JSON keeps it as it is; the figures stay numbers."""
        seed(engine)
        with engine.begin() as connection:
            connection.execute(
                update(LEADS)
                .where(LEADS.c.id.in_([1, 2]))
                .values(attributes={"source": "=cmd|calc"})
            )
        assert run(tmp_path, store_url, "--format", "csv", "--by", "source") == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        entries = {
            (r["group"], r["stage"]): r["entered"] for r in rows if r["section"] == "stage_entries"
        }
        assert entries[("'=cmd|calc", "mql")] == "2"
        assert not [r for r in rows if r.get("group") == "=cmd|calc"]
        assert run(tmp_path, store_url, "--format", "json", "--by", "source") == 0
        document = json.loads(capsys.readouterr().out)
        assert {"=cmd|calc"} <= {r["group"] for r in document["stage_entries"]}

    @pytest.mark.slow
    def test_table_by_product(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The table groups the pipeline by product: A wins 2 of 3 (66.7%), B 1 of 1."""
        seed(engine)
        assert run(tmp_path, store_url, "--by", "product") == 0
        out = capsys.readouterr().out
        assert re.search(r"│ A\s+│\s+2 │\s+1 │\s+66\.7% │", out)
        assert re.search(r"│ B\s+│\s+1 │\s+0 │\s+100\.0% │", out)
        # Grouped by product, the pipeline is by product already: one table, not the same
        # rows twice; the HTML likewise; JSON keeps both sections, equal.
        assert out.count("│ A ") == 1
        assert "Pipeline by product" not in out
        target = tmp_path / "by-product.html"
        assert run(tmp_path, store_url, "--by", "product", "--output", str(target)) == 0
        page = target.read_text(encoding="utf-8")
        assert "<h2>Pipeline (deals closed" in page
        assert "Pipeline by product" not in page
        assert run(tmp_path, store_url, "--by", "product", "--format", "json") == 0
        document = json.loads(capsys.readouterr().out)
        assert document["pipeline_by_product"] == document["pipeline"]
        assert [line["group"] for line in document["pipeline"]] == ["A", "B"]
        # Not grouped by product, the second table is there.
        assert run(tmp_path, store_url) == 0
        assert "Pipeline by product" in capsys.readouterr().out

    def test_attributed_conversions_read_as_counts_linear_shares_as_decimals(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """First and last touch credit whole conversions (2, not 2.00); a linear share of two
        touches keeps its decimals (1.50); amounts stay money (400.00), an MQL has none (-)."""
        seed(engine)
        assert run(tmp_path, store_url) == 0
        out = capsys.readouterr().out
        assert re.search(r"│ first_touch │ won\s+│ ads\s+│\s+2 │\s+400\.00 │", out)
        assert re.search(r"│ last_touch\s+│ mql\s+│ spring\s+│\s+1 │\s+- │", out)
        assert re.search(r"│ linear\s+│ won\s+│ spring\s+│\s+1\.50 │\s+350\.00 │", out)
        assert not re.search(r"│ first_touch .*│\s+\d+\.00 │\s+[\d,.]+ │", out)

    def test_html_is_self_contained(self, engine: Engine, store_url: str, tmp_path: Path) -> None:
        """Four inline SVG charts; no script, no stylesheet or image fetched from anywhere."""
        seed(engine)
        target = tmp_path / "report.html"
        assert run(tmp_path, store_url, "--format", "html", "--output", str(target)) == 0
        page = target.read_text(encoding="utf-8")
        assert page.count("<svg") == 4
        assert "<script" not in page
        assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", page)
        assert "@import" not in page

    def test_html_and_tables_leave_out_empty_pairs_csv_keeps_them(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The conversion pairs with no entry on either side: every one in the CSV, none in the
        HTML and terminal tables, which say how many they left out; a table with a period rate
        above 100 % (lead -> mql, 4 of 3) says why under it."""
        seed(engine)
        csv_file, html_file = tmp_path / "week.csv", tmp_path / "week.html"
        assert run(tmp_path, store_url, "--output", str(csv_file)) == 0
        assert run(tmp_path, store_url, "--output", str(html_file)) == 0
        rows = list(csv.DictReader(io.StringIO(csv_file.read_text(encoding="utf-8"))))
        pairs = [r for r in rows if r["section"] in CONVERSION_SECTIONS]
        empty = [r for r in pairs if r["base"] == "0" and r["converted"] == "0"]
        assert 0 < len(empty) < len(pairs)
        notes = [
            left_out_note(count)
            for name in CONVERSION_SECTIONS
            if (count := sum(r["section"] == name for r in empty))
        ]
        over = [
            name
            for name in CONVERSION_SECTIONS
            if any(
                r["section"] == name
                and r["kind"] == "period"
                and r["rate"]
                and float(r["rate"]) > 1
                for r in pairs
            )
        ]
        assert over == ["conversion", "weekly_conversion"]
        page = html_file.read_text(encoding="utf-8")
        assert page.count("<p class=note>") == len(notes) + len(over)
        assert all(html.escape(note) in page for note in notes)
        assert page.count(html.escape(OVER_ONE)) == len(over)
        assert page.count("<tr>") == len(rows) - len(empty) + page.count("<table>")
        capsys.readouterr()
        assert run(tmp_path, store_url) == 0
        printed = capsys.readouterr().out.splitlines()
        assert [line for line in printed if "with no entry into either stage" in line] == notes
        assert printed.count(OVER_ONE) == len(over)

    def test_output_extension_names_the_format(
        self, engine: Engine, store_url: str, tmp_path: Path
    ) -> None:
        """`--output week.html` without `--format` writes the HTML report (it wrote the terminal
        tables into the .html file); .csv, .json and .txt likewise; `--format` that says the
        same as the extension too. A name without an extension (a device) takes `--format`,
        else the tables."""
        seed(engine)
        for name, start in [
            ("week.html", "<!doctype html>"),
            ("week.csv", "section,"),
            ("week.json", "{"),
            ("week.txt", "Funnel report "),
            ("week", "Funnel report "),
        ]:
            target = tmp_path / name
            assert run(tmp_path, store_url, "--output", str(target)) == 0
            assert target.read_text(encoding="utf-8").startswith(start), name
        target = tmp_path / "tables.TXT"
        assert run(tmp_path, store_url, "--format", "table", "--output", str(target)) == 0
        assert target.read_text(encoding="utf-8").startswith("Funnel report ")
        target = tmp_path / "data"
        assert run(tmp_path, store_url, "--format", "json", "--output", str(target)) == 0
        assert target.read_text(encoding="utf-8").startswith("{")

    def test_an_extension_no_format_has_is_refused(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`-o out.pdf` wrote box-drawn text into a .pdf and exited 0; `--format table -o
        tables.html` tables into a .html. Each is one line, exit 1, and no file is written."""
        seed(engine)
        for options, message in [
            (
                ["-o", str(tmp_path / "out.pdf")],
                f"error: --output {tmp_path / 'out.pdf'}: name the format by the file's "
                "extension, one of .txt, .csv, .json, .html",
            ),
            (
                ["--format", "table", "-o", str(tmp_path / "tables.html")],
                f"error: --output {tmp_path / 'tables.html'}: its extension names the html "
                "format, not --format table; give a file name ending in .txt",
            ),
            (
                ["--format", "csv", "-o", str(tmp_path / "out.json")],
                f"error: --output {tmp_path / 'out.json'}: its extension names the json "
                "format, not --format csv; give a file name ending in .csv",
            ),
        ]:
            assert run(tmp_path, store_url, *options) == 1
            assert capsys.readouterr().err.splitlines() == [message]
        assert not [path for path in tmp_path.iterdir() if path.name.startswith(("out", "tables"))]

    def test_csv_says_the_period_and_the_instant_it_was_read_at(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Every CSV row ends with the period and the as-of instant (the CSV had neither): the
        period's end when read after it, ``--now`` when that is earlier."""
        seed(engine)
        for now, as_of in [
            ([], "2026-03-09T09:00:00+00:00"),
            (["--now", "2026-03-05T07:00:00Z"], "2026-03-05T07:00:00+00:00"),
        ]:
            assert run(tmp_path, store_url, "--format", "csv", *now) == 0
            text = capsys.readouterr().out
            header = text.splitlines()[0].split(",")
            assert (header[0], header[-4:]) == (
                "section",
                ["period_from", "period_to", "as_of", "generated_at"],
            )
            rows = list(csv.DictReader(io.StringIO(text)))
            assert {(r["period_from"], r["period_to"], r["as_of"]) for r in rows} == {
                ("2026-03-02T09:00:00+00:00", "2026-03-09T09:00:00+00:00", as_of)
            }

    def test_tables_in_a_file_or_a_pipe_are_not_wrapped(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A rep's name, a source as long as a sentence: in a file or a pipe each row is one
        line (the table was laid out for 160 columns, then 80, and wrapped the cell)."""
        seed(engine)
        long_source = "a partner newsletter of the spring campaign, second mailing, " * 2
        with engine.begin() as connection:
            connection.execute(
                update(LEADS)
                .where(LEADS.c.id.in_([1, 2]))
                .values(attributes={"source": long_source})
            )
        target = tmp_path / "report.txt"
        assert run(tmp_path, store_url, "--by", "source", "-o", str(target)) == 0
        assert run(tmp_path, store_url, "--by", "source") == 0  # stdout: pytest's capture
        for text in (target.read_text(encoding="utf-8"), capsys.readouterr().out):
            pieces = [line for line in text.splitlines() if "newsletter" in line]
            assert pieces
            assert all(long_source.strip() in line for line in pieces)
            # the group's two MQLs on the line of its name
            assert any(re.search(r"newsletter.* │ mql\s+│\s+2 │", line) for line in pieces)

    def test_a_stall_stage_nothing_has_is_noted(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`--stall mq=2d` (a typo) changed nothing, silently; now a note names it. A lead stage
        is never noted, whether or not anything stayed in it."""
        seed(engine)
        options = ["--stall", "mq=2d", "--stall", "customer=2d", "--format", "json"]
        options += ["--stall", "Enagaging=90d", "--stall", "Engaging=90d", "--stall", "x=1d"]
        assert run(tmp_path, store_url, *options) == 0
        stages = (
            "lead stages are subscriber, lead, mql, sql, opportunity, customer, nurture, "
            "recycled, disqualified"
        )
        # Engaging, the configured open deal stage, is suggested though no deal stayed in it.
        assert capsys.readouterr().err.splitlines() == [
            "note: --stall Enagaging=...: no lead stage is named 'Enagaging' and no deal stayed"
            f" in such a stage; did you mean 'Engaging'? {stages}",
            "note: --stall Engaging=...: no lead stage is named 'Engaging' and no deal stayed"
            f" in such a stage; {stages}",
            "note: --stall mq=...: no lead stage is named 'mq' and no deal stayed in such a "
            f"stage; did you mean 'mql'? {stages}",
            "note: --stall x=...: no lead stage is named 'x' and no deal stayed in such a "
            f"stage; {stages}",
        ]


class TestBadOptions:
    """A wrong option is one line on stderr, exit 1."""

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (["--from", "2026-03-09", "--to", "2026-03-01"], "is not after --from"),
            # before the period: every figure empty and (before nothing after now was counted)
            # open ages of -10,061 days
            (
                ["--from", "2026-03-01", "--to", "2026-03-09", "--now", "1990-01-01"],
                "error: --now 1990-01-01 is before --from 2026-03-01: the period has not begun "
                "by then",
            ),
            (["--from", "March", "--to", "2026-03-01"], "--from: 'March' is not an ISO 8601 time"),
            (["--from", "2026-03-01", "--to", "2026-03-09", "--stall", "mql"], "--stall 'mql'"),
            (["--from", "2026-03-01", "--to", "2026-03-09", "--format", "html"], "--output"),
            (
                ["--from", "2026-03-01", "--to", "9999-12-31"],
                "9999-12-31 is the calendar's last day: a period must end before it",
            ),
            (
                ["--from", "2026-03-01", "--to", "2026-03-09", "-o", "/no-such-folder/r.csv"],
                "--output /no-such-folder/r.csv: the folder /no-such-folder does not exist",
            ),
            (
                ["--from", "2026-03-01", "--to", "2026-03-09", "--format", "csv", "-o", "/"],
                "--output / is a folder: give a file name",
            ),
            (
                ["--from", "2026-03-01", "--to", "2026-03-09", "--stall", "*=99999999999d"],
                "--stall '*=99999999999d': '99999999999d' is too long; at most 36525d (100 years)",
            ),
            (
                ["--from", "2026-03-01", "--to", "2026-03-09", "--stall", "mql=0d"],
                "--stall 'mql=0d': '0d': a duration must be longer than zero",
            ),
            # a write that fails although the checks before passed (a full disk): was a
            # traceback, for the tables and for the other formats alike
            (
                [
                    "--from",
                    "2026-03-01",
                    "--to",
                    "2026-03-09",
                    "--format",
                    "csv",
                    "-o",
                    "/dev/full",
                ],
                "--output /dev/full: cannot write it: No space left on device",
            ),
            (
                ["--from", "2026-03-01", "--to", "2026-03-09", "-o", "/dev/full"],
                "--output /dev/full: cannot write it: No space left on device",
            ),
        ],
    )
    def test_one_line(
        self,
        options: list[str],
        message: str,
        store_url: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Each mistake names the option."""
        code = main(["-c", config(tmp_path, store_url), "report", *options])
        err = capsys.readouterr().err
        assert code == 1
        assert message in err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the store plays no part
@pytest.mark.slow
def test_first_chart_on_a_new_machine_prints_nothing_but_the_report(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    """matplotlib builds its font cache on its first import and logs it; with the log going to
    stderr as JSON, a user's first ``report --format html`` printed a line about fonts."""
    seed(engine)
    target = tmp_path / "report.html"
    script = (
        "import sys; from leadflow.cli import main; "
        f"sys.exit(main(['-c', {config(tmp_path, store_url)!r}, 'report', *{PERIOD!r}, "
        f"'--output', {str(target)!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "MPLCONFIGDIR": str(tmp_path / "new-matplotlib-cache")},
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert (tmp_path / "new-matplotlib-cache").is_dir()  # the cache was built in this run
    assert target.read_text(encoding="utf-8").count("<svg") == 4


def test_amounts_stored_above_the_maximum_are_named_not_a_traceback(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two won deals of 1e308 (stored before the import refused them) made the won amount's
    sum too large for a float: ``OverflowError`` traceback, exit 1. Every format now says
    which deals in one line, exit 1."""
    from leadflow.store.tables import DEALS

    seed(engine)
    with engine.begin() as connection:
        connection.execute(
            update(DEALS).where(DEALS.c.external_id.in_(["D2", "D1"])).values(amount=1e308)
        )
    for options in (["--format", "json"], ["--format", "csv"], ["--format", "table"]):
        assert run(tmp_path, store_url, *options) == 1
        captured = capsys.readouterr()
        assert (captured.out, captured.err) == (
            "",
            "error: 2 deal(s) hold an amount above 1,000,000,000,000,000 (1e15), the most a "
            "deal's amount may be, stored before leadflow refused such amounts: D1, D2; the "
            "report's sums of them are no numbers. Correct their amounts (leadflow import, or "
            "POST /v1/deals) and run the report again\n",
        )
