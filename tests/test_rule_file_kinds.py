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
from pathlib import Path

import pytest

from leadflow.clock import SystemClock
from leadflow.rule_language.loader import MAX_RULE_FILE_BYTES, load_rule_set
from leadflow.rule_language.model import RuleSet
from leadflow.service.rule_reload import SnapshotHolder, reload_snapshot
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
        "rules/hot.yaml: is a folder, not a rule file: rename it, or move its files up"
    ]


def test_a_dangling_symbolic_link(rules: Path) -> None:
    (rules / "hot.yaml").unlink()
    (rules / "hot.yaml").symlink_to("..data/hot.yaml")
    assert problems(rules) == [
        "rules/hot.yaml: is a symbolic link to ..data/hot.yaml, which does not exist"
    ]


def test_a_symbolic_link_loop(rules: Path) -> None:
    (rules / "hot.yaml").unlink()
    (rules / "hot.yaml").symlink_to("loop.yaml")
    (rules / "loop.yaml").symlink_to("hot.yaml")
    loop = "is a symbolic link loop: point it at a rule file, or remove it"
    assert problems(rules) == [f"rules/hot.yaml: {loop}", f"rules/loop.yaml: {loop}"]


def test_a_pipe(rules: Path) -> None:
    (rules / "hot.yaml").unlink()
    os.mkfifo(rules / "hot.yaml")
    assert problems(rules) == [
        "rules/hot.yaml: is not a regular file (a pipe, socket or device): a rule file must be a file"
    ]


def test_a_file_that_cannot_be_read(rules: Path) -> None:
    # /proc/self/mem is a regular file whose read fails (EIO), whoever runs the test; a file
    # without read permission would not fail for root.
    (rules / "hot.yaml").unlink()
    (rules / "hot.yaml").symlink_to("/proc/self/mem")
    assert problems(rules) == ["rules/hot.yaml: cannot be read: Input/output error"]


def test_a_huge_file_is_refused_unread(rules: Path) -> None:
    size = MAX_RULE_FILE_BYTES + 1
    write(rules, "hot.yaml", GOOD + "#" * (size - len(GOOD) - 1) + "\n")
    assert problems(rules) == [
        "rules/hot.yaml: 1,048,577 bytes; a rule file is at most 1,048,576 bytes "
        "(split it into several files)"
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
        "rules/hot.yaml: is a folder, not a rule file: rename it, or move its files up",
    )
