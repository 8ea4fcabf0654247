"""Hot reload of an immutable snapshot, against a real folder watched by watchfiles.

The loader here is written in the test (every ``*.yaml`` of the folder through yaml.safe_load,
bad YAML raised as ProblemsError), so these tests pin the reload mechanism, not the rule
language. Waiting is a bounded poll with a deadline; the watcher's readiness is proven by an
ignored probe file reaching the filter, so no test sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs
from watchfiles import Change

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.errors import ConfigError, NoSnapshotError, Problem, ProblemsError
from leadflow.rule_language.loader import load_rule_set
from leadflow.rule_language.model import RuleSet
from leadflow.service.rule_reload import (
    LoadWarning,
    ReloadStatus,
    RuleFolderFilter,
    SnapshotHolder,
    reload_snapshot,
    watch_and_reload,
)
from leadflow.settings import Settings

Snapshot = MappingProxyType[str, Any]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class RuleFiles:
    """A stand-in for the rule loader: ``{file name: parsed YAML}`` of every visible ``*.yaml``.

    Like the real loader it must skip hidden names: emacs' ``.#x.yaml`` lock is a dangling
    symlink, and pathlib's glob does match dot files.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calls = 0
        self.loaded: list[dict[str, Any]] = []

    def __call__(self) -> Snapshot:
        self.calls += 1
        parsed: dict[str, Any] = {}
        problems = []
        for path in sorted(self.folder.glob("*.yaml")):
            if path.name.startswith("."):
                continue
            try:
                parsed[path.name] = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark
                line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
                problems.append(Problem(path.name, line, column, f"invalid YAML: {exc.problem}"))
        if problems:
            raise ProblemsError(problems)
        self.loaded.append(parsed)
        return MappingProxyType(parsed)


class SeenEvents:
    """The real filter, recording each raw event it judged: (path below the folder, verdict)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.real = RuleFolderFilter([folder])
        self.seen: list[tuple[str, bool]] = []

    def __call__(self, change: Change, path: str) -> bool:
        verdict = self.real(change, path)
        self.seen.append((os.path.relpath(path, self.folder), verdict))
        return verdict

    def saw(self, prefix: str) -> bool:
        return any(path.startswith(prefix) for path, _ in self.seen)


async def eventually(condition: Callable[[], bool], what: str, within: float = 3.0) -> float:
    """Poll ``condition`` until it holds; return the seconds it took; fail at the deadline."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


@asynccontextmanager
async def watching(
    folder: Path, load: RuleFiles, holder: SnapshotHolder[Snapshot]
) -> AsyncIterator[SeenEvents]:
    """Run watch_and_reload on ``folder`` until the block ends; enter once it sees events."""
    spy = SeenEvents(folder)
    stop = asyncio.Event()
    task = asyncio.create_task(watch_and_reload([folder], load, holder, stop, watch_filter=spy))
    probe = folder / "watcher-probe~"  # an editor backup name: seen by the filter, never loaded

    def probe_seen() -> bool:
        if task.done():
            task.result()  # surface a watcher that died at start
        write(probe, str(time.monotonic()))
        return spy.saw(probe.name)

    await eventually(probe_seen, "the watcher sees the probe file")
    try:
        yield spy
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=2)


def write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def good_start(folder: Path) -> tuple[RuleFiles, SnapshotHolder[Snapshot]]:
    write(folder / "mql.yaml", "threshold: 50\n")
    load = RuleFiles(folder)
    holder: SnapshotHolder[Snapshot] = SnapshotHolder(clock=SettableClock(T0))
    assert reload_snapshot(load, holder)
    return load, holder


