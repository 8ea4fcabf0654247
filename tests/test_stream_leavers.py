"""A stream removed, renamed or shortened ends its leads' active enrollments: said beforehand.

Pins, on SQLite and PostgreSQL, with three leads (L1, L2, L3) active in ``welcome`` and two in
``drip`` (L5 at its third step, L6 at its second), and L4 exited from ``welcome`` long ago:

- renaming ``welcome`` to ``welcome-v2`` exits L1-L3 with ``stream no longer defined`` at their
  next due step (the enrolling rule is ``reentry: once``, so nothing enrolls them again);
- ``leadflow plan`` says so on the removed stream's line, and on a shortened stream's line how
  many leads would complete without their remaining steps (``stream shortened``);
- the daemon's reload warns of it (``nurture_enrollments_will_end``), naming stream and count;
- ``leadflow check --store`` prints the same warning; ``leadflow check`` alone stays offline.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from structlog.testing import capture_logs

from leadflow.cli import main
from leadflow.clock import SettableClock
from leadflow.engine.nurture import run_nurture_steps
from leadflow.engine.runtime import Runtime
from leadflow.engine.stream_leavers import (
    STREAM_GONE,
    STREAM_SHORTENED,
    Leavers,
    active_enrollments,
    leavers,
    leaving_leads,
)
from leadflow.rule_language.loader import load_rule_set
from leadflow.service.daemon import Daemon
from leadflow.service.rule_reload import SnapshotHolder, reload_snapshot
from leadflow.store.tables import LEADS, NURTURE

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = "2026-03-02T09:00:00Z"

NURTURE_RULES = """\
rules:
  - id: nurture-new-leads
    every: 15m
    reentry: once
    when:
      field: stage
      in: [subscriber]
    actions:
      - enroll: welcome
streams:
  - id: welcome
    steps:
      - template: nurture_welcome
        after: 0h
      - template: nurture_case_study
        after: 5d
  - id: drip
    allow_parallel: true
    steps:
      - template: nurture_welcome
        after: 1d
      - template: nurture_case_study
        after: 1d
      - template: nurture_case_study
        after: 1d
"""

RENAMED = NURTURE_RULES.replace("enroll: welcome\n", "enroll: welcome-v2\n").replace(
    "id: welcome\n", "id: welcome-v2\n"
)
"""``id: welcome`` -> ``id: welcome-v2`` and ``enroll: welcome`` -> ``enroll: welcome-v2``."""
RENAMED_FROM = RENAMED.replace(
    "  - id: welcome-v2\n", "  - id: welcome-v2\n    renamed_from: welcome\n"
)
"""The same rename, saying so: ``welcome-v2`` was ``welcome``."""
KEEP_THEM = (
    "to keep them, keep the stream's id and steps, or give the old id in the new stream's "
    "renamed_from (docs/rules.md, Nurture streams)"
)
SHORTENED = RENAMED.replace(
    "      - template: nurture_case_study\n        after: 1d\n"
    "      - template: nurture_case_study\n        after: 1d\n",
    "      - template: nurture_case_study\n        after: 1d\n",
)
"""... and ``drip`` cut from three steps to two: L5, due its third step, has none left."""


def seed(engine: Engine) -> None:
    old = T0 - timedelta(days=3)
    lead = {"stage": "lead", "stage_entered_at": old, "created_at": old, "updated_at": old}
    leads = [
        {**lead, "id": n, "external_id": f"L{n}", "score": 10, "email": f"l{n}@example.com"}
        for n in range(1, 7)
    ]
    enrollment = {"enrolled_at": old, "rule_id": "nurture-new-leads", "next_step_at": T0}
    with engine.begin() as connection:
        connection.execute(insert(LEADS), [{**row, "attributes": {}} for row in leads])
        connection.execute(
            insert(NURTURE),
            [
                {
                    **enrollment,
                    "lead_id": lead_id,
                    "stream": stream,
                    "next_step": step,
                    "status": status,
                }
                for lead_id, stream, step, status in [
                    (1, "welcome", 1, "active"),
                    (2, "welcome", 1, "active"),
                    (3, "welcome", 1, "active"),
                    (4, "welcome", 1, "exited"),  # gone long ago: not counted
                    (5, "drip", 2, "active"),
                    (6, "drip", 1, "active"),
                ]
            ],
        )


@pytest.fixture
def project(
    tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A git checkout with config.yaml and rules/nurture.yaml committed, on the seeded store."""
    repo = tmp_path / "project"
    (repo / "rules").mkdir(parents=True)
    (repo / "config.yaml").write_text(
        f"paths:\n  templates: {REPO / 'templates'}\n"
        f"database:\n  url: '{store_url}'\n"
        "calendar:\n  timezone: UTC\n"
        "mail:\n  tracking:\n    base_url: https://leadflow.example.com\n"
        "  send_window: {start: '00:00', end: '00:00'}\n",
        encoding="utf-8",
    )
    (repo / "rules" / "nurture.yaml").write_text(NURTURE_RULES, encoding="utf-8")
    for args in (("init", "-q", "-b", "main"), ("add", "."), ("commit", "-q", "-m", "rules")):
        subprocess.run(
            ["git", "-c", "user.name=Ops", "-c", "user.email=ops@example.com", *args],
            cwd=repo,
            check=True,
            capture_output=True,
        )
    seed(engine)
    monkeypatch.chdir(repo)
    monkeypatch.delenv("LEADFLOW_CONFIG", raising=False)
    return repo


