"""Text from the CRM and configuration values are printed as they are, never read as markup."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from import_support import write

from leadflow.cli import main

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