class TestSnapshotHolder:
    """A refused set keeps the last good snapshot; errors, counters and times say what happened."""

    def test_nothing_loaded_yet(self) -> None:
        holder: SnapshotHolder[Snapshot] = SnapshotHolder(clock=SettableClock(T0))
        assert holder.status() == ReloadStatus(0, 0, 0, (), False, None, None)
        assert holder.current_or_none() is None
        with pytest.raises(NoSnapshotError) as caught:
            holder.current()
        assert str(caught.value) == (
            "no rule set has loaded successfully yet: no load was attempted yet"
        )

    def test_refused_then_recovered(self, tmp_path: Path) -> None:
        clock = SettableClock(T0)
        holder: SnapshotHolder[Snapshot] = SnapshotHolder(clock=clock)
        load = RuleFiles(tmp_path)
        write(tmp_path / "mql.yaml", "threshold: 50\n")
        with capture_logs() as logs:
            assert reload_snapshot(load, holder, changed=["/rules/mql.yaml"])
            first = holder.current()
            clock.advance(timedelta(minutes=5))
            write(tmp_path / "mql.yaml", "threshold: [50\nowner: x\n")
            assert not reload_snapshot(load, holder)
            refused = holder.status()
            clock.advance(timedelta(minutes=5))
            write(tmp_path / "mql.yaml", "threshold: 60\n")
            assert reload_snapshot(load, holder)
        error = "mql.yaml:2:6: invalid YAML: expected ',' or ']', but got ':'"
        assert first == {"mql.yaml": {"threshold": 50}}
        assert refused == ReloadStatus(1, 1, 1, (error,), True, T0 + timedelta(minutes=5), T0)
        assert holder.current() == {"mql.yaml": {"threshold": 60}}
        assert holder.status() == ReloadStatus(
            2, 2, 1, (), False, T0 + timedelta(minutes=10), T0 + timedelta(minutes=10)
        )
        for entry in logs:
            if entry["event"] == "rules_reloaded":
                assert isinstance(entry.pop("elapsed_ms"), float)
        assert logs == [
            {
                "event": "rules_reloaded",
                "generation": 1,
                "changed": ["/rules/mql.yaml"],
                "log_level": "info",
            },
            {
                "event": "rules_reload_failed",
                "errors": [error],
                "failures": 1,
                "changed": [],
                "log_level": "error",
            },
            {"event": "rules_reloaded", "generation": 2, "changed": [], "log_level": "info"},
        ]

    def test_a_warning_is_logged_by_the_reload_that_brings_it_in(self, tmp_path: Path) -> None:
        """A good set's warning is logged once, by the reload that introduces it, under its
        event name; it stays with the status (a refused change included) until a reload no
        longer earns it, and is logged again if a later reload brings it back."""
        holder: SnapshotHolder[Snapshot] = SnapshotHolder(clock=SettableClock(T0))
        load = RuleFiles(tmp_path)

        def warn(snapshot: Snapshot) -> list[LoadWarning]:
            high = snapshot["mql.yaml"]["threshold"] > 90
            said = "a threshold above 90 qualifies nobody"
            return [LoadWarning.detailed("threshold_high", said)] if high else []

        statuses = []
        with capture_logs() as logs:
            for text in ["50", "95", "96", "[", "40", "99"]:
                write(tmp_path / "mql.yaml", f"threshold: {text}\n")
                reload_snapshot(load, holder, warn=warn)
                statuses.append(holder.status().warnings)
        high = "a threshold above 90 qualifies nobody"
        assert statuses == [(), (high,), (high,), (high,), (), (high,)]
        assert [
            (entry["detail"], entry["generation"], entry["log_level"])
            for entry in logs
            if entry["event"] == "threshold_high"
        ] == [(high, 2, "warning"), (high, 5, "warning")]

    def test_a_loader_bug_is_logged_with_its_traceback_and_counted(self, tmp_path: Path) -> None:
        _, holder = good_start(tmp_path)

        def broken_loader() -> Snapshot:
            raise KeyError("rules")

        with capture_logs() as logs:
            assert not reload_snapshot(broken_loader, holder)
        assert holder.current() == {"mql.yaml": {"threshold": 50}}
        assert holder.status().errors == ("unexpected error while loading: KeyError('rules')",)
        assert holder.status().failures == 1
        [logged] = logs
        assert isinstance(logged.pop("exc_info"), KeyError)  # a bug: with its traceback
        assert logged == {
            "event": "rules_reload_failed",
            "error": "KeyError: 'rules'",
            "failures": 1,
            "changed": [],
            "log_level": "error",
        }

    def test_a_failing_warning_check_does_not_refuse_a_good_set(self, tmp_path: Path) -> None:
        """A bug in the warnings of a good set (here a check raising) was taken for a loader
        crash and the set refused; the set is swapped in and the bug logged once, after it."""
        load, holder = good_start(tmp_path)
        write(tmp_path / "mql.yaml", "threshold: 70\n")

        def broken_warn(snapshot: Snapshot) -> list[LoadWarning]:
            raise KeyError("unsubscribe_url")

        with capture_logs() as logs:
            assert reload_snapshot(load, holder, warn=broken_warn)
        assert holder.current() == {"mql.yaml": {"threshold": 70}}
        status = holder.status()
        assert (status.generation, status.failures, status.errors, status.warnings) == (
            2,
            0,
            (),
            (),
        )
        reloaded, failed = logs
        assert reloaded["event"] == "rules_reloaded"
        assert isinstance(failed.pop("exc_info"), KeyError)  # a bug: with its traceback
        assert failed == {
            "event": "rules_warnings_failed",
            "error": "KeyError: 'unsubscribe_url'",
            "generation": 2,
            "log_level": "error",
        }

    def test_an_evaluation_keeps_the_snapshot_it_took(self, tmp_path: Path) -> None:
        load, holder = good_start(tmp_path)
        in_use = holder.current()
        write(tmp_path / "mql.yaml", "threshold: 70\n")
        assert reload_snapshot(load, holder)
        assert in_use == {"mql.yaml": {"threshold": 50}}
        assert holder.current() == {"mql.yaml": {"threshold": 70}}
        assert holder.current() is not in_use


