"""``leadflow plan --base REF``: the difference a rules change makes, against the current store.

A temporary git repository holds the shipped rules; a second commit lowers the MQL threshold
from 60 to 50. The plan names exactly the leads that would newly become MQLs, in text and in
markdown, writes nothing to the store, and the ``--max-affected`` guard exits 1 above its limit.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from leadflow.cli import main
from leadflow.config import load_settings
from leadflow.rule_language.loader import load_rule_set
from leadflow.store.database import create_store_engine, migrate
from leadflow.store.tables import AUDIT, LEADS, OUTBOX, REPS, RULE_RUNS

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = "2026-03-02T09:00:00Z"


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Ops", "-c", "user.email=ops@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def seed(database: Path) -> None:
    engine = create_store_engine(f"sqlite:///{database}")
    old = T0 - timedelta(days=3)
    lead = {"stage_entered_at": old, "created_at": old, "updated_at": old, "attributes": {}}
    with engine.begin() as connection:
        connection.execute(
            insert(REPS).values(
                external_id="r1",
                name="Rita Rep",
                email="rita@example.com",
                pools=["east"],
                created_at=old,
                updated_at=old,
            )
        )
        connection.execute(
            insert(LEADS),
            [
                {**lead, "external_id": external_id, "score": score, "stage": stage}
                for external_id, score, stage in [
                    ("L1", 70, "lead"),  # an MQL under both thresholds
                    ("L2", 55, "lead"),  # newly
                    ("L3", 52, "nurture"),  # newly
                    ("L4", 45, "lead"),  # under both
                    ("L5", 58, "customer"),  # past MQL already
                    ("L6", 50, "recycled"),  # newly: at least 50
                ]
            ],
        )
    engine.dispose()


@pytest.fixture
def rules_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path) -> Path:
    """A rules repository (config, rules, store) whose second commit lowers the threshold."""
    repo = tmp_path / "rules-repo"
    repo.mkdir()
    (repo / "config.yaml").write_text(
        f"paths:\n  templates: {REPO / 'templates'}\nattributes:\n  leads: {{region: string, industry: string, employees: integer}}\n",
        encoding="utf-8",
    )
    shutil.copytree(REPO / "rules", repo / "rules")
    (repo / "state").mkdir()
    shutil.copy(sqlite_template, repo / "state" / "leadflow.db")
    seed(repo / "state" / "leadflow.db")
    (repo / ".gitignore").write_text("state/\n", encoding="utf-8")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "shipped rules")
    shutil.copytree(repo / "rules", tmp_path / "base-rules")  # the same files, outside git
    mql = repo / "rules" / "mql.yaml"
    mql.write_text(
        mql.read_text(encoding="utf-8").replace("at_least: 60", "at_least: 50"), encoding="utf-8"
    )
    git(repo, "commit", "-q", "-am", "MQL threshold 50")
    monkeypatch.chdir(repo)
    monkeypatch.delenv("LEADFLOW_CONFIG", raising=False)
    return repo


def versions(repo: Path) -> tuple[str, str]:
    settings = load_settings(repo / "config.yaml", env={}).settings
    base = load_rule_set(repo.parent / "base-rules", settings).version
    return base, load_rule_set(repo / "rules", settings).version


def plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], list[str]]:
    code = main(["plan", "--now", NOW, *args])
    captured = capsys.readouterr()
    # stderr also carries the JSON log lines of the dry runs; keep what a person reads.
    errors = [line for line in captured.err.splitlines() if not line.startswith("{")]
    return code, captured.out.splitlines(), errors


class TestPlan:
    """The leads a threshold change would treat differently, by rule, with counts and samples."""

    def test_text(self, rules_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
        base, working = versions(rules_repo)
        assert base != working
        assert plan(capsys, "--base", "HEAD~1") == (
            0,
            [
                f"Plan: rules at HEAD~1 (version {base}) -> working tree (version {working}), "
                "store as of 2026-03-02T09:00:00+00:00",
                "",
                "~ mql-assignment (changed): 1 lead at HEAD~1, 4 in the working tree; "
                "3 newly acted on, 0 no longer acted on, 0 acted on differently",
                "    + lead L2",
                "    + lead L3",
                "    + lead L6",
                "",
                "2 rules unchanged. 3 leads and 0 deals would be treated differently.",
            ],
            [],
        )

    def test_markdown_with_a_sample_of_two(
        self, rules_repo: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        base, working = versions(rules_repo)
        code, out, _errors = plan(
            capsys, "--base", "main~1", "--rules", "rules", "--format", "markdown", "--sample", "2"
        )
        assert code == 0
        assert out == [
            "### leadflow plan: `rules` at `main~1` → this change",
            "",
            f"Store as of 2026-03-02T09:00:00+00:00; rule set `{base}` → `{working}`. "
            "**3 leads and 0 deals would be treated differently.**",
            "",
            "| rule | change | at `main~1` | after | newly | no longer | differently |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
            "| `mql-assignment` | changed | 1 | 4 | 3 | 0 | 0 |",
            "",
            "",
            "<details><summary><code>mql-assignment</code>: 3 lead(s)</summary>",
            "",
            "- newly acted on: lead L2",
            "- newly acted on: lead L3",
            "- newly acted on: ... and 1 more",
            "",
            "</details>",
            "",
            "2 rules unchanged.",
        ]

    def test_raising_the_threshold_drops_leads(
        self, rules_repo: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        mql = rules_repo / "rules" / "mql.yaml"
        mql.write_text(
            mql.read_text(encoding="utf-8").replace("at_least: 50", "at_least: 80"),
            encoding="utf-8",
        )
        code, out, _errors = plan(capsys, "--base", "HEAD")
        assert code == 0
        assert out[2:5] == [
            "~ mql-assignment (changed): 4 leads at HEAD, 0 in the working tree; "
            "0 newly acted on, 4 no longer acted on, 0 acted on differently",
            "    - lead L1",
            "    - lead L2",
        ]

    def test_the_store_is_not_written(
        self, rules_repo: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        engine = create_store_engine(f"sqlite:///{rules_repo / 'state' / 'leadflow.db'}")

        def state() -> list[object]:
            with engine.connect() as connection:
                return [
                    connection.execute(select(table)).all()
                    for table in (LEADS, AUDIT, OUTBOX, RULE_RUNS)
                ]

        before = state()
        assert plan(capsys, "--base", "HEAD~1")[0] == 0
        assert state() == before
        engine.dispose()


class TestPastNow:
    """Every lead entered its stage three days before NOW: a plan as of a week before leaves
    them all out (no rule acts on a lead before its stage began), and says so, with the
    count, instead of a silent "0 leads would be treated differently"."""

    def test_the_leads_left_out_are_counted(
        self, rules_repo: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        base, working = versions(rules_repo)
        code = main(["plan", "--now", "2026-02-23T09:00:00Z", "--base", "HEAD~1"])
        assert code == 0
        assert capsys.readouterr().out.splitlines() == [
            f"Plan: rules at HEAD~1 (version {base}) -> working tree (version {working}), "
            "store as of 2026-02-23T09:00:00+00:00",
            "Left out as of 2026-02-23 09:00:00 UTC: 6 leads that entered their stage after it "
            "(imported or moved since: no rule acts on them as of then).",
            "",
            "~ mql-assignment (changed): 0 leads at HEAD~1, 0 in the working tree; "
            "0 newly acted on, 0 no longer acted on, 0 acted on differently",
            "",
            "2 rules unchanged. 0 leads and 0 deals would be treated differently.",
        ]


class TestGuard:
    """--max-affected N: the plan is printed, then exit 1 when more than N subjects differ."""

    def test_over_the_limit(self, rules_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, errors = plan(capsys, "--base", "HEAD~1", "--max-affected", "2")
        assert code == 1
        assert out[-1] == "2 rules unchanged. 3 leads and 0 deals would be treated differently."
        assert errors == [
            "error: this change would treat 3 leads and deals differently, more than "
            "--max-affected 2; review the plan, then raise the limit for this change"
        ]

    def test_at_the_limit(self, rules_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, errors = plan(capsys, "--base", "HEAD~1", "--max-affected", "3")
        assert (code, errors) == (0, [])
        assert out[-1] == "2 rules unchanged. 3 leads and 0 deals would be treated differently."


class TestErrors:
    """An unknown revision or a folder outside git is one error line and exit 1."""

    def test_unknown_revision(self, rules_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert plan(capsys, "--base", "nope") == (1, [], ["error: --base: unknown revision 'nope'"])

    def test_not_a_checkout(self, rules_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
        outside = rules_repo.parent / "loose-rules"
        shutil.copytree(rules_repo / "rules", outside)
        code, out, errors = plan(capsys, "--base", "HEAD", "--rules", str(outside))
        assert (code, out) == (1, [])
        assert errors[0].startswith(f"error: {outside} is not in a git checkout; leadflow plan")

    def test_base_rules_that_do_not_load(
        self, rules_repo: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        mql = rules_repo / "rules" / "mql.yaml"
        good = mql.read_text(encoding="utf-8")
        mql.write_text(good.replace("every: 5m", "every: soon"), encoding="utf-8")
        git(rules_repo, "commit", "-q", "-am", "broken")
        mql.write_text(good, encoding="utf-8")
        code, _out, errors = plan(capsys, "--base", "HEAD")
        assert code == 1
        assert errors == [
            "error: the rules at HEAD do not load:",
            "HEAD:rules/mql.yaml:7:12: rule mql-assignment: every: 'soon' is not a duration; "
            "write a number and a unit (s, m, h, d, w), e.g. 90m",
        ]


class TestStoreNotReady:
    """A store never created, or left at an older schema, is named with what to do (exit 1)."""

    def test_store_never_created(
        self, rules_repo: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``plan`` on a fresh clone said ``no such table: rule_runs`` and exited 3."""
        database = rules_repo / "state" / "leadflow.db"
        database.unlink()
        code, out, errors = plan(capsys, "--base", "HEAD")
        assert (code, out) == (1, [])
        assert errors == [
            f"error: no store at {database} (database.url 'sqlite:///state/leadflow.db'): "
            "nothing has imported into it or run on it yet, or the path is wrong; "
            "`leadflow import` or `leadflow run` creates it"
        ]
        assert not database.exists()  # reading never creates the file

    def test_store_at_an_older_schema(
        self, rules_repo: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        database = rules_repo / "state" / "leadflow.db"
        database.unlink()
        engine = create_store_engine(f"sqlite:///{database}")
        migrate(engine, "0001")
        engine.dispose()
        code, _out, errors = plan(capsys, "--base", "HEAD")
        assert code == 1
        assert errors == [
            f"error: the store at sqlite:///{database} has schema 0001, older than this "
            "leadflow's (0026), and this command only reads: back it up, then run `leadflow "
            "migrate` (`--dry-run` lists the migrations), or run the leadflow that wrote it"
        ]


class TestExamples:
    """The rules-repository examples are valid YAML and call only commands and options that exist."""

    def test_every_leadflow_call_is_known(self, capsys: pytest.CaptureFixture[str]) -> None:
        import re

        import yaml

        folder = REPO / "examples" / "rules-repo"
        calls: list[tuple[str, str]] = []
        for name in (
            ".pre-commit-config.yaml",
            ".pre-commit-hooks.yaml",
            ".github/workflows/rules.yml",
        ):
            text = (folder / name).read_text(encoding="utf-8")
            assert yaml.safe_load(text)
            code = "\n".join(
                line for line in text.splitlines() if not line.lstrip().startswith("#")
            )
            calls += re.findall(r"leadflow (\w+)((?: [^\n|>&]*)?)", code)
        commands = {command for command, _rest in calls}
        assert commands == {"check", "test", "plan"}
        for command, rest in calls:
            assert main([command, "--help"]) == 0
            helptext = capsys.readouterr().out
            for option in re.findall(r"--[a-z-]+", rest):
                assert option in helptext, (command, option)
