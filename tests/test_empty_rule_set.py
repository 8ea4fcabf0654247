"""A rule set without any rule is refused unless ``rules.allow_empty`` says so.

Pins (an outside tester's finds): ``leadflow check`` on an empty folder said ``0 rules, 0
streams OK``, the daemon started with no rules, and a folder emptied while it ran was reloaded
as a good set that dropped every rule job (docs/daemon.md: no rules silently stops MQL
assignment). A mis-cased ``mql.YAML`` was silently not read at all.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from leadflow.cli import main
from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.errors import ProblemsError
from leadflow.rule_language.loader import load_rule_set
from leadflow.rule_language.model import RuleSet
from leadflow.service.rule_reload import SnapshotHolder, reload_snapshot
from tests.conftest import T0

RULE = """\
rules:
  - id: hot-lead
    when: {field: score, at_least: 60}
    actions: [{set_stage: mql}]
"""
NO_FILE = (
    "no rules: no rule file (*.yaml, *.yml) in it; running without rules would silently stop "
    "every assignment and email (set rules.allow_empty: true in config.yaml to run so)"
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("", encoding="utf-8")
    (tmp_path / "rules").mkdir()
    (tmp_path / "templates").mkdir()
    return tmp_path


def test_check_refuses_an_empty_folder_and_accepts_it_when_allowed(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"rules: {NO_FILE}"
    (project / "config.yaml").write_text("rules:\n  allow_empty: true\n", encoding="utf-8")
    assert main(["check"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("0 rules, 0 streams OK")


def test_files_without_a_rule_are_refused_too(project: Path) -> None:
    (project / "rules" / "streams.yaml").write_text("rules: []\n", encoding="utf-8")
    settings = load_settings(project / "config.yaml", env={}).settings
    with pytest.raises(ProblemsError) as raised:
        load_rule_set(project / "rules", settings)
    assert [str(p) for p in raised.value.problems] == [
        "rules: no rules: its one file defines nothing; running without rules would "
        "silently stop every assignment and email (set rules.allow_empty: true in config.yaml "
        "to run so)"
    ]


def test_a_folder_emptied_while_running_keeps_the_last_good_set(project: Path) -> None:
    """``rm -rf rules; mkdir rules`` under a running daemon: refused, the status says why."""
    rules = project / "rules"
    (rules / "mql.yaml").write_text(RULE, encoding="utf-8")
    settings = load_settings(project / "config.yaml", env={}).settings
    holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=SettableClock(T0))
    assert reload_snapshot(lambda: load_rule_set(rules, settings), holder)
    good = holder.current()
    shutil.rmtree(rules)
    rules.mkdir()
    assert not reload_snapshot(lambda: load_rule_set(rules, settings), holder)
    assert holder.current() is good
    assert [rule.id for rule in holder.current().rules] == ["hot-lead"]
    assert holder.status().errors == (f"rules: {NO_FILE}",)


def test_a_mis_cased_extension_is_read(project: Path) -> None:
    (project / "rules" / "mql.YAML").write_text(RULE, encoding="utf-8")
    (project / "rules" / "more.Yml").write_text(
        RULE.replace("hot-lead", "warm-lead"), encoding="utf-8"
    )
    settings = load_settings(project / "config.yaml", env={}).settings
    rule_set = load_rule_set(project / "rules", settings)
    assert sorted(rule.id for rule in rule_set.rules) == ["hot-lead", "warm-lead"]
    assert rule_set.files == ("rules/more.Yml", "rules/mql.YAML")


DISABLED_SCORING = """\
scoring:
  enabled: false
  fit:
    - id: served-region
      when: {field: company, equals: Acme}
      points: 15
"""
DISABLED_ONLY = (
    "no rules: no rule or stream, and its scoring model is disabled (enabled: false); running "
    "without rules would silently stop every assignment and email (set rules.allow_empty: true "
    "in config.yaml to run so)"
)


def test_a_disabled_scoring_model_alone_is_an_empty_set(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The folder holding only scoring.yaml with ``enabled: false`` passed as ``0 rules, 0
    streams ... OK`` (and a reload to it unscheduled every rule): it runs nothing, so it is
    refused as an empty folder is, unless allowed; enabled, the model alone is a rule set."""
    scoring = project / "rules" / "scoring.yaml"
    scoring.write_text(DISABLED_SCORING, encoding="utf-8")
    assert main(["check"]) == 1
    assert capsys.readouterr().out.splitlines()[0] == f"rules: {DISABLED_ONLY}"
    settings = load_settings(project / "config.yaml", env={}).settings
    with pytest.raises(ProblemsError) as raised:
        load_rule_set(project / "rules", settings)
    assert [str(p) for p in raised.value.problems] == [f"rules: {DISABLED_ONLY}"]
    scoring.write_text(DISABLED_SCORING.replace("false", "true"), encoding="utf-8")
    enabled = load_rule_set(project / "rules", settings)
    assert (enabled.rules, enabled.scoring is not None) == ((), True)
    (project / "config.yaml").write_text("rules:\n  allow_empty: true\n", encoding="utf-8")
    scoring.write_text(DISABLED_SCORING, encoding="utf-8")
    assert main(["check"]) == 0


def test_a_reload_to_a_disabled_scoring_model_alone_keeps_the_last_good_set(
    project: Path,
) -> None:
    rules = project / "rules"
    (rules / "mql.yaml").write_text(RULE, encoding="utf-8")
    settings = load_settings(project / "config.yaml", env={}).settings
    holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=SettableClock(T0))
    assert reload_snapshot(lambda: load_rule_set(rules, settings), holder)
    good = holder.current()
    (rules / "mql.yaml").unlink()
    (rules / "scoring.yaml").write_text(DISABLED_SCORING, encoding="utf-8")
    assert not reload_snapshot(lambda: load_rule_set(rules, settings), holder)
    assert holder.current() is good
    assert holder.status().errors == (f"rules: {DISABLED_ONLY}",)
