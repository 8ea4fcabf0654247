"""``leadflow simulate``: the rules over a range on a copy; the real store is left untouched."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from leadflow.cli import main
from leadflow.clock import parse_instant
from leadflow.store.tables import AUDIT, LEADS, OUTBOX
from tests.test_funnel_scenario import REPO, seed

SIMULATED_ENTRIES = [{"group": "all", "stage": "mql", "entered": 3}]
"""L1, L3 and L4 become MQLs on Monday (L4 waits for a rep: an MQL all the same)."""
SIMULATED_SLA = [
    ("rep", "Raj Rep", 3, 2, 1),
    ("rep", "Rita Rep", 3, 2, 1),
    ("pool", "east", 6, 4, 2),
]
"""Each rep: Monday's timer and the one reassigned to them at 17:00 Monday were reassigned
(17:00 each day); the one reassigned to them Tuesday 17:00 still runs at the range's end."""


def config(tmp_path: Path, store_url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database: {{url: '{store_url}'}}\n"
        f"paths: {{rules: '{REPO / 'tests' / 'fixtures' / 'funnel_rules'}', templates: '{REPO / 'templates'}'}}\n"
        "calendar: {timezone: UTC}\n"
        "attributes: {leads: {region: string}}\n"
        "log: {level: error}\n",
        encoding="utf-8",
    )
    return path


