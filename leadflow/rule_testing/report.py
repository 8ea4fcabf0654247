"""Rule test results as people and CI systems read them: pytest-style text and JUnit XML."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from leadflow.rule_testing.runner import CaseResult, FileResult, StepFailure

WIDTH = 80


@dataclass(frozen=True)
class Totals:
    passed: int
    failed: int
    errors: int

    @classmethod
    def of(cls, files: Iterable[FileResult]) -> Totals:
        cases = [case for result in files for case in result.cases]
        broken = sum(1 for result in files if result.problems)
        return cls(
            passed=sum(1 for case in cases if case.outcome == "passed"),
            failed=sum(1 for case in cases if case.outcome == "failed"),
            errors=broken + sum(1 for case in cases if case.outcome == "error"),
        )

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors

    def summary(self, seconds: float) -> str:
        parts = [
            f"{count} {word}"
            for count, word in (
                (self.failed, "failed"),
                (self.passed, "passed"),
                (self.errors, "error" if self.errors == 1 else "errors"),
            )
            if count
        ]
        return f"{', '.join(parts) or 'no tests ran'} in {seconds:.2f}s"


def _banner(text: str, fill: str) -> str:
    return f" {text} ".center(WIDTH, fill)


def text_report(files: list[FileResult], seconds: float) -> list[str]:
    """The lines of the report: one per case, then errors and failures in detail, then totals."""
    lines: list[str] = []
    for result in files:
        if result.problems:
            lines.append(f"{result.label} ERROR")
        lines += [f"{case.node_id} {case.outcome.upper()}" for case in result.cases]
        lines += [f"{result.label}: note: {note}" for note in result.notes]
    errors = [(r.label, r.problems) for r in files if r.problems] + [
        (case.node_id, [case.error or ""])
        for r in files
        for case in r.cases
        if case.outcome == "error"
    ]
    if errors:
        lines += ["", _banner("ERRORS", "=")]
        for node, problems in errors:
            lines += [_banner(node, "_"), *problems]
    failed = [case for r in files for case in r.cases if case.outcome == "failed"]
    if failed:
        lines += ["", _banner("FAILURES", "=")]
        for case in failed:
            lines.append(_banner(case.node_id, "_"))
            for failure in case.failures:
                lines += failure_lines(failure)
    totals = Totals.of(files)
    lines.append(_banner(totals.summary(seconds), "="))
    return lines


def failure_lines(failure: StepFailure) -> list[str]:
    step = failure.step
    return [
        f"step {step.number} at {step.shown_at} ({step.where}): {failure.what}",
        *failure.diff,
    ]


def write_junit(files: list[FileResult], target: Path, seconds: float) -> None:
    """JUnit XML as CI systems read it: a suite per file, a test case per rule test."""
    totals = Totals.of(files)
    root = ElementTree.Element(
        "testsuites",
        name="leadflow test",
        tests=str(totals.passed + totals.failed + totals.errors),
        failures=str(totals.failed),
        errors=str(totals.errors),
        time=f"{seconds:.3f}",
    )
    for result in files:
        suite_totals = Totals.of([result])
        suite = ElementTree.SubElement(
            root,
            "testsuite",
            name=result.label,
            tests=str(suite_totals.passed + suite_totals.failed + suite_totals.errors),
            failures=str(suite_totals.failed),
            errors=str(suite_totals.errors),
            time=f"{result.seconds:.3f}",
        )
        if result.problems:
            case = ElementTree.SubElement(suite, "testcase", classname=result.label, name="(file)")
            error = ElementTree.SubElement(case, "error", message=result.problems[0])
            error.text = "\n".join(result.problems)
        for outcome in result.cases:
            _junit_case(suite, outcome)
    ElementTree.indent(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    ElementTree.ElementTree(root).write(target, encoding="utf-8", xml_declaration=True)


def _junit_case(suite: ElementTree.Element, outcome: CaseResult) -> None:
    case = ElementTree.SubElement(
        suite, "testcase", classname=outcome.file, name=outcome.name, time=f"{outcome.seconds:.3f}"
    )
    if outcome.outcome == "error":
        error = ElementTree.SubElement(case, "error", message=outcome.error or "error")
        error.text = outcome.error
    elif outcome.outcome == "failed":
        first = outcome.failures[0]
        failure = ElementTree.SubElement(
            case,
            "failure",
            message=f"step {first.step.number} ({first.step.where}): {first.what}",
        )
        failure.text = "\n".join(line for f in outcome.failures for line in failure_lines(f))
