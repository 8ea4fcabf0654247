"""Text from the CRM and configuration values are printed as they are, never read as markup."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from import_support import write

from leadflow.cli import main

REPO = Path(__file__).resolve().parents[1]
HOSTILE = "[/bold] Rex [red]"


@pytest.fixture
def config(tmp_path: Path, store_url: str) -> Path:
    return write(
        tmp_path,
        "config.yaml",
        f"database:\n  url: {store_url}\ncalendar:\n  weekdays: [mon, tue, wed]\n",
    )


def imported(config: Path, tmp_path: Path) -> None:
    reps = write(tmp_path, "reps.csv", f'external_id,name,email\nR1,"{HOSTILE}",rex@example.com\n')
    leads = write(tmp_path, "leads.csv", "external_id,name,owner,stage\n[b]L1,Ada,R1,mql\n")
    assert main(["-c", str(config), "import", "reps", str(reps)]) == 0
    assert main(["-c", str(config), "import", "leads", str(leads)]) == 0


class TestNoMarkup:
    """A rep named ``[/bold] Rex`` or a list value shows literally; nothing raises."""

    def test_status_shows_a_bracketed_rep_name(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``status`` prints the owner's name with its brackets and exits 0."""
        imported(config, tmp_path)
        capsys.readouterr()
        assert main(["-c", str(config), "status"]) == 0
        owners = [line.split() for line in capsys.readouterr().out.splitlines() if "Rex" in line]
        assert owners == [["[/bold]", "Rex", "[red]", "mql", "1"]]

    def test_config_shows_list_values(
        self, config: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``config`` prints ``[mon, tue, wed]``, not a blank read as a markup tag."""
        assert main(["-c", str(config), "config"]) == 0
        rows = [re.split(r"\s{2,}", line.strip()) for line in capsys.readouterr().out.splitlines()]
        weekdays = [row[:2] for row in rows if row[0] == "calendar.weekdays"]
        assert weekdays == [["calendar.weekdays", "[mon, tue, wed]"]]


class TestEverydayCommands:
    """``--version``, a folder of rule tests, and usage errors behave as a user expects."""

    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["--version"]) == 0
        assert capsys.readouterr().out == f"leadflow {metadata.version('leadflow')}\n"

    @pytest.mark.slow
    def test_rule_tests_folder_runs_every_file_in_it(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``leadflow test rule_tests/`` runs the shipped tests (it crashed with a traceback)."""
        folder = REPO / "rule_tests"
        assert main(["-c", str(REPO / "config.yaml"), "test", str(folder)]) == 0
        out = capsys.readouterr().out
        ran = {
            Path(line.split("::")[0]).name for line in out.splitlines() if line.endswith(" PASSED")
        }
        expected = {path.name for path in folder.glob("*.yaml")}
        assert ran == expected
        # The summary is centred, so the rule's length depends on how long the run took.
        assert re.fullmatch(r"=+ 13 passed in \d+\.\d\ds =+", out.splitlines()[-1])

    def test_empty_folder_is_one_line(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["-c", str(REPO / "config.yaml"), "test", str(tmp_path)]) == 1
        assert capsys.readouterr().err == (
            f"error: {tmp_path}: is a folder without rule test files (*.yaml)\n"
        )

    def test_run_without_once_is_a_usage_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["run"]) == 2
        assert "Error: leadflow run needs --once" in capsys.readouterr().err


