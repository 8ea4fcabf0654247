"""Output that cannot be written, or whose reader went away, ends a command in one line (or
quietly), never in a traceback nor in rules logged as failed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from import_support import write

from leadflow.cli import main

REPO = Path(__file__).resolve().parents[1]
LEADFLOW = [sys.executable, "-c", "from leadflow.cli import run; run()"]
RULE = """\
rules:
  - id: hot
    every: 5m
    when: {field: score, at_least: 60}
    actions:
      - set_stage: mql
"""


def test_a_junit_file_that_cannot_be_created_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--junit plain.txt/j.xml` under a file: was a FileExistsError traceback."""
    plain = write(tmp_path, "plain.txt", "")
    code = main(["test", str(REPO / "rule_tests" / "nurture.yaml"), "--junit", f"{plain}/j.xml"])
    assert code == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {plain}: File exists"


def test_a_full_stdout_is_one_line(tmp_path: Path) -> None:
    """`leadflow schema > /dev/full`: was an OSError traceback."""
    with Path("/dev/full").open("w") as full:
        done = subprocess.run(
            [*LEADFLOW, "schema"], stdout=full, stderr=subprocess.PIPE, text=True, check=False
        )
    assert (done.returncode, done.stderr) == (
        1,
        "error: cannot write the output: No space left on device\n",
    )


def test_a_dry_run_read_by_head_stops_quietly(tmp_path: Path, store_url: str) -> None:
    """`run --once --dry-run --limit 0 | head -1`: every rule evaluated after the reader left
    was logged as `rule_failed` with a BrokenPipeError; now the command stops, exit 1, and
    stderr holds no error."""
    rules = tmp_path / "rules"
    rules.mkdir()
    write(rules, "hot.yaml", RULE)
    write(rules, "hot2.yaml", RULE.replace("id: hot", "id: hot2"))
    config = write(
        tmp_path,
        "config.yaml",
        f"database:\n  url: {store_url}\npaths:\n  rules: {rules}\nlog:\n  format: json\n",
    )
    lines = "".join(f"L{n:05d},l{n}@x.test,70\n" for n in range(3000))
    leads = write(tmp_path, "leads.csv", "external_id,email,score\n" + lines)
    assert main(["-c", str(config), "import", "leads", str(leads)]) == 0
    with subprocess.Popen(
        [*LEADFLOW, "-c", str(config), "run", "--once", "--dry-run", "--limit", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()  # as `head -1` does: 3,000 firings are more than a pipe holds
        errors = process.stderr.read()
        code = process.wait()
    assert first.startswith("hot lead L0")
    assert code == 1
    events = [json.loads(line) for line in errors.splitlines()]
    assert [e for e in events if e["level"] in ("warning", "error")] == []
