"""``leadflow demo``, the README's first command: a sample funnel moving, shown day by day."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadflow.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_one_simulated_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The deterministic sample gives the same first day every time, and its mail lands."""
    monkeypatch.setenv("LEADFLOW_PATHS__STATE", str(tmp_path / "state"))
    monkeypatch.setenv("LEADFLOW_LOG__LEVEL", "error")
    code = main(["-c", str(ROOT / "config.yaml"), "demo", "--days", "1"])
    out = capsys.readouterr().out
    assert code == 0
    rows = [
        line.strip("│ ").split("│") for line in out.splitlines() if line.startswith("│ Mon 02 Mar")
    ]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["Mon 02 Mar", "92", "109", "34", "79", "750", "1030"]
    ]
    mail = list((tmp_path / "state" / "demo" / "maildir" / "new").glob("*.eml"))
    assert len(mail) == 1040
    assert (
        f"1040 emails were delivered as .eml files into {tmp_path / 'state' / 'demo' / 'maildir' / 'new'}."
        in out
    )
