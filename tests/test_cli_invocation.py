"""The commands the demo prints start with ``leadflow`` as the user can type it back: the
README runs ``.venv/bin/leadflow`` without activating the venv, and a printed bare
``leadflow audit ...`` answered ``command not found``."""

from __future__ import annotations

from pathlib import Path

from leadflow.cli.invocation import invoked_as


def _script(folder: Path) -> Path:
    bin_folder = folder / ".venv" / "bin"
    bin_folder.mkdir(parents=True)
    script = bin_folder / "leadflow"
    script.write_text("#!/bin/sh\n")
    return script


def test_a_venv_not_on_the_path_is_named_by_its_path_from_here(tmp_path: Path) -> None:
    script = _script(tmp_path)
    assert invoked_as(str(script), tmp_path, lambda _name: None) == ".venv/bin/leadflow"
    assert invoked_as(".venv/bin/leadflow", tmp_path, lambda _name: None) == ".venv/bin/leadflow"


def test_another_leadflow_on_the_path_does_not_make_it_bare(tmp_path: Path) -> None:
    script = _script(tmp_path)
    other = tmp_path / "elsewhere" / "leadflow"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\n")
    assert invoked_as(str(script), tmp_path, lambda _name: str(other)) == ".venv/bin/leadflow"


def test_the_program_the_shell_finds_is_bare(tmp_path: Path) -> None:
    script = _script(tmp_path)
    assert invoked_as(str(script), tmp_path, lambda _name: str(script)) == "leadflow"


def test_a_program_outside_the_working_folder_is_named_whole(tmp_path: Path) -> None:
    script = _script(tmp_path / "project")
    (tmp_path / "work").mkdir()
    assert invoked_as(str(script), tmp_path / "work", lambda _name: None) == str(script)


def test_a_program_in_the_working_folder_is_dot_slash(tmp_path: Path) -> None:
    script = _script(tmp_path)
    here = script.parent
    assert invoked_as(str(script), here, lambda _name: None) == "./leadflow"


def test_not_started_by_its_script_it_is_bare(tmp_path: Path) -> None:
    """``python -m leadflow`` or a test runner: no script path to name."""
    assert invoked_as("/usr/lib/python3/leadflow/__main__.py", tmp_path, lambda _n: None) == (
        "leadflow"
    )
