"""``leadflow demo``, the README's first command: a sample funnel moving, shown day by day, with
the rules folder's scoring model turned on for the demo's own store: scores rise with
engagement and fade without it, and one followed lead crosses the MQL threshold."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mail_support import free_port

from leadflow.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_three_simulated_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deterministic sample gives the same days every time, its mail lands, the followed
    leads' scores move as their activities say, the user's scoring file stays disabled, and
    the report of the days ends the output."""
    monkeypatch.setenv("LEADFLOW_PATHS__STATE", str(tmp_path / "state"))
    monkeypatch.setenv("LEADFLOW_LOG__LEVEL", "error")
    scoring = (ROOT / "rules" / "scoring.yaml").read_bytes()
    code = main(["-c", str(ROOT / "config.yaml"), "demo", "--days", "3"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    state = tmp_path / "state" / "demo"
    mail = list((state / "maildir" / "new").glob("*.eml"))
    assert len(mail) == 1468  # the last step's mail too: the outbox is left empty
    assert f"1468 emails were delivered as .eml files into {state / 'maildir' / 'new'}." in out
    scores = [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in lines
        if line.startswith("│ L00")
    ]
    assert scores == [
        # engaged, then fading
        ["L00407", "66 = 25+41 A1", "65 = 25+40 A1", "63 = 25+38 A1", "63 = 25+38 A1"],
        # engaged weeks ago: fading
        ["L00412", "50 = 10+40 C1", "49 = 10+39 C1", "46 = 10+36 C1", "46 = 10+36 C1"],
        ["L00403", "25 = 25+0 A4", "25 = 25+0 A4", "25 = 25+0 A4", "25 = 25+0 A4"],  # fit only
    ]
    # Each followed lead's company under its id: lead N works at Customer N (was N - 1).
    companies = [
        lines[lines.index(line) + 1].split("│")[1].strip()
        for line in lines
        if line.startswith("│ L00")
    ]
    assert companies == [
        "Customer 7, East, @brightsoft.test",
        "Customer 12, Central, @gmail.com",
        "Customer 3, Central, @carewell.test",
    ]
    assert (
        "L00407 engaged on Mon 02 Mar (UTC): 07:00 25 (the model's first pass) -> "
        "09:00 27 (email_open, email_click) -> 11:00 31 (page_view /product, page_view /blog) "
        "-> 13:00 54 (download, form_fill) -> 15:00 66 (page_view /pricing); it crossed 60 and "
        "became an MQL in the same tick, assigned to Rep 11." in lines
    )
    assert (
        f"Why this score:       LEADFLOW_DATABASE__URL=sqlite:///{state / 'leadflow.db'} "
        "leadflow score explain L00407 --at 2026-03-02T15:00:00Z" in lines
    )
    assert any(
        re.fullmatch(
            r"Scoring: the model in \S*rules/scoring\.yaml runs turned on here \(enabled: true "
            r"for the demo's store only; your rules folder is unchanged\): score = fit \+ "
            r"engagement, engagement fades\.",
            line,
        )
        for line in lines
    )
    assert (ROOT / "rules" / "scoring.yaml").read_bytes() == scoring
    _ends_with_the_days_report(out, state, capsys, monkeypatch)
    _the_dashboard_command_leaves_the_store_as_it_is(out, state)


def cells(text: str) -> list[list[str]]:
    """The body rows of every table in ``text``, cell by cell."""
    return [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in text.splitlines()
        if line.startswith("│ ")
    ]


def _ends_with_the_days_report(
    out: str, state: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo ends with the report of its simulated days: stage entries, conversion, SLA by
    rep and the pipeline with its velocity, each row as `leadflow report` over the demo's store
    prints it."""
    heading = (
        "Funnel report 2026-03-02T00:00:00+00:00 to 2026-03-06T00:00:00+00:00 (end excluded), "
        "not grouped"
    )
    assert heading in out.splitlines()
    # Measured at the simulated clock's last instant, not at the midnight after it.
    assert (
        "As of 2026-03-05T07:00:00+00:00 (the period ends later): nothing after it is counted; "
        "open stays, deals and SLA timers are those open then." in out.splitlines()
    )
    shown = cells(out[out.index(heading) :])
    # Every sample lead entered its stage in the history at its stage_entered_at, as an import
    # records it (none had a row: lead -> mql had base 0 and rate "-"); 25 of them that day.
    assert shown[:3] == [["all", "lead", "25"], ["all", "mql", "129"], ["all", "recycled", "80"]]
    # The pairs with no entry on either side (sql -> opportunity, opportunity -> customer) are
    # left out of the table, and it says so.
    assert shown[3:8] == [
        ["cohort", "all", "lead", "mql", "25", "2", "8.0%"],
        ["cohort", "all", "mql", "sql", "128", "0", "0.0%"],  # 128 leads: one entered twice
        ["period", "all", "subscriber", "lead", "0", "25", "-"],
        # Most MQLs entered lead in the 40 days before the period: the note below says so.
        ["period", "all", "lead", "mql", "25", "129", "516.0%"],
        ["period", "all", "mql", "sql", "129", "0", "0.0%"],
    ]
    assert (
        "2 pairs with no entry into either stage in the period are not shown (--format csv and "
        "json list every pair)." in out.splitlines()
    )
    assert "A period rate above 100 % counts more entries into the later stage" in out
    rep_rows = shown[8:19]
    assert rep_rows[0] == ["rep", "Rep 01", "29", "5", "0", "0", "14", "1", "9", "25.0%", "0.00"]
    assert [row[0] for row in rep_rows] == ["rep"] * 11
    # Calls land 10-90 % into the step after the assignment; a call before Berlin's 09:00 is a
    # touch in no business time, so several reps' medians stay 0.
    assert [row[-1] for row in rep_rows] == [
        *["0.00"] * 4,
        *["0.08", "0.49", "0.00", "0.43", "0.16", "0.32", "0.00"],
    ]
    # D0173 (3,941 after a 50-day cycle) closed won on Wednesday, no deal lost: 35 open
    # opportunities x 100% x 3,941 / 50 days = 2,758.70 a day.
    assert shown[19:] == [
        ["all", "1", "0", "100.0%", "3,941.00", "3,941.00", "50.00", "35", "94,363.00", "2,758.70"]
    ]
    store = f"sqlite:///{state / 'leadflow.db'}"
    # The same days as the dashboard's link below: a report ending at 07:00 while the page
    # ended at midnight gave open ages of 5.00 days there and 5.71 here.
    period = ["--from", "2026-03-02", "--to", "2026-03-05"]
    monkeypatch.setenv("LEADFLOW_DATABASE__URL", store)
    assert main(["-c", str(ROOT / "config.yaml"), "report", *period]) == 0
    reported = cells(capsys.readouterr().out)
    assert all(row in reported for row in shown)
    assert [row for row in reported if row[0] == "rep"] == rep_rows
    # Open deals are in a pipeline stage: the sample's deals to be won later were "Won" while
    # still open, so the report listed 15 open deals in a "Won" stage.
    assert main(["-c", str(ROOT / "config.yaml"), "report", *period, "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    by_stage = document["open_value_by_stage"]
    assert [(row["stage"], row["open_deals"]) for row in by_stage] == [("Engaging", 35)]
    # Every sample deal entered Engaging at its engage date in the history, as an import
    # records the deals it creates: without it the deals' closes in the period came from no
    # stage and no deal's stay in the pipeline was measured.
    deal_entries = [(row["stage"], row["entered"]) for row in document["deal_stage_entries"]]
    assert deal_entries == [("won", 1), ("recycled", 80)]
    deal_times = [
        (row["stage"], row["left"], row["median_days"], row["open"], row["stalled"])
        for row in document["time_in_stage"]
        if row["subject"] == "deal"
    ]
    # 81 left it in the days: 80 recycled as idle (engaged up to 360 days before), D0173 won;
    # 35 are open, 30 of them past the 30-day stall age.
    assert deal_times == [("Engaging", 81, 238.0, 35, 30)]
    # The sample's leads carry a source and their campaign emails, guide and webinar a
    # campaign: the MQLs are credited to them, none to "(none)" at first touch.
    first_touch = {
        row["group"]: row["conversions"]
        for row in document["attribution"]
        if (row["model"], row["conversion"]) == ("first_touch", "mql")
    }
    assert first_touch == {
        "organic search": 23,
        "paid search": 21,
        "referral": 22,
        "trade show": 38,
        "webinar": 25,
    }
    assert sum(first_touch.values()) == 129  # every MQL of the entries above
    assert (
        f"The whole report:     LEADFLOW_DATABASE__URL={store} leadflow report {' '.join(period)}"
        in out
    )
    # The dashboard opens on the simulated days, not on the last 7 (empty) ones.
    assert (
        "then open 'http://127.0.0.1:8080/ui/funnel?from=2026-03-02&to=2026-03-05' "
        "(user demo, password demo)" in out
    )


def _store_state(database: Path) -> tuple[dict[str, int], int]:
    """Every table's row count and the newest audit row's id."""
    with sqlite3.connect(database) as store:
        tables = [
            name for (name,) in store.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        counts = {t: store.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        newest = store.execute("SELECT max(id) FROM audit_log").fetchone()[0]
    return counts, newest


def _the_dashboard_command_leaves_the_store_as_it_is(out: str, state: Path) -> None:
    """The dashboard command the demo prints serves the demo's store as the demo left it: it
    was ``leadflow daemon``, which ticked at today's date and ran the SLA checks, nurture steps
    and recycling due since the simulated days (86 SLA actions, 669 nurture steps). Run as
    printed (on a free port), signed in, its pages read, then stopped: nothing changed."""
    line = next(line for line in out.splitlines() if line.startswith("The dashboard:"))
    words = shlex.split(line.removeprefix("The dashboard:").split(", then open")[0])
    at = words.index("leadflow")
    assigned = dict(word.split("=", 1) for word in words[:at])
    assert words[at:] == ["leadflow", "dashboard", "serve", "--now", "2026-03-05T07:00:00Z"]
    before = _store_state(state / "leadflow.db")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env |= {**assigned, "LEADFLOW_HTTP__PORT": str(port), "LEADFLOW_LOG__LEVEL": "error"}
    script = "import sys; from leadflow.cli import main; sys.exit(main(sys.argv[1:]))"
    config = ["-c", str(ROOT / "config.yaml")]
    server = subprocess.Popen([sys.executable, "-c", script, *config, *words[at + 1 :]], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/ui/login")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the dashboard did not start"
                    time.sleep(0.1)
            login = {"username": "demo", "password": "demo", "next": "/ui/sla"}
            assert client.post("/ui/login", data=login).status_code == 303
            for page in ("/ui/sla", "/ui/rules", "/ui/outbox", "/ui/leads/L00407"):
                assert client.get(page).status_code == 200, page
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    assert _store_state(state / "leadflow.db") == before


def _demo_piped(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``leadflow demo --days 1`` with its output piped, as ``leadflow demo | less`` runs it."""
    script = (
        "import sys; from leadflow.cli import main; "
        f"sys.exit(main(['-c', {str(ROOT / 'config.yaml')!r}, 'demo', '--days', '1', "
        f"*{list(options)!r}]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**env, "LEADFLOW_PATHS__STATE": str(tmp_path / "state")},
    )


@pytest.mark.slow
def test_piped_the_demo_prints_its_summary_only_and_names_one_period(tmp_path: Path) -> None:
    """Piped, the demo printed 240 JSON log lines before its summary (on a terminal it was
    quiet): it logs warnings only unless --verbose, whatever its output. Its mail is all
    delivered (one email was left pending, unmentioned), and its report command and dashboard
    link name the same whole days (the report ended at 07:00, the page at midnight)."""
    done = _demo_piped(tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Sample funnel: 15 reps, 1,200 leads, 400 deals in ")
    assert not any(line.startswith("{") for line in lines)
    assert "pending" not in done.stdout
    with sqlite3.connect(tmp_path / "state" / "demo" / "leadflow.db") as store:
        statuses = dict(store.execute("SELECT status, count(*) FROM outbox GROUP BY status"))
    assert set(statuses) == {"sent"}
    assert any(
        "leadflow report --from 2026-03-02 --to 2026-03-03 --now 2026-03-03T07:00:00Z (--format html"
        in line
        for line in lines
    )
    assert any("/ui/funnel?from=2026-03-02&to=2026-03-03'" in line for line in lines)
    verbose = _demo_piped(tmp_path, "--verbose")
    assert verbose.returncode == 0
    events = [json.loads(line)["event"] for line in verbose.stderr.splitlines()]
    assert "rule_evaluated" in events


def test_mail_still_pending_at_the_end_is_named() -> None:
    """Mail the last delivery could not send yet (due later) is said, with when it is due."""
    from datetime import UTC, datetime

    from leadflow.cli.demo_command import _pending_text

    assert _pending_text(()) == ""
    assert _pending_text((datetime(2026, 3, 5, 9, 0, tzinfo=UTC),)) == (
        "; 1 email is still pending in the outbox, due from 2026-03-05 09:00 UTC, after the "
        "demo's last step (leadflow outbox lists it)"
    )


def test_outside_the_leadflow_folder_the_demo_says_where_its_rules_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run in an empty folder, the demo announced its sample funnel, made ``state/demo`` and
    only then failed with ``rules folder not found``; now it fails first, in one line that
    says where the rules it runs live, and makes nothing."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEADFLOW_PATHS__RULES", raising=False)
    assert main(["demo", "--days", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: {tmp_path / 'rules'}: rules folder not found; the demo runs the rules and"
        " templates shipped in the leadflow folder: run it there, or point paths.rules and"
        " paths.templates (LEADFLOW_PATHS__RULES, LEADFLOW_PATHS__TEMPLATES) at them\n"
    )
    assert list(tmp_path.iterdir()) == []