def test_simulation_reports_each_day_and_writes_nothing(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two simulated days: exact counts per day, and the real store has no new row."""
    seed(engine)
    with engine.connect() as connection:
        before = connection.execute(
            select(LEADS.c.external_id, LEADS.c.stage, LEADS.c.owner_id).order_by(LEADS.c.id)
        ).all()
    code = main(
        [
            "-c",
            str(config(tmp_path, store_url)),
            "simulate",
            "--from",
            "2026-03-02T09:00:00Z",
            "--to",
            "2026-03-04T00:00:00Z",
            "--step",
            "1h",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    rows = [
        line.split()
        for line in out.splitlines()
        if line.strip().startswith(("Mon", "Tue", "total"))
    ]
    # Mon: L1 to Rita, L3 to Raj, L4 waits; Bob's welcome email. 13:00 reminders to both
    # owners, 15:00 their manager, 17:00 reassignment (each lead to the other rep) with fresh
    # SLAs due Tue 13:00, whose ladder climbs the same way on Tuesday.
    assert rows == [
        ["Mon", "02", "Mar", "2026", "2", "1", "6", "2", "0", "1", "0", "9"],
        ["Tue", "03", "Mar", "2026", "0", "0", "6", "2", "0", "0", "0", "6"],
        ["total", "2", "1", "12", "4", "0", "1", "0", "15"],
    ]
    with engine.connect() as connection:
        after = connection.execute(
            select(LEADS.c.external_id, LEADS.c.stage, LEADS.c.owner_id).order_by(LEADS.c.id)
        ).all()
        assert connection.execute(select(func.count()).select_from(AUDIT)).scalar_one() == 0
        assert connection.execute(select(func.count()).select_from(OUTBOX)).scalar_one() == 0
    assert after == before


def test_bad_range_is_one_clear_line(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A range that ends before it starts is a user error: exit 1, one line."""
    code = main(
        [
            "-c",
            str(config(tmp_path, store_url)),
            "simulate",
            "--from",
            "2026-03-04",
            "--to",
            "2026-03-02",
        ]
    )
    assert code == 1
    assert capsys.readouterr().err == "error: --to 2026-03-02 must be after --from 2026-03-04\n"


def test_a_zero_step_names_the_option(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["-c", str(config(tmp_path, store_url)), "simulate", "--from", "2026-03-02"]
    code = main([*argv, "--to", "2026-03-04", "--step", "0h"])
    assert code == 1
    assert capsys.readouterr().err == "error: --step: '0h': a duration must be longer than zero\n"


def test_simulation_as_json(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--format json``: the same two days as one document with stable keys, and totals."""
    seed(engine)
    path = str(config(tmp_path, store_url))
    range_ = ["--from", "2026-03-02T09:00:00Z", "--to", "2026-03-04T00:00:00Z"]
    code = main(["-c", path, "simulate", *range_, "--format", "json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert list(document) == ["rule_version", "from", "to", "step", "days", "totals", "failures"]
    assert document["failures"] == []
    assert (document["from"], document["to"], document["step"]) == (
        "2026-03-02T09:00:00+00:00",
        "2026-03-04T00:00:00+00:00",
        "1h",
    )
    assert document["days"] == [
        {
            "date": "2026-03-02",
            "mqls_assigned": 2,
            "mqls_waiting": 1,
            "sla_escalations": 6,
            "reassigned": 2,
            "deals_recycled": 0,
            "nurture_emails": 1,
            "nurture_skipped": 0,
            "emails_queued": 9,
        },
        {
            "date": "2026-03-03",
            "mqls_assigned": 0,
            "mqls_waiting": 0,
            "sla_escalations": 6,
            "reassigned": 2,
            "deals_recycled": 0,
            "nurture_emails": 0,
            "nurture_skipped": 0,
            "emails_queued": 6,
        },
    ]
    assert document["totals"] == {
        "mqls_assigned": 2,
        "mqls_waiting": 1,
        "sla_escalations": 12,
        "reassigned": 4,
        "deals_recycled": 0,
        "nurture_emails": 1,
        "nurture_skipped": 0,
        "emails_queued": 15,
    }


def _on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``leadflow ARGS`` with stdout and stderr on a pseudo-terminal; its exit code and text."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-c", "from leadflow.cli import run; run()", *args],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        cwd=cwd,
        env=env,
    )
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return process.wait(timeout=120), b"".join(chunks).decode()


@pytest.mark.slow
def test_no_info_log_lines_among_the_table_on_a_terminal(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    """On a terminal, ``log.level: info`` events stay out of the table; ``--verbose`` shows them."""
    seed(engine)
    path = config(tmp_path, store_url)
    path.write_text(path.read_text().replace("level: error", "level: info"), encoding="utf-8")
    args = [
        "-c",
        str(path),
        "simulate",
        "--from",
        "2026-03-02T09:00:00Z",
        "--to",
        "2026-03-02T12:00:00Z",
    ]
    code, shown = _on_a_terminal(args, tmp_path)
    assert code == 0, shown
    assert "rule_evaluated" not in shown
    assert "What the rules (version" in shown
    code, shown = _on_a_terminal([*args, "--verbose"], tmp_path)
    assert code == 0
    assert shown.count("rule_evaluated") >= 3


@pytest.mark.slow
def test_report_of_the_simulated_range_is_leadflow_reports(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--report FILE.json`` writes ``leadflow report --format json`` of the simulated copy
    over the range: the same document, figure for figure, as the report command gives on a copy
    ticked the same way; the narrated SLA ladder is in its SLA section."""
    from leadflow.clock import SettableClock
    from leadflow.config import load_settings
    from leadflow.engine.runtime import Runtime
    from leadflow.engine.simulation import copy_store, tick_over_range

    seed(engine)
    path = config(tmp_path, store_url)
    first, last = "2026-03-02T09:00:00Z", "2026-03-04T00:00:00Z"
    written = tmp_path / "week.json"
    code = main(
        ["-c", str(path), "simulate", "--from", first, "--to", last, "--report", str(written)]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"The funnel report of the simulated range: {written}" in out
    simulated = json.loads(written.read_text(encoding="utf-8"))

    # The same simulation on a copy that stays, then `leadflow report` over it.
    settings = load_settings(path, env={}).settings
    copy = copy_store(engine, tmp_path / "copy.db")
    start, end = parse_instant(first), parse_instant(last)
    runtime = Runtime.build(copy, settings, SettableClock(start))
    tick_over_range(runtime, runtime.load_rules(), start, end, timedelta(hours=1))
    copy.dispose()
    (tmp_path / "copy").mkdir()
    copy_config = config(tmp_path / "copy", f"sqlite:///{tmp_path / 'copy.db'}")
    code = main(
        ["-c", str(copy_config), "report", "--from", first, "--to", last, "--format", "json"]
    )
    reported = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {k: v for k, v in simulated.items() if k != "generated_at"} == {
        k: v for k, v in reported.items() if k != "generated_at"
    }
    assert simulated["period"] == {
        "from": "2026-03-02T09:00:00+00:00",
        "to": "2026-03-04T00:00:00+00:00",
        "by": "none",
        # The simulated clock ends at --to: what is open is measured there.
        "as_of": "2026-03-04T00:00:00+00:00",
    }
    assert simulated["stage_entries"] == SIMULATED_ENTRIES
    assert [
        (row["by"], row["group"], row["started"], row["reassigned"], row["running"])
        for row in simulated["sla"]
    ] == SIMULATED_SLA


def test_report_file_needs_a_known_extension(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report file named week.pdf is refused before anything is simulated: exit 1, one line."""
    args = ["simulate", "--from", "2026-03-02", "--to", "2026-03-03"]
    code = main(["-c", str(config(tmp_path, store_url)), *args, "--report", "week.pdf"])
    assert code == 1
    assert capsys.readouterr().err == (
        "error: --report week.pdf: name the format by the file's extension, "
        "one of .txt, .csv, .json, .html\n"
    )


def test_a_step_over_a_hundred_years_names_the_option(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--step 999999999d` overflowed the step arithmetic: a traceback."""
    argv = ["-c", str(config(tmp_path, store_url)), "simulate", "--from", "2026-03-02"]
    code = main([*argv, "--to", "2026-03-04", "--step", "999999999d"])
    assert code == 1
    assert capsys.readouterr().err == (
        "error: --step: '999999999d' is too long; at most 36525d (100 years)\n"
    )


def test_a_report_file_that_cannot_be_written_is_one_line(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A report file the checks before the simulation let through, whose write then fails (a
    full disk: here a name linked to /dev/full), was a traceback after the simulation."""
    full = tmp_path / "week.csv"
    full.symlink_to("/dev/full")
    args = ["simulate", "--from", "2026-03-02", "--to", "2026-03-03"]
    code = main(["-c", str(config(tmp_path, store_url)), *args, "--report", str(full)])
    assert code == 1
    assert capsys.readouterr().err == (
        f"error: --report {full}: cannot write it: No space left on device\n"
    )


END_OF_TIME = {
    "long-step": (
        ["--from", "2026-12-01", "--to", "9999-12-31", "--step", "3000d"],
        "error: --to 9999-12-31: give an instant from 1900-01-01 to 9000-01-01\n",
    ),
    "last-day": (
        ["--from", "9999-12-31T00:00:00Z", "--to", "9999-12-31T23:00:00Z", "--step", "6h"],
        "error: --from 9999-12-31T00:00:00Z: give an instant from 1900-01-01 to 9000-01-01\n",
    ),
    "before-1900": (
        ["--from", "1899-12-31", "--to", "1900-01-02"],
        "error: --from 1899-12-31: give an instant from 1900-01-01 to 9000-01-01\n",
    ),
}


@pytest.mark.parametrize("case", list(END_OF_TIME), ids=list(END_OF_TIME))
def test_a_range_near_the_calendars_ends_is_refused(
    case: str, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both ended in `OverflowError: date value out of range` (the clock's next step), the
    second after `sla_failed` tracebacks from the business hours of each tick."""
    args, error = END_OF_TIME[case]
    code = main(["-c", str(config(tmp_path, store_url)), "simulate", *args])
    captured = capsys.readouterr()
    assert (code, captured.out, captured.err) == (1, "", error)
