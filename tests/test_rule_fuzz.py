"""No rule file, however malformed, makes the loader raise or ``leadflow check`` print a traceback.

Generated and mutated files: random bytes, truncations, random YAML values in every position
of a valid file, deleted and duplicated lines. The loader always returns either a rule set or
located problems; the CLI always ends with its summary line and exits 0 or 1.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow.cli import main
from leadflow.errors import Problem
from leadflow.rule_language.loader import check_rule_set
from leadflow.settings import Settings

SETTINGS = Settings.model_validate({"attributes": {"leads": {"country": "string"}}})
VALID = """\
rules:
  - id: mql
    description: hot leads become MQLs
    every: 5m
    reentry: {once_per: 30d}
    when:
      all:
        - {field: score, at_least: 60}
        - {field: stage, in: [lead, nurture]}
        - not: {field: attributes.country, equals: NO}
        - any: [{field: days_in_stage, more_than: 2}, {field: last_activity_at, within: 1d}]
    actions:
      - set_stage: mql
      - assign: {route_by: attributes.country, pools: {NO: nordics}, default_pool: emea}
      - notify: {to: owner, template: mql_assigned}
      - start_sla:
          name: first_touch
          within: 4h
          escalate:
            - {after: 0, notify: owner, template: sla_reminder}
            - {after: 4h, reassign: true}
      - enroll: welcome
  - id: recycle
    subject: deal
    when: {idle_beyond_average_cycle: {factor: 2, group_by: product}}
    actions: [close_deal: {reason: idle}]
streams:
  - id: welcome
    steps: [{template: nurture_welcome}, {template: nurture_case_study, after: 7d}]
"""
VALID_DATA = yaml.safe_load(VALID)
SUMMARY = re.compile(
    r"^(\d+ problems?|\d+ rules?, \d+ streams?(, a scoring model( \(disabled\))?)? OK, "
    r"version [0-9a-f]{12})$"
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ---------------------------------------------------------------------------------------------
# Generated files

YAML_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(["NO", "09:00", "2026-13-01", "0d", "1e999", "mql", "field", "all", "-1d"]),
        st.dates(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.sampled_from(["field", "all", "id"])),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _paths(inner, (*prefix, index))


PATHS = list(_paths(VALID_DATA))


def _replaced(path: tuple[Any, ...], new: Any) -> str:
    data = yaml.safe_load(VALID)
    if not path:
        return yaml.safe_dump(new)
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return yaml.safe_dump(data, allow_unicode=True)


REPLACED = st.builds(_replaced, st.sampled_from(PATHS), YAML_VALUES)
TRUNCATED = st.integers(0, len(VALID)).map(lambda end: VALID[:end])


@st.composite
def _line_edits(draw: st.DrawFn) -> str:
    lines = VALID.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        if draw(st.booleans()):
            del lines[index]
        else:
            lines.insert(index, lines[index])
        if not lines:
            break
    return "".join(lines)


@st.composite
def _byte_edits(draw: st.DrawFn) -> bytes:
    raw = bytearray(VALID.encode())
    for _ in range(draw(st.integers(1, 6))):
        index = draw(st.integers(0, len(raw) - 1))
        raw[index] = draw(st.integers(0, 255))
    return bytes(raw)


FILES: st.SearchStrategy[str | bytes] = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300),
    TRUNCATED,
    REPLACED,
    _line_edits(),
    _byte_edits(),
)


def _folder(root: Path, contents: list[str | bytes]) -> Path:
    folder = root / "rules"
    folder.mkdir()
    for index, content in enumerate(contents):
        data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
        (folder / f"f{index}.yaml").write_bytes(data)
    return folder


class TestLoaderNeverRaises:
    """check_rule_set returns a rule set or located problems, never an exception."""

    @FUZZ
    @given(contents=st.lists(FILES, min_size=1, max_size=3))
    def test_generated_and_mutated_files(self, contents: list[str | bytes]) -> None:
        with tempfile.TemporaryDirectory() as root:
            folder = _folder(Path(root), contents)
            rule_set, problems = check_rule_set(folder, SETTINGS)
            assert (rule_set is None) == bool(problems)
            for problem in problems:
                assert isinstance(problem, Problem)
                assert problem.file.startswith(str(folder))
                assert problem.line >= 1
                assert problem.column >= 1
                assert problem.message
                assert "\n" not in problem.message

    def test_the_unmutated_file_is_valid(self, tmp_path: Path) -> None:
        rule_set, problems = check_rule_set(_folder(tmp_path, [VALID]), SETTINGS)
        assert problems == []
        assert rule_set is not None
        assert [rule.id for rule in rule_set.rules] == ["mql", "recycle"]


class TestCheckNeverPrintsATraceback:
    """``leadflow check`` run in-process ends with its summary and exits 0 or 1."""

    @FUZZ
    @given(contents=st.lists(FILES, min_size=1, max_size=2))
    @pytest.mark.slow
    def test_cli_in_process(
        self, contents: list[str | bytes], capsys: pytest.CaptureFixture[str]
    ) -> None:
        with tempfile.TemporaryDirectory() as root:
            config = Path(root) / "config.yaml"
            config.write_text("attributes:\n  leads: {country: string}\n", encoding="utf-8")
            folder = _folder(Path(root), contents)
            code = main(["--config", str(config), "check", "--rules", str(folder)])
        captured = capsys.readouterr()
        lines = captured.out.splitlines()
        assert code in (0, 1)
        assert captured.err == ""
        assert "Traceback" not in captured.out
        assert SUMMARY.match(lines[-1]), lines[-1]
        assert (code == 0) == ("OK" in lines[-1])

    def test_a_real_process_on_nasty_files(self, tmp_path: Path) -> None:
        folder = _folder(
            tmp_path,
            [
                b"\x00\x9f\x92\x96",
                "a: &a [*a]\n",
                "rules: " + "[" * 5000,
                "rules:\n  - id: x\n    when: {field: score, at_least: .inf}\n    actions: [adjust_score: 1e999]\n",
            ],
        )
        (tmp_path / "config.yaml").write_text("", encoding="utf-8")
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from leadflow.cli import run; run()",
                "--config",
                str(tmp_path / "config.yaml"),
                "check",
                "--rules",
                str(folder),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (result.returncode, result.stderr) == (1, "")
        assert result.stdout.splitlines() == [
            f"{folder}/f0.yaml:1:1: binary file: a rule file must be YAML text",
            f"{folder}/f1.yaml:1:4: invalid YAML: an alias (*name) refers to a value that contains it",
            f"{folder}/f2.yaml:1:68: invalid YAML: nested too deeply: at most 60 levels of mappings and lists",
            f"{folder}/f3.yaml:3:36: rule x: at_least: expected a finite number, found .inf",
            f"{folder}/f3.yaml:4:29: rule x: adjust_score: by: expected a finite number",
            "5 problems",
        ]