class TestWatchedFolder:
    """Saved changes are live within 2 s; broken ones are refused; editor litter is ignored."""

    def test_a_saved_change_is_active_within_two_seconds(self, tmp_path: Path) -> None:
        load, holder = good_start(tmp_path)

        async def scenario() -> float:
            async with watching(tmp_path, load, holder):
                write(tmp_path / "mql.yaml", "threshold: 65\n")
                return await eventually(
                    lambda: holder.current() == {"mql.yaml": {"threshold": 65}}, "the new value"
                )

        took = asyncio.run(scenario())
        assert took < 2.0, f"the change took {took:.3f} s to become active"
        assert load.loaded == [{"mql.yaml": {"threshold": 50}}, {"mql.yaml": {"threshold": 65}}]

    def test_a_broken_change_is_refused_and_the_fix_is_applied(self, tmp_path: Path) -> None:
        load, holder = good_start(tmp_path)
        good = holder.current()

        async def scenario() -> None:
            async with watching(tmp_path, load, holder):
                write(tmp_path / "mql.yaml", "threshold: 50\n  owner: [x\n")
                await eventually(lambda: holder.status().failures == 1, "the refusal")
                assert holder.current() is good
                assert holder.status().errors == (
                    "mql.yaml:2:8: invalid YAML: mapping values are not allowed here",
                )
                write(tmp_path / "mql.yaml", "threshold: 55\n")
                await eventually(lambda: holder.status().successes == 2, "the fixed set")

        with capture_logs() as logs:
            asyncio.run(scenario())
        assert holder.current() == {"mql.yaml": {"threshold": 55}}
        assert holder.status().errors == ()
        assert not holder.status().last_attempt_failed
        events = [(entry["event"], entry.get("errors")) for entry in logs]
        assert events == [
            ("rule_watch_started", None),
            (
                "rules_reload_failed",
                ["mql.yaml:2:8: invalid YAML: mapping values are not allowed here"],
            ),
            ("rules_reloaded", None),
            ("rule_watch_stopped", None),
        ]

    def test_editor_leftovers_do_not_reload(self, tmp_path: Path) -> None:
        load, holder = good_start(tmp_path)
        leftovers = [
            ".mql.yaml.swp",
            ".mql.yaml.swx",
            "4913",
            "mql.yaml~",
            "#mql.yaml#",
            "mql.yaml___jb_tmp___",
            "mql.yaml___jb_old___",
            ".DS_Store",
            "mql.yaml.tmp",
            "mql.yaml.tmp.8f3a2c",
        ]

        async def scenario() -> None:
            async with watching(tmp_path, load, holder) as spy:
                for name in leftovers:
                    write(tmp_path / name, "threshold: 99\n")
                (tmp_path / ".#mql.yaml").symlink_to("ops@laptop.4242:1770000000")
                (tmp_path / "4913").unlink()
                every = [*leftovers, ".#mql.yaml"]
                await eventually(lambda: all(spy.saw(name) for name in every), "all leftovers")
                assert {path for path, verdict in spy.seen if verdict} == set()
                # Only now a real change: its reload must be the first one since the start.
                write(tmp_path / "scoring.yaml", "visit: 1\n")
                await eventually(lambda: holder.status().successes == 2, "the real change")

        asyncio.run(scenario())
        assert load.calls == 2
        assert holder.current() == {
            "mql.yaml": {"threshold": 50},
            "scoring.yaml": {"visit": 1},
        }

    def test_editors_atomic_saves_are_not_hidden(self, tmp_path: Path) -> None:
        load, holder = good_start(tmp_path)
        rules = tmp_path / "mql.yaml"

        def threshold_is(value: int) -> Callable[[], bool]:
            return lambda: holder.current() == {"mql.yaml": {"threshold": value}}

        async def scenario() -> None:
            async with watching(tmp_path, load, holder):
                # vim (backupcopy=no): rename to a backup, write anew, drop the backup.
                rules.rename(tmp_path / "mql.yaml~")
                write(rules, "threshold: 51\n")
                (tmp_path / "mql.yaml~").unlink()
                await eventually(threshold_is(51), "vim's save")
                # JetBrains safe write.
                write(tmp_path / "mql.yaml___jb_tmp___", "threshold: 52\n")
                rules.rename(tmp_path / "mql.yaml___jb_old___")
                (tmp_path / "mql.yaml___jb_tmp___").rename(rules)
                (tmp_path / "mql.yaml___jb_old___").unlink()
                await eventually(threshold_is(52), "JetBrains' save")
                # Write a temporary file, rename it over the original.
                write(tmp_path / "mql.yaml.tmp.1a2b", "threshold: 53\n")
                (tmp_path / "mql.yaml.tmp.1a2b").replace(rules)
                await eventually(threshold_is(53), "an atomic rename")

        asyncio.run(scenario())
        assert holder.status().failures == 0

    def test_sed_in_place_reloads_once_naming_the_file_once(self, tmp_path: Path) -> None:
        """``sed -i`` writes a ``sedXXXXXX`` temporary and renames it over the file: one reload,
        whose log names the rule file alone (it named the temporary twice)."""
        load, holder = good_start(tmp_path)

        async def scenario() -> None:
            async with watching(tmp_path, load, holder):
                sed = await asyncio.create_subprocess_exec(
                    "sed", "-i", "s/50/57/", str(tmp_path / "mql.yaml")
                )
                assert await sed.wait() == 0
                await eventually(lambda: holder.status().successes == 2, "sed's edit")

        with capture_logs() as logs:
            asyncio.run(scenario())
        assert holder.current() == {"mql.yaml": {"threshold": 57}}
        [reloaded] = [entry for entry in logs if entry["event"] == "rules_reloaded"]
        assert reloaded["changed"] == [str(tmp_path / "mql.yaml")]


