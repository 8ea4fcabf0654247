"""The daemon logs the rule files' warnings (``leadflow check``'s ``warning:`` lines) when it
loads the rules at start and on the reload that brings a warning in, once each; ticks do not.

Found by testers: a value repeated in an ``in:`` list was said by ``leadflow check`` only, and
a daemon running such rules never said it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from structlog.testing import capture_logs

from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.service.daemon import Daemon
from leadflow.service.rule_reload import reload_snapshot
from tests.conftest import T0
from tests.http_support import http_settings

REPEATED = """\
rules:
  - id: qualify
    every: 5m
    when: {field: stage, in: [mql, mql]}
    actions: [set_stage: sql]
"""
ANOTHER = """\
rules:
  - id: recycle
    every: 5m
    when: {field: stage, not_in: [lead, lead]}
    actions: [set_stage: recycled]
"""
QUALIFY_WARNING = (
    "rule qualify: in: 'mql' is listed more than once (a repeat changes nothing; "
    "was another value meant?)"
)
RECYCLE_WARNING = (
    "rule recycle: not_in: 'lead' is listed more than once (a repeat changes nothing; "
    "was another value meant?)"
)


def _warned(logs: list[dict[str, Any]]) -> list[tuple[str, int, int, str, str]]:
    return [
        (Path(e["file"]).name, e["line"], e["column"], e["detail"], e["log_level"])
        for e in logs
        if e["event"] == "rule_file_warning"
    ]


def test_start_and_reload_log_each_rule_file_warning_once(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """At start: one ``rule_file_warning`` naming file, line, column and the rule, after
    ``daemon_started``, though the rule ran meanwhile; a reload of the same warnings says none
    again, one that adds a file with another warning says only that one; a tick says none."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "qualify.yaml").write_text(REPEATED, encoding="utf-8")
    settings = http_settings(make_settings, **{"http.enabled": False, "paths.rules": str(rules)})
    runtime = Runtime.build(engine, settings, SettableClock(T0))
    daemon = Daemon(runtime)

    async def run_briefly() -> None:
        asyncio.get_running_loop().call_later(1.0, daemon.request_stop)
        await daemon.run()

    with capture_logs() as started:
        asyncio.run(run_briefly())
    events = [entry["event"] for entry in started]
    assert "rule_evaluated" in events  # the rule ran: its evaluation repeats no warning
    assert events.index("daemon_started") < events.index("rule_file_warning")
    assert _warned(started) == [("qualify.yaml", 4, 36, QUALIFY_WARNING, "warning")]
    assert daemon.holder.status().warnings == (f"{rules / 'qualify.yaml'}:4:36: {QUALIFY_WARNING}",)

    (rules / "qualify.yaml").write_text("# edited\n" + REPEATED, encoding="utf-8")
    with capture_logs() as edited:
        assert reload_snapshot(runtime.load_rules, daemon.holder, warn=daemon.warnings)
    # The warning moved a line down: the reload brings it in again, at its new line.
    assert _warned(edited) == [("qualify.yaml", 5, 36, QUALIFY_WARNING, "warning")]

    with capture_logs() as same:
        assert reload_snapshot(runtime.load_rules, daemon.holder, warn=daemon.warnings)
    assert _warned(same) == []

    (rules / "recycle.yaml").write_text(ANOTHER, encoding="utf-8")
    with capture_logs() as added:
        assert reload_snapshot(runtime.load_rules, daemon.holder, warn=daemon.warnings)
    assert _warned(added) == [("recycle.yaml", 4, 41, RECYCLE_WARNING, "warning")]
    assert [e.get("generation") for e in added if e["event"] == "rule_file_warning"] == [4]

    with capture_logs() as ticked:
        run_due_rules(runtime, daemon.holder.current(), T0)
    assert "rule_evaluated" in [entry["event"] for entry in ticked]
    assert _warned(ticked) == []


def test_a_misspelt_activity_type_in_the_scoring_model_is_logged_too(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """``check``'s warning of an activity type a letter away from a known one was printed by
    the command alone, not part of the rule set's warnings: the daemon never said it."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "scoring.yaml").write_text(
        "scoring:\n  engagement:\n    - id: forms\n      activity: form_fil\n      points: 5\n",
        encoding="utf-8",
    )
    settings = http_settings(make_settings, **{"http.enabled": False, "paths.rules": str(rules)})
    runtime = Runtime.build(engine, settings, SettableClock(T0))
    daemon = Daemon(runtime)
    with capture_logs() as loaded:
        assert reload_snapshot(runtime.load_rules, daemon.holder, warn=daemon.warnings)
    assert _warned(loaded) == [
        (
            "scoring.yaml",
            3,
            7,
            "scoring: criterion forms: activity 'form_fil' is not a type leadflow knows; did "
            "you mean 'form_fill'? (a type your CRM sends is fine)",
            "warning",
        )
    ]
