"""``leadflow test FILE...``: rule unit tests, one line per test case, a diff for each failure."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from leadflow.cli.context import cli_context
from leadflow.errors import UserInputError


def run_rule_tests(
    ctx: typer.Context,
    files: Annotated[
        list[Path], typer.Argument(help="Rule test files (YAML), or folders holding them.")
    ],
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Also write the results as JUnit XML here.")
    ] = None,
) -> None:
    """Run rule test files: given state, steps in time, the exact actions expected at each step."""
    # The engine runs each test against a scratch SQLite store: SQLAlchemy loads here, on use.
    from leadflow.config import find_config_file
    from leadflow.rule_testing.report import Totals, text_report, write_junit
    from leadflow.rule_testing.runner import run_test_files

    started = time.perf_counter()
    context = cli_context(ctx)
    # The configuration leadflow would use, unless a test file names its own; the environment
    # is not applied to tests, so a test means the same on a laptop and in CI.
    base_config = find_config_file(context.config_file, os.environ)
    results = run_test_files(rule_test_files(files), base_config)
    seconds = time.perf_counter() - started
    for line in text_report(results, seconds):
        typer.echo(line)
    if junit is not None:
        write_junit(results, junit, seconds)
    if not Totals.of(results).ok:
        raise typer.Exit(1)


def rule_test_files(given: list[Path]) -> list[Path]:
    """Files as given; a folder stands for its ``*.yaml``/``*.yml`` files, recursively, sorted."""
    found: list[Path] = []
    for path in given:
        if not path.is_dir():
            found.append(path)
            continue
        inside = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        if not inside:
            msg = f"{path}: is a folder without rule test files (*.yaml)"
            raise UserInputError(msg)
        found += inside
    return found