def configmap_version(folder: Path, stamp: str, threshold: int) -> str:
    """Write one ConfigMap revision the way the kubelet does: a hidden timestamped folder."""
    name = f"..2026_11_23_{stamp}.{threshold}"
    (folder / name).mkdir()
    write(folder / name / "mql.yaml", f"threshold: {threshold}\n")
    return name


def swap_data_link(folder: Path, target: str) -> None:
    """The kubelet's atomic update: a new ``..data_tmp`` link renamed over ``..data``."""
    (folder / "..data_tmp").symlink_to(target)
    (folder / "..data_tmp").rename(folder / "..data")


class TestConfigMapVolume:
    """A ConfigMap update is one reload with the new content; its hidden folders add none."""

    def test_a_data_link_swap_reloads_exactly_once(self, tmp_path: Path) -> None:
        first = configmap_version(tmp_path, "10_00_00", 50)
        (tmp_path / "..data").symlink_to(first)
        (tmp_path / "mql.yaml").symlink_to("..data/mql.yaml")  # never changes afterwards
        load = RuleFiles(tmp_path)
        holder: SnapshotHolder[Snapshot] = SnapshotHolder(clock=SettableClock(T0))
        assert reload_snapshot(load, holder)

        async def scenario() -> float:
            async with watching(tmp_path, load, holder) as spy:
                # Step by step, each seen by the watcher before the next, so that a filter
                # letting any of them through would show up as an extra reload.
                second = configmap_version(tmp_path, "10_05_00", 60)
                await eventually(lambda: spy.saw(second), "the new hidden folder")
                swapped_at = time.monotonic()
                swap_data_link(tmp_path, second)
                await eventually(lambda: holder.status().successes == 2, "the swap's reload")
                took = time.monotonic() - swapped_at
                shutil.rmtree(tmp_path / first)
                await eventually(lambda: spy.saw(first) or spy.saw("..data/"), "the clean-up")
                # A second update done at kubelet speed, then nothing else may have reloaded.
                third = configmap_version(tmp_path, "10_10_00", 70)
                swap_data_link(tmp_path, third)
                shutil.rmtree(tmp_path / second)
                await eventually(lambda: holder.status().successes == 3, "the second update")
                return took

        took = asyncio.run(scenario())
        assert took < 2.0, f"the swap took {took:.3f} s to become active"
        assert load.loaded == [
            {"mql.yaml": {"threshold": 50}},
            {"mql.yaml": {"threshold": 60}},
            {"mql.yaml": {"threshold": 70}},
        ]
        assert load.calls == 3

    @pytest.mark.parametrize(
        ("path", "counts"),
        [
            ("..data", True),
            ("..data_tmp", False),
            ("..data/mql.yaml", False),
            ("..2026_11_23_10_05_00.123/mql.yaml", False),
            ("mql.yaml", True),
            ("templates/mql.html.j2", True),
            ("nurture/welcome.yml", True),
            ("team/..data", True),
            (".git/index", False),
            ("sedXq3b9Z", False),
            ("sedan.yaml", True),
        ],
    )
    def test_which_paths_count(self, tmp_path: Path, path: str, counts: bool) -> None:
        judge = RuleFolderFilter([tmp_path])
        assert judge(Change.modified, str(tmp_path / path)) is counts


