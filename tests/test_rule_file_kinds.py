"""A name in the rules folder that looks like a rule file but cannot be read as one is a located
problem, never a silently smaller rule set.

Found by replacing ``rules/mql.yaml`` of a running daemon with a folder: ``leadflow check`` said
"2 rules ... OK" and the daemon hot-reloaded a set without the MQL rule, which stopped MQL
assignment with no error anywhere. A dangling symbolic link (a ConfigMap key removed, a
deployment's target gone) and a symlink loop did the same; a FIFO was skipped too. A file the
process may not read ended ``leadflow check`` with ``cannot write the output``, and a file of
several megabytes was parsed for minutes before its size was noticed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from leadflow.clock import SystemClock
from leadflow.errors import ProblemsError
from leadflow.mail.templates import TemplateCatalog
from leadflow.rule_language.loader import MAX_RULE_FILE_BYTES, load_rule_set
from leadflow.rule_language.model import RuleSet
from leadflow.service.rule_reload import SnapshotHolder, reload_snapshot
from leadflow.settings import Settings
from tests.test_funnel_scenario import REPO
from tests.test_rule_loader import GOOD, SETTINGS, problems, write

OTHER = GOOD.replace("hot-lead", "warm-lead")


@pytest.fixture
def rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``rules/`` with two good files; problems are labelled relative to its parent."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "rules"
    folder.mkdir()
    write(folder, "hot.yaml", GOOD)
    write(folder, "warm.yaml", OTHER)
    return folder


def test_the_good_folder_loads(rules: Path) -> None:
    assert [rule.id for rule in load_rule_set(rules, SETTINGS).rules] == ["hot-lead", "warm-lead"]


def test_a_rule_file_replaced_by_a_folder(rules: Path) -> None:
    (rules / "hot.yaml").unlink()
    (rules / "hot.yaml").mkdir()
    assert problems(rules) == [
        "rules/hot.yaml:1:1: is a folder, not a file: rename it, or move its files up"
    ]


def test_a_dangling_symbolic_link(rules: Path) -> None:
    (rules / "hot.yaml").unlink()
    (rules / "hot.yaml").symlink_to("..data/hot.yaml")
    assert problems(rules) == [
        "rules/hot.yaml:1:1: is a symbolic link to ..data/hot.yaml, which does not exist"
    ]


def test_a_symbolic_link_loop(rules: Path) -> None:
    (rules / "hot.yaml").unlink()
    (rules / "hot.yaml").symlink_to("loop.yaml")
    (rules / "loop.yaml").symlink_to("hot.yaml")
    loop = "is a symbolic link loop: point it at a file, or remove it"
    assert problems(rules) == [f"rules/hot.yaml:1:1: {loop}", f"rules/loop.yaml:1:1: {loop}"]


def test_a_pipe(rules: Path) -> None:
    (rules / "hot.yaml").unlink()
    os.mkfifo(rules / "hot.yaml")
    assert problems(rules) == [
        "rules/hot.yaml:1:1: is not a regular file (a pipe, socket or device)"
    ]


def test_a_file_that_cannot_be_read(rules: Path) -> None:
    # /proc/self/mem is a regular file whose read fails (EIO), whoever runs the test; a file
    # without read permission would not fail for root.
    (rules / "hot.yaml").unlink()
    (rules / "hot.yaml").symlink_to("/proc/self/mem")
    assert problems(rules) == ["rules/hot.yaml:1:1: cannot be read: Input/output error"]


def test_a_huge_file_is_refused_unread(rules: Path) -> None:
    size = MAX_RULE_FILE_BYTES + 1
    write(rules, "hot.yaml", GOOD + "#" * (size - len(GOOD) - 1) + "\n")
    assert problems(rules) == [
        "rules/hot.yaml:1:1: 1,048,577 bytes; a rule file is at most 1,048,576 bytes "
        "(split it into several files)"
    ]


def test_a_folder_holding_more_than_a_rules_folder_may_is_refused_unparsed(rules: Path) -> None:
    """Four files of a comment each just under the file limit, with the fixture's two: over
    the folder's 4 MiB in all, refused in one line before any is parsed (comments parse fast; a tester's
    sixty files of rules kept check busy for minutes)."""
    for name in ("a", "b", "c", "d"):
        write(rules, f"{name}.yaml", "#" * (MAX_RULE_FILE_BYTES - 1) + "\n")
    assert problems(rules) == [
        "rules: 6 rule files of 4,194,491 bytes in all; a rules folder holds at most 4,194,304 "
        "bytes of rules (is a generated or copied folder inside it?)"
    ]


def test_a_file_at_the_limit_loads(rules: Path) -> None:
    write(rules, "hot.yaml", GOOD + "#" * (MAX_RULE_FILE_BYTES - len(GOOD) - 1) + "\n")
    assert (rules / "hot.yaml").stat().st_size == MAX_RULE_FILE_BYTES
    assert [rule.id for rule in load_rule_set(rules, SETTINGS).rules] == ["hot-lead", "warm-lead"]


def test_hidden_names_are_still_skipped(rules: Path) -> None:
    # emacs' lock file is a dangling symbolic link named like the file it locks
    (rules / ".#hot.yaml").symlink_to("root@host.1234:1700000000")
    assert [rule.id for rule in load_rule_set(rules, SETTINGS).rules] == ["hot-lead", "warm-lead"]


def test_a_reload_keeps_the_last_good_set(rules: Path) -> None:
    holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=SystemClock())

    def load() -> RuleSet:
        return load_rule_set(rules, SETTINGS)

    assert reload_snapshot(load, holder)
    (rules / "hot.yaml").unlink()
    (rules / "hot.yaml").mkdir()
    assert not reload_snapshot(load, holder, changed=["hot.yaml"])
    assert [rule.id for rule in holder.current().rules] == ["hot-lead", "warm-lead"]
    assert holder.status().errors == (
        "rules/hot.yaml:1:1: is a folder, not a file: rename it, or move its files up",
    )


class TestTemplateParts:
    """The same for a template's parts: a part that is there but cannot be read was taken as
    absent. An HTML part turned into a link to nothing or a folder sent every email of the
    rule text-only; a text part with a byte that is not UTF-8 was reported by the daemon's
    reload as ``template 'mql_assigned' has no text part``."""

    @pytest.fixture
    def templates(self, tmp_path: Path) -> Path:
        folder = tmp_path / "templates"
        shutil.copytree(REPO / "templates", folder)
        return folder

    @pytest.mark.parametrize("frozen", [True, False], ids=["daemon", "check"])
    def test_a_good_template(self, templates: Path, frozen: bool) -> None:
        assert TemplateCatalog(templates, SETTINGS, frozen=frozen).check("mql_assigned") == []

    @pytest.mark.parametrize("frozen", [True, False], ids=["daemon", "check"])
    def test_a_text_part_not_utf8(self, templates: Path, frozen: bool) -> None:
        part = templates / "mql_assigned.txt"
        part.write_bytes(b"Hi {{ rep.name }},\ncaf\xe9\n")
        assert _check(templates, frozen) == [f"{part}:2:4: not UTF-8 text: save the file as UTF-8"]

    @pytest.mark.parametrize("frozen", [True, False], ids=["daemon", "check"])
    def test_an_html_part_linked_to_nothing(self, templates: Path, frozen: bool) -> None:
        part = templates / "mql_assigned.html"
        part.unlink()
        part.symlink_to("releases/mql_assigned.html")
        assert _check(templates, frozen) == [
            f"{part}: is a symbolic link to releases/mql_assigned.html, which does not exist"
        ]

    @pytest.mark.parametrize("frozen", [True, False], ids=["daemon", "check"])
    def test_an_html_part_that_is_a_folder(self, templates: Path, frozen: bool) -> None:
        part = templates / "mql_assigned.html"
        part.unlink()
        part.mkdir()
        assert _check(templates, frozen) == [
            f"{part}: is a folder, not a file: rename it, or move its files up"
        ]

    def test_the_daemon_refuses_the_set(self, tmp_path: Path, templates: Path) -> None:
        # What a reload runs: the rule set checked against a frozen copy of the templates.
        rules = tmp_path / "rules"
        shutil.copytree(REPO / "rules", rules)
        part = templates / "mql_assigned.html"
        part.unlink()
        part.symlink_to("nowhere")
        settings = Settings.model_validate(
            {"attributes": {"leads": {"region": "string"}}, "paths": {"templates": templates}}
        )
        catalog = TemplateCatalog(templates, settings, frozen=True)
        with pytest.raises(ProblemsError) as refused:
            load_rule_set(
                rules,
                settings,
                check_template=catalog.check,
                check_context=catalog.check_context,
            )
        assert [problem.message for problem in refused.value.problems] == [
            f"rule mql-assignment: template 'mql_assigned': {part}: "
            "is a symbolic link to nowhere, which does not exist"
        ]


def _check(templates: Path, frozen: bool) -> list[str]:
    catalog = TemplateCatalog(templates, SETTINGS, frozen=frozen)
    return [str(problem) for problem in catalog.check("mql_assigned")]