class TestJsonOutput:
    """``--format json`` prints one document with the same facts as the tables."""

    def test_status_as_json(
        self, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        imported(config, tmp_path)
        capsys.readouterr()
        assert main(["-c", str(config), "status", "--format", "json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert document["leads"] == {
            "total": 1,
            "by_stage": {"mql": 1},
            "by_owner": [{"owner": HOSTILE, "stage": "mql", "leads": 1}],
        }
        assert document["reps"] == {"active": 1, "inactive": 0}
        assert document["deals"] == {"open": 0, "closed": {}}
        assert document["outbox"] == {
            "by_status": {},
            "oldest_pending_at": None,
            "claimed_by_gone": [],
        }
        assert document["rules"] == {
            "folder": {
                "loaded": False,
                "version": None,
                "enabled": 0,
                "problems": [f"{tmp_path / 'rules'}: rules folder not found"],
            },
            "last_evaluated": None,
            "rules": [],
        }
        assert sorted(document["last_imports"]) == ["leads", "reps"]
        assert document["last_imports"]["leads"]["inserted"] == 1

    def test_config_as_json(self, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["-c", str(config), "config", "--format", "json"]) == 0
        rows = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
        assert rows["calendar.weekdays"] == {
            "key": "calendar.weekdays",
            "value": "[mon, tue, wed]",
            "source": f"{config}:4:3",
        }
        assert rows["http.token"]["value"] == "(not set)"


class TestMissingStore:
    """A reading command on an SQLite path nothing wrote refuses it; it never creates it."""

    @pytest.mark.parametrize(
        "command",
        [
            ["status"],
            ["report", "--from", "2026-01-01", "--to", "2026-01-31"],
            ["audit"],
            ["outbox"],
            ["send", "--once"],
            ["prune", "--dry-run"],
            ["score", "explain", "L1"],
            ["simulate", "--from", "2026-01-01", "--to", "2026-01-02"],
            ["plan", "--base", "HEAD"],
        ],
    )
    def test_mistyped_path_is_refused_and_not_created(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
    ) -> None:
        """One line naming the path, exit 1, and neither the file nor its folder appears."""
        config = write(tmp_path, "config.yaml", "database:\n  url: sqlite:///typo/leadflow.db\n")
        assert main(["-c", str(config), *command]) == 1
        err = capsys.readouterr().err
        assert err == (
            f"error: no store at {tmp_path / 'typo' / 'leadflow.db'} (database.url "
            "'sqlite:///typo/leadflow.db'): nothing has imported into it or run on it yet, or "
            "the path is wrong; `leadflow import` or `leadflow run` creates it\n"
        )
        assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]

    def test_import_creates_the_store(self, tmp_path: Path) -> None:
        """An import still creates the store (and its folder), and ``status`` then reads it."""
        config = write(tmp_path, "config.yaml", "database:\n  url: sqlite:///new/leadflow.db\n")
        leads = write(tmp_path, "leads.csv", "external_id,name\nL1,Ada\n")
        assert main(["-c", str(config), "import", "leads", str(leads)]) == 0
        assert (tmp_path / "new" / "leadflow.db").is_file()
        assert main(["-c", str(config), "status"]) == 0


def test_every_commands_help_paragraph_is_one_line() -> None:
    """Each command's help keeps its paragraphs but not the source's line breaks inside them
    (typer's rich help printed them, breaking a summary mid-sentence in ``--help``'s list)."""
    import typer.main

    from leadflow.cli import app

    def commands(group: Any, prefix: str) -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = []
        for name, sub in sorted(group.commands.items()):
            found.append((prefix + name, sub))
            if hasattr(sub, "commands"):  # a group (typer's own click: no isinstance to test)
                found += commands(sub, f"{prefix}{name} ")
        return found

    every = commands(typer.main.get_group(app), "")
    broken = [name for name, c in every if any("\n" in p for p in (c.help or "").split("\n\n"))]
    assert broken == []
    summaries = {name: (c.help or "").split("\n\n")[0] for name, c in every}
    assert summaries["prune"] == (
        "Delete old sent outbox rows, old audit rows (archived first) and old score changes, "
        "as the daemon does."
    )
    assert summaries["dashboard hash-password"].startswith("Read a password (prompted twice,")
    assert summaries["dashboard serve"].startswith("Serve the dashboard alone until Ctrl-C:")
    assert [name for name, _command in every] == [
        "audit",
        "check",
        "config",
        "daemon",
        "dashboard",
        "dashboard hash-password",
        "dashboard serve",
        "demo",
        "import",
        "migrate",
        "outbox",
        "plan",
        "prune",
        "report",
        "resubscribe",
        "run",
        "schema",
        "score",
        "score explain",
        "score fit",
        "send",
        "simulate",
        "status",
        "test",
        "unbounce",
    ]
