"""``leadflow status`` shows the MQL queue, the outbox, SLA timers and each rule's last run."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from sqlalchemy import update

from leadflow.cli.status_command import render_operations, render_rules, rules_view
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.store.status import RuleRunStatus, collect_status
from leadflow.store.tables import RULE_RUNS
from tests.test_funnel_scenario import T0, runtime, seed  # noqa: F401 (the runtime fixture)


def test_queue_outbox_slas_and_rule_runs(runtime: Runtime) -> None:  # noqa: F811 (fixture)
    """After one evaluation of the shipped rules on the hand-made funnel: exact sections."""
    seed(runtime.engine)
    rule_set = runtime.load_rules()
    run_due_rules(runtime, rule_set, T0)
    status = collect_status(runtime.engine)
    v = rule_set.version
    assert status.mql_queue == [("L4", T0)]
    assert status.mql_queue_total == 1
    assert status.outbox_by_status == {"pending": 2}
    assert status.oldest_pending_at == T0
    assert status.slas_by_status == {"running": 2}
    assert status.rule_runs == [
        RuleRunStatus("mql-assignment", v, T0, "ok", 3, None, None, T0, every(300)),
        RuleRunStatus("nurture-new-leads", v, T0, "ok", 1, None, None, T0, every(900)),
        RuleRunStatus("recycle-idle-deals", v, T0, "ok", 0, None, None, T0, every(3600)),
    ]
    console = Console(width=200, record=True)
    render_operations(status, console)
    render_rules(rules_view(runtime, status), console)
    lines = console.export_text().splitlines()
    assert lines[:5] == [
        "MQLs waiting for a rep: 1: L4 (since 2026-03-02 09:00 UTC)",
        "outbox: pending 2; oldest unsent queued 2026-03-02 09:00 UTC",
        "SLA timers: running 2",
        f"rules folder: 3 enabled rule(s), version {rule_set.version}",
        f"last evaluated: version {rule_set.version} at 2026-03-02 09:00 UTC",
    ]
    assert [line.split() for line in lines[5:9]] == [
        HEADER,
        ["mql-assignment", "every", "5m", *AT_T0, "2026-03-02", "09:05", "ok", "3", v],
        ["nurture-new-leads", "every", "15m", *AT_T0, "2026-03-02", "09:15", "ok", "1", v],
        ["recycle-idle-deals", "every", "1h", *AT_T0, "2026-03-02", "10:00", "ok", "0", v],
    ]


AT_T0 = ["2026-03-02", "09:00"]


def every(seconds: int) -> str:
    """An interval schedule as ``rule_runs.schedule`` keeps it."""
    return f'{{"every_seconds": {float(seconds)}}}'


HEADER = [
    "rule",
    "schedule",
    "last",
    "run",
    "(UTC)",
    "next",
    "run",
    "(UTC)",
    "status",
    "matched",
    "version",
    "run",
    "error",
]


def test_rules_never_run_and_due_again(runtime: Runtime) -> None:  # noqa: F811 (fixture)
    """Before any run every enabled rule is due now; an hour later the 5m rule is due again."""
    seed(runtime.engine)
    console = Console(width=200, record=True)
    render_rules(rules_view(runtime, collect_status(runtime.engine)), console)
    rows = [line.split()[:5] for line in console.export_text().splitlines()[2:]]
    assert rows == [
        ["mql-assignment", "every", "5m", "never", "due"],
        ["nurture-new-leads", "every", "15m", "never", "due"],
        ["recycle-idle-deals", "every", "1h", "never", "due"],
    ]
    run_due_rules(runtime, runtime.load_rules(), T0, only=["mql-assignment"])
    runtime.clock.advance(timedelta(hours=1))  # type: ignore[attr-defined]
    console = Console(width=200, record=True)
    render_rules(rules_view(runtime, collect_status(runtime.engine)), console)
    lines = console.export_text().splitlines()
    assert (
        lines[1]
        == f"last evaluated: version {runtime.load_rules().version} at 2026-03-02 09:00 UTC"
    )
    first = lines[3].split()
    assert first[:7] == ["mql-assignment", "every", "5m", *AT_T0, "due", "now"]


def test_refused_folder_shows_the_rules_still_running(
    runtime: Runtime,  # noqa: F811 (fixture)
    tmp_path: Path,
) -> None:
    """While the folder is refused, status names each problem and the version last evaluated."""
    seed(runtime.engine)
    rule_set = runtime.load_rules()
    run_due_rules(runtime, rule_set, T0)
    broken = tmp_path / "rules"
    shutil.copytree(runtime.settings.path(runtime.settings.paths.rules), broken)
    mql = broken / "mql.yaml"
    mql.write_text(
        mql.read_text(encoding="utf-8").replace("every: 5m", "every: soon"), encoding="utf-8"
    )
    later = replace(
        runtime,
        settings=runtime.settings.model_copy(
            update={"paths": runtime.settings.paths.model_copy(update={"rules": broken})}
        ),
    )
    # Wide enough for the problem's line whatever the length of pytest's temporary path (under
    # two workers it gains a popen-gwN folder, and a numbered run folder grows a digit).
    console = Console(width=400, record=True)
    render_rules(rules_view(later, collect_status(runtime.engine)), console)
    lines = console.export_text().splitlines()
    assert lines[0] == (
        "rules folder: REFUSED, 1 problem(s); a running daemon keeps its last good rules"
    )
    assert lines[1].startswith(f"  {mql}:")
    assert lines[1].endswith(
        "'soon' is not a duration; write a number and a unit (s, m, h, d, w), e.g. 90m"
    )
    assert lines[2] == (
        f"last evaluated: version {rule_set.version} at 2026-03-02 09:00 UTC (the rules still running)"
    )
    # Each rule that ran: not "(not enabled in the folder)", which the refusal does not say,
    # nor "-" for its next run: the schedule it last ran on is kept with its run.
    v = rule_set.version
    assert [line.split() for line in lines[4:7]] == [
        ["mql-assignment", "every", "5m", *AS_RUN, *AT_T0, "2026-03-02", "09:05", "ok", "3", v],
        ["nurture-new-leads", "every", "15m", *AS_RUN, *AT_T0, "2026-03-02", "09:15", "ok", "1", v],
        ["recycle-idle-deals", "every", "1h", *AS_RUN, *AT_T0, "2026-03-02", "10:00", "ok", "0", v],
    ]
    assert "not enabled" not in console.export_text()


AS_RUN = ["(as", "it", "last", "ran)"]


def test_a_refused_folder_and_a_rule_run_before_schedules_were_kept(
    runtime: Runtime,  # noqa: F811 (fixture)
    tmp_path: Path,
) -> None:
    """A run recorded before ``rule_runs.schedule`` existed (or a row whose schedule does not
    read) says it does not know, and no next run, rather than guessing."""
    seed(runtime.engine)
    run_due_rules(runtime, runtime.load_rules(), T0, only=["mql-assignment"])
    with runtime.engine.begin() as connection:
        connection.execute(update(RULE_RUNS).values(schedule=None))
    broken = tmp_path / "rules"
    shutil.copytree(runtime.settings.path(runtime.settings.paths.rules), broken)
    (broken / "mql.yaml").write_text("rules: [", encoding="utf-8")
    later = replace(
        runtime,
        settings=runtime.settings.model_copy(
            update={"paths": runtime.settings.paths.model_copy(update={"rules": broken})}
        ),
    )
    view = rules_view(later, collect_status(runtime.engine))
    assert [(line.rule_id, line.schedule, line.next_run) for line in view.lines] == [
        ("mql-assignment", "(unknown: the folder is refused)", None)
    ]