class TestWatcherSetup:
    """A missing folder is a one-line error before anything is watched."""

    def test_missing_folder(self, tmp_path: Path) -> None:
        load = RuleFiles(tmp_path)
        holder: SnapshotHolder[Snapshot] = SnapshotHolder(clock=SettableClock(T0))
        missing = tmp_path / "rules"
        with pytest.raises(ConfigError) as caught:
            asyncio.run(watch_and_reload([tmp_path, missing], load, holder, asyncio.Event()))
        assert str(caught.value) == f"cannot watch for rule changes: no such folder: {missing}"


def _funnel_rules_copy(tmp_path: Path) -> tuple[Path, Settings]:
    """A copy of the funnel's rule files in ``tmp_path``, and settings that load them."""
    rules = tmp_path / "rules"
    shutil.copytree(
        Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "funnel_rules", rules
    )
    settings = load_settings(
        None,
        env={},
        overrides={
            "paths.templates": str(Path(__file__).resolve().parents[1] / "templates"),
            "attributes.leads": {"region": "string"},
        },
    ).settings
    return rules, settings


class TestReloadNamesTheVersion:
    """``rules_reloaded`` names the version now running, so a log says which rules ran when."""

    def test_rule_set_version_is_logged(self, tmp_path: Path) -> None:
        rules, settings = _funnel_rules_copy(tmp_path)
        holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=SettableClock(T0))
        with capture_logs() as logs:
            assert reload_snapshot(lambda: load_rule_set(rules, settings), holder)
        [entry] = [entry for entry in logs if entry["event"] == "rules_reloaded"]
        assert entry["version"] == holder.current().version
        assert len(entry["version"]) == 12  # a content hash: tmp_path is no git checkout