def write_rules(project: Path, text: str) -> None:
    (project / "rules" / "nurture.yaml").write_text(text, encoding="utf-8")


def runtime_for(project: Path, engine: Engine) -> Runtime:
    from leadflow.config import load_settings

    settings = load_settings(project / "config.yaml", env={}).settings
    return Runtime.build(engine, settings, SettableClock(T0))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(list(args))
    return code, capsys.readouterr().out.splitlines()


class TestCounting:
    """The active enrollments per stream and step, and which a rule set would end."""

    def test_active_enrollments_by_stream_and_step(self, project: Path, engine: Engine) -> None:
        with engine.connect() as connection:
            assert active_enrollments(connection) == {"welcome": {1: 3}, "drip": {1: 1, 2: 1}}

    def test_a_removed_and_a_shortened_stream(self, project: Path, engine: Engine) -> None:
        settings = runtime_for(project, engine).settings
        write_rules(project, SHORTENED)
        streams = load_rule_set(project / "rules", settings).streams
        with engine.connect() as connection:
            enrolled = active_enrollments(connection)
        assert leavers(enrolled, streams) == [
            Leavers("drip", 1, STREAM_SHORTENED),
            Leavers("welcome", 3, STREAM_GONE),
        ]
        assert [leaving.describe() for leaving in leavers(enrolled, streams)] == [
            "stream drip: 1 lead enrolled now will complete without their remaining steps "
            "(stream shortened)",
            "stream welcome: 3 leads enrolled now will exit (stream no longer defined)",
        ]

    def test_against_a_base_only_the_changes_doing_counts(
        self, project: Path, engine: Engine
    ) -> None:
        """A stream the base lacks too, or a step the base's stream lacks too, is not the
        change's doing: its enrollments would end under the base as well."""
        settings = runtime_for(project, engine).settings
        write_rules(project, RENAMED)
        renamed = load_rule_set(project / "rules", settings).streams
        write_rules(project, SHORTENED)
        shortened = load_rule_set(project / "rules", settings).streams
        with engine.connect() as connection:
            enrolled = active_enrollments(connection)
        assert leavers(enrolled, shortened, base=renamed) == [Leavers("drip", 1, STREAM_SHORTENED)]
        assert leavers(enrolled, renamed, base=renamed) == []

    def test_the_leads_counted(self, project: Path, engine: Engine) -> None:
        settings = runtime_for(project, engine).settings
        write_rules(project, SHORTENED)
        streams = load_rule_set(project / "rules", settings).streams
        with engine.connect() as connection:
            found = leavers(active_enrollments(connection), streams)
            assert leaving_leads(connection, found) == {"L1", "L2", "L3", "L5"}
            assert leaving_leads(connection, found[:1]) == {"L5"}
            assert leaving_leads(connection, []) == frozenset()


class TestTheExit:
    """What the rename does when it runs: the documented exit reason, for good."""

    def test_renamed_stream_exits_its_leads(self, project: Path, engine: Engine) -> None:
        runtime = runtime_for(project, engine)
        write_rules(project, RENAMED)
        run_nurture_steps(runtime, runtime.load_rules(), T0)
        with engine.connect() as connection:
            rows = connection.execute(
                select(NURTURE.c.lead_id, NURTURE.c.stream, NURTURE.c.status, NURTURE.c.exit_reason)
                .where(NURTURE.c.stream == "welcome")
                .order_by(NURTURE.c.lead_id)
            ).all()
        assert [tuple(row) for row in rows] == [
            (1, "welcome", "exited", "stream no longer defined"),
            (2, "welcome", "exited", "stream no longer defined"),
            (3, "welcome", "exited", "stream no longer defined"),
            (4, "welcome", "exited", None),
        ]


class TestPlan:
    """``leadflow plan`` counts the leads a removed or shortened stream would end."""

    def test_text(self, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
        write_rules(project, SHORTENED)
        code, out = run(capsys, "plan", "--now", NOW, "--base", "HEAD")
        assert code == 0
        assert [line for line in out if line[2:9] == "stream "] == [
            "~ stream drip (changed): 1 lead enrolled now will complete without their remaining "
            "steps (stream shortened)",
            "- stream welcome (removed): 3 leads enrolled now will exit (stream no longer defined)",
            "+ stream welcome-v2 (added)",
        ]
        assert out[-1] == "0 rules unchanged. 4 leads and 0 deals would be treated differently."

    def test_the_leaving_leads_count_toward_max_affected(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """L1, L2, L3 and L5 leave: four leads, over a limit of three (exit 1), not over four."""
        write_rules(project, SHORTENED)
        assert main(["plan", "--now", NOW, "--base", "HEAD", "--max-affected", "4"]) == 0
        capsys.readouterr()
        assert main(["plan", "--now", NOW, "--base", "HEAD", "--max-affected", "3"]) == 1
        assert capsys.readouterr().err.splitlines()[-1] == (
            "error: this change would treat 4 leads and deals differently, more than "
            "--max-affected 3; review the plan, then raise the limit for this change"
        )

    def test_markdown(self, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
        write_rules(project, RENAMED)
        code, out = run(capsys, "plan", "--now", NOW, "--base", "HEAD", "--format", "markdown")
        assert code == 0
        assert [line for line in out if line.startswith("- stream")] == [
            "- stream `welcome`: removed: **3 leads enrolled now will exit (stream no longer "
            "defined)**",
            "- stream `welcome-v2`: added",
        ]

    def test_a_stream_with_nobody_enrolled(
        self, project: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        with engine.begin() as connection:
            connection.execute(NURTURE.delete())
        write_rules(project, RENAMED)
        code, out = run(capsys, "plan", "--now", NOW, "--base", "HEAD")
        assert code == 0
        assert [line for line in out if line[2:9] == "stream "] == [
            "- stream welcome (removed)",
            "+ stream welcome-v2 (added)",
        ]


class TestReload:
    """The daemon's reload (and start) warns of the enrollments the new set would end."""

    def test_reload_warns(self, project: Path, engine: Engine) -> None:
        runtime = runtime_for(project, engine)
        daemon = Daemon(runtime)
        holder: SnapshotHolder[Any] = SnapshotHolder(clock=runtime.clock)
        assert reload_snapshot(runtime.load_rules, holder, warn=daemon.warnings)
        assert holder.status().warnings == ()
        write_rules(project, RENAMED)
        with capture_logs() as logs:
            assert reload_snapshot(runtime.load_rules, holder, warn=daemon.warnings)
        detail = (
            "stream welcome: 3 leads enrolled now will exit (stream no longer defined) "
            "(to keep them, keep the stream's id and steps, or give the old id in the new "
            "stream's renamed_from: docs/rules.md, Nurture streams)"
        )
        assert [(entry["event"], entry["log_level"], entry.get("detail")) for entry in logs] == [
            ("rules_reloaded", "info", None),
            ("nurture_enrollments_will_end", "warning", detail),
        ]
        assert holder.status().warnings == (detail,)

    def test_the_store_unreadable_is_no_reason_to_refuse(
        self, project: Path, engine: Engine
    ) -> None:
        from sqlalchemy import create_engine

        runtime = runtime_for(project, engine)
        broken = create_engine("sqlite:////nonexistent-folder/leadflow.db")
        daemon = Daemon(Runtime.build(broken, runtime.settings, runtime.clock))
        write_rules(project, RENAMED)
        with capture_logs() as logs:
            assert daemon.warnings(runtime.load_rules()) == []
        assert [(entry["event"], entry["log_level"]) for entry in logs] == [
            ("nurture_enrollments_not_read", "warning")
        ]


class TestCheck:
    """``check`` is offline; ``check --store`` reads the store and warns."""

    def test_offline_says_nothing(self, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
        write_rules(project, RENAMED)
        code, out = run(capsys, "check")
        assert code == 0
        assert len(out) == 1
        assert out[0].startswith("1 rule, 2 streams OK, version ")

    def test_with_the_store(self, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
        write_rules(project, SHORTENED)
        code, out = run(capsys, "check", "--store")
        assert code == 0
        assert out[:2] == [
            "warning: stream drip: 1 lead enrolled now will complete without their remaining "
            f"steps (stream shortened); {KEEP_THEM}",
            "warning: stream welcome: 3 leads enrolled now will exit (stream no longer defined); "
            f"{KEEP_THEM}",
        ]
        assert out[2].startswith("1 rule, 2 streams OK, version ")
        assert len(out) == 3


def test_check_store_without_a_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``check --store`` where no store was ever made: one error line naming it, exit 1."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "nurture.yaml").write_text(NURTURE_RULES, encoding="utf-8")
    (tmp_path / "config.yaml").write_text(
        f"paths:\n  templates: {REPO / 'templates'}\n"
        "database:\n  url: sqlite:///state/none.db\n"
        "mail:\n  tracking:\n    base_url: https://leadflow.example.com\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEADFLOW_CONFIG", raising=False)
    assert main(["check", "--store"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert [line for line in captured.err.splitlines() if not line.startswith("{")] == [
        f"error: no store at {tmp_path / 'state' / 'none.db'} (database.url "
        "'sqlite:///state/none.db'): nothing has imported into it or run on it yet, or the "
        "path is wrong; `leadflow import` or `leadflow run` creates it"
    ]


class TestRenamedFrom:
    """``renamed_from: welcome`` on ``welcome-v2``: L1-L3's enrollments go on in it, under its
    new id; nothing warns of leavers, ``plan`` lists one stream renamed; a rule does not
    enroll them again; the old id may name no stream of the set and one renamed stream only."""

    def test_the_enrollments_go_on_under_the_new_id(self, project: Path, engine: Engine) -> None:
        from leadflow.store.tables import AUDIT, OUTBOX

        runtime = runtime_for(project, engine)
        write_rules(project, RENAMED_FROM)
        assert run_nurture_steps(runtime, runtime.load_rules(), T0) == 5
        with engine.connect() as connection:
            rows = connection.execute(
                select(NURTURE.c.lead_id, NURTURE.c.stream, NURTURE.c.status, NURTURE.c.exit_reason)
                .where(NURTURE.c.lead_id <= 4)
                .order_by(NURTURE.c.lead_id)
            ).all()
            keys = connection.execute(
                select(OUTBOX.c.idempotency_key).where(OUTBOX.c.lead_id <= 4).order_by(OUTBOX.c.id)
            ).scalars()
            audit = connection.execute(
                select(AUDIT.c.lead_id, AUDIT.c.action, AUDIT.c.params)
                .where(AUDIT.c.lead_id == 1)
                .order_by(AUDIT.c.id)
            ).all()
        # Their second and last step (nurture_case_study) went out: the stream is done.
        assert [tuple(row) for row in rows] == [
            (1, "welcome-v2", "completed", "all steps sent"),
            (2, "welcome-v2", "completed", "all steps sent"),
            (3, "welcome-v2", "completed", "all steps sent"),
            (4, "welcome", "exited", None),  # its history keeps the name it had
        ]
        assert list(keys) == [f"nurture:L{n}:welcome-v2:{n}:step1" for n in (1, 2, 3)]
        assert [(action, params["stream"]) for _, action, params in audit] == [
            ("nurture_step", "welcome-v2"),
            ("nurture_completed", "welcome-v2"),
        ]

    def test_a_rule_does_not_enroll_them_again(self, project: Path, engine: Engine) -> None:
        """Enrolling every ``lead`` each run: L1-L3, active under the old id, are in the
        stream already; L4 (exited) is enrolled, L5 and L6 move from drip."""
        from leadflow.engine.evaluation import run_rule

        runtime = runtime_for(project, engine)
        every_run = RENAMED_FROM.replace("reentry: once", "reentry: every_time").replace(
            "in: [subscriber]", "in: [lead]"
        )
        write_rules(project, every_run)
        rule_set = runtime.load_rules()
        rule = rule_set.rule("nurture-new-leads")
        assert rule is not None
        assert run_rule(runtime, rule_set, rule, T0).fired == 6
        with engine.connect() as connection:
            rows = connection.execute(
                select(NURTURE.c.lead_id, NURTURE.c.stream, NURTURE.c.status, NURTURE.c.exit_reason)
                .where(NURTURE.c.status != "exited")
                .order_by(NURTURE.c.lead_id, NURTURE.c.id)
            ).all()
        assert [tuple(row) for row in rows] == [
            (1, "welcome", "active", None),
            (2, "welcome", "active", None),
            (3, "welcome", "active", None),
            (4, "welcome-v2", "active", None),
            (5, "welcome-v2", "active", None),
            (6, "welcome-v2", "active", None),
        ]

    def test_no_leavers(self, project: Path, engine: Engine) -> None:
        settings = runtime_for(project, engine).settings
        write_rules(project, RENAMED_FROM)
        rule_set = load_rule_set(project / "rules", settings)
        assert rule_set.streams["welcome-v2"].renamed_from == ("welcome",)
        with engine.connect() as connection:
            assert leavers(active_enrollments(connection), rule_set.streams) == []

    def test_check_with_the_store_warns_of_nothing(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        write_rules(project, RENAMED_FROM)
        code, out = run(capsys, "check", "--store")
        assert code == 0
        assert len(out) == 1
        assert out[0].startswith("1 rule, 2 streams OK, version ")

    def test_plan_lists_one_stream_renamed(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        write_rules(project, RENAMED_FROM)
        code, out = run(capsys, "plan", "--now", NOW, "--base", "HEAD")
        assert code == 0
        assert [line for line in out if line[2:9] == "stream "] == [
            "~ stream welcome-v2 (renamed from welcome)"
        ]
        assert out[-1] == "0 rules unchanged. 0 leads and 0 deals would be treated differently."
        code, out = run(capsys, "plan", "--now", NOW, "--base", "HEAD", "--format", "markdown")
        assert [line for line in out if line.startswith("- stream")] == [
            "- stream `welcome-v2`: renamed from `welcome`"
        ]

    def test_plan_of_a_rename_that_also_shortens(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """welcome-v2 keeps only the first step: L1-L3, due the second, have none left."""
        one_step = RENAMED_FROM.replace(
            "        after: 0h\n      - template: nurture_case_study\n        after: 5d\n",
            "        after: 0h\n",
        )
        write_rules(project, one_step)
        code, out = run(capsys, "plan", "--now", NOW, "--base", "HEAD")
        assert code == 0
        assert [line for line in out if line[2:9] == "stream "] == [
            "~ stream welcome-v2 (renamed from welcome): 3 leads enrolled now will complete "
            "without their remaining steps (stream shortened)"
        ]
        assert out[-1] == "0 rules unchanged. 3 leads and 0 deals would be treated differently."

    @pytest.mark.parametrize(
        ("change", "error"),
        [
            pytest.param(
                ("    renamed_from: welcome\n", "    renamed_from: drip\n"),
                "rules/nurture.yaml:12:19: stream welcome-v2: renamed_from 'drip' is a stream "
                "defined at rules/nurture.yaml:18:5; a renamed stream is no longer there under "
                "its old id: remove one of the two",
                id="a-stream-of-the-set",
            ),
            pytest.param(
                ("    renamed_from: welcome\n", "    renamed_from: [welcome, welcome-v2]\n"),
                "rules/nurture.yaml:12:29: stream welcome-v2: renamed_from 'welcome-v2' is the "
                "stream's own id",
                id="its-own-id",
            ),
            pytest.param(
                ("  - id: drip\n", "  - id: drip\n    renamed_from: [welcome]\n"),
                "rules/nurture.yaml:19:20: stream drip: renamed_from 'welcome' is already claimed "
                "by stream welcome-v2: only one stream can be it",
                id="claimed-twice",
            ),
            pytest.param(
                ("      - enroll: welcome-v2\n", "      - enroll: welcome\n"),
                "rules/nurture.yaml:9:17: rule nurture-new-leads: unknown stream 'welcome'; "
                "stream welcome-v2 was renamed from it: enroll in welcome-v2",
                id="enrolling-the-old-id",
            ),
            pytest.param(
                ("    renamed_from: welcome\n", "    renamed_from: Welcome!\n"),
                "rules/nurture.yaml:12:19: stream welcome-v2: renamed_from.0: expected letters, "
                "digits, '_', '.' and '-', found 'Welcome!'",
                id="not-an-id",
            ),
        ],
    )
    def test_refused(
        self,
        project: Path,
        capsys: pytest.CaptureFixture[str],
        change: tuple[str, str],
        error: str,
    ) -> None:
        write_rules(project, RENAMED_FROM.replace(*change))
        assert main(["check"]) == 1
        assert capsys.readouterr().out.splitlines()[0] == error