class TestEmptyRuleFile:
    """A rule file cut to nothing (a save cut short) is refused by the real loader: the reload
    keeps the last good set instead of quietly dropping that file's rules."""

    @pytest.mark.parametrize(
        ("written", "what"),
        [
            (b"", "the file is empty"),
            (
                b"{}\n",
                "the file holds only an empty mapping ({}), with no rules:, streams: or "
                "scoring: key",
            ),
        ],
    )
    def test_a_truncated_file_keeps_the_last_good_set(
        self, tmp_path: Path, written: bytes, what: str
    ) -> None:
        rules, settings = _funnel_rules_copy(tmp_path)
        holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=SettableClock(T0))
        assert reload_snapshot(lambda: load_rule_set(rules, settings), holder)
        good = holder.current()
        victim = sorted(rules.glob("*.yaml"))[0]
        victim.write_bytes(written)
        assert not reload_snapshot(lambda: load_rule_set(rules, settings), holder)
        assert holder.current() is good
        assert holder.status().errors == (
            f"{victim}:1:1: {what}: delete it to remove its rules, or write"
            " 'rules: []' to keep it without any (refused so that a save cut short never removes"
            " live rules)",
        )

    def test_a_scoring_file_cut_to_its_key_keeps_the_live_model(self, tmp_path: Path) -> None:
        """``scoring:`` alone (a save cut short) was read as "no model": the daemon dropped the
        live model and kept posted scores as posted. It is refused; the model stays."""
        rules, settings = _funnel_rules_copy(tmp_path)
        scoring = rules / "scoring.yaml"
        scoring.write_text(
            "scoring:\n  fit:\n    - id: east\n"
            "      when: {field: attributes.region, equals: East}\n      points: 20\n",
            encoding="utf-8",
        )
        holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=SettableClock(T0))
        assert reload_snapshot(lambda: load_rule_set(rules, settings), holder)
        good = holder.current()
        assert good.active_scoring is not None
        scoring.write_bytes(b"scoring:\n")
        assert not reload_snapshot(lambda: load_rule_set(rules, settings), holder)
        assert holder.current() is good
        assert holder.status().errors == (
            f"{scoring}:1:1: scoring: expected its criteria (fit: and/or engagement:), or "
            "'enabled: false' to turn scoring off (refused so that a save cut short never "
            "removes the live model)",
        )


async def _deployed_then_edited(holder: Any, deployed: int, edit: Path, edited: int) -> None:
    """The deployed threshold is loaded, then an edit written to ``edit`` afterwards."""
    await eventually(
        lambda: holder.current() == {"mql.yaml": {"threshold": deployed}}, "the new folder"
    )
    write(edit, f"threshold: {edited}\n")
    await eventually(
        lambda: holder.current() == {"mql.yaml": {"threshold": edited}}, "an edit in it"
    )


class TestReplacedFolder:
    """A deployment that replaces the rules folder (a fresh copy, a symbolic link switched to a
    new release) is reloaded, and edits in the new folder are seen.

    Found by moving a running daemon's rules folder aside and copying it back: the reload said
    ``rules folder not found``, and then nothing: the operating system's watch stayed on the
    folder moved aside, every later edit went unseen and the status kept the error."""

    def test_a_folder_copied_anew(self, tmp_path: Path) -> None:
        folder = tmp_path / "rules"
        folder.mkdir()
        load, holder = good_start(folder)

        async def scenario() -> None:
            async with watching(folder, load, holder):
                folder.rename(tmp_path / "rules.old")
                folder.mkdir()
                write(folder / "mql.yaml", "threshold: 70\n")
                await _deployed_then_edited(holder, 70, folder / "mql.yaml", 75)

        with capture_logs() as logs:
            asyncio.run(scenario())
        assert holder.status().errors == ()
        assert [e["folders"] for e in logs if e["event"] == "rule_folder_replaced"] == [
            [str(folder)]
        ]

    def test_a_folder_removed_and_copied_again(self, tmp_path: Path) -> None:
        """``rm -rf rules && cp -r release rules``: the new folder mostly gets the removed one's
        inode back, so it looked like the same folder while the watch had gone with the old
        one, and later edits went unseen (found in review)."""
        release = tmp_path / "release"
        release.mkdir()
        write(release / "mql.yaml", "threshold: 70\n")
        folder = tmp_path / "rules"
        folder.mkdir()
        write(folder / "mql.yaml", "threshold: 60\n")
        load, holder = good_start(folder)

        async def scenario() -> None:
            async with watching(folder, load, holder):
                shutil.rmtree(folder)
                shutil.copytree(release, folder)
                await _deployed_then_edited(holder, 70, folder / "mql.yaml", 75)

        asyncio.run(scenario())
        assert holder.status().errors == ()

    def test_a_symbolic_link_switched_to_a_new_release(self, tmp_path: Path) -> None:
        first, second = tmp_path / "release-1", tmp_path / "release-2"
        first.mkdir()
        second.mkdir()
        write(second / "mql.yaml", "threshold: 80\n")
        current = tmp_path / "rules"
        current.symlink_to(first)
        load, holder = good_start(current)

        async def scenario() -> None:
            async with watching(current, load, holder):
                switch = tmp_path / "rules.new"
                switch.symlink_to(second)
                switch.rename(current)  # atomic, as deployment tools do it
                await _deployed_then_edited(holder, 80, second / "mql.yaml", 85)

        asyncio.run(scenario())
        assert holder.status().errors == ()
