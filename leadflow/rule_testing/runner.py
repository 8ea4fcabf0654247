"""Running rule test cases: a fresh store per case, a simulated clock, one daemon tick per step.

A step runs one funnel tick (:func:`~leadflow.engine.tick.run_tick`) at that instant, in the
daemon's order: the rules that are *due* (each rule's ``every:`` or ``cron:`` times count from
its last evaluation, as in the daemon; at the first step every rule is due), then SLA
escalations, then nurture steps. The daemon's ticks between two steps are not simulated:
whatever fell due meanwhile happens at the next step, every SLA level and nurture step that is
due by then included. The step's actions are the audit and outbox rows written during it.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
from sqlalchemy import Engine

from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_tick
from leadflow.errors import Problem, ProblemsError, UserInputError
from leadflow.mail.templates import TemplateCatalog
from leadflow.rule_language.loader import load_rule_set
from leadflow.rule_language.model import RuleSet
from leadflow.rule_testing.actions import Action, diff_lines, matches
from leadflow.rule_testing.given import apply_given
from leadflow.rule_testing.observed import actions_since, watermark
from leadflow.rule_testing.scores import model_note, observed_scores, score_differences
from leadflow.rule_testing.spec import RuleTestCase, RuleTestFile, Step, read_test_file
from leadflow.settings import Settings
from leadflow.store.database import create_store_engine
from leadflow.store.models import metadata

MAX_ROUNDS = 100
"""Bound on repeated SLA/nurture passes in one step (each pass moves a timer one level)."""
Outcome = Literal["passed", "failed", "error"]


@dataclass(frozen=True)
class StepFailure:
    step: Step
    diff: list[str]
    actual: list[Action]
    what: str = "the actions differ"


@dataclass
class CaseResult:
    file: str
    name: str
    outcome: Outcome = "passed"
    failures: list[StepFailure] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def node_id(self) -> str:
        return f"{self.file}::{self.name}"


@dataclass
class FileResult:
    """One test file: its cases' results, or the problems that kept it from running."""

    label: str
    cases: list[CaseResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    """What the reader should know about how the file ran (a disabled model evaluated)."""


def run_test_files(paths: list[Path], base_config: Path | None = None) -> list[FileResult]:
    """Read and run each file; a file that cannot run is reported with its problems."""
    with tempfile.TemporaryDirectory(prefix="leadflow-schema-") as folder:
        schema = _ScratchSchema(Path(folder))
        return [_run_file(path, base_config, schema) for path in paths]


class _ScratchSchema:
    """An empty store with the schema, created once per run and copied for each test case.

    Creating the schema (``metadata.create_all``, the schema the migrations build:
    tests/test_migrations.py keeps them equal) costs little CPU but waits on the disk for its
    DDL and its WAL, about 80 ms a case on a busy machine; a file copy costs about a
    millisecond, and every case still starts from an identical empty store.
    """

    def __init__(self, folder: Path) -> None:
        self.template = folder / "schema.db"

    def copy_to(self, target: Path) -> None:
        if not self.template.exists():
            engine = create_store_engine(f"sqlite:///{self.template}")
            try:
                metadata.create_all(engine)
            finally:
                engine.dispose()  # the last connection checkpoints the WAL into the file
        shutil.copyfile(self.template, target)


def _run_file(path: Path, base_config: Path | None, schema: _ScratchSchema) -> FileResult:
    started = time.perf_counter()
    try:
        test_file = read_test_file(path, base_config)
        cases, notes = run_test_file(test_file, schema)
        result = FileResult(test_file.label, cases, notes=notes)
    except ProblemsError as exc:
        result = FileResult(_shown(path), problems=[str(p) for p in exc.problems])
    except UserInputError as exc:
        result = FileResult(_shown(path), problems=str(exc).splitlines())
    result.seconds = time.perf_counter() - started
    return result


def run_test_file(
    test_file: RuleTestFile, schema: _ScratchSchema
) -> tuple[list[CaseResult], list[str]]:
    """Run every case of ``test_file``, and say what the report should note; a rule set that
    does not load raises ProblemsError."""
    settings = test_file.settings
    catalog = TemplateCatalog(settings.path(settings.paths.templates), settings)
    rule_set = load_rules_under_test(test_file.rules, settings, catalog)
    cases = [run_case(test_file, case, rule_set, catalog, schema) for case in test_file.cases]
    expects_scores = any(step.scores for case in test_file.cases for step in case.steps)
    note = model_note(rule_set) if expects_scores else None
    return cases, [note] if note else []


def load_rules_under_test(
    paths: tuple[Path, ...], settings: Settings, catalog: TemplateCatalog
) -> RuleSet:
    """One folder as the daemon reads it, or the listed files alone (copied to a folder)."""
    if len(paths) == 1 and paths[0].is_dir():
        return load_rule_set(
            paths[0], settings, check_template=catalog.check, check_context=catalog.check_context
        )
    with tempfile.TemporaryDirectory(prefix="leadflow-rules-") as folder:
        copies: dict[str, str] = {}
        for index, path in enumerate(paths):
            target = Path(folder) / f"{index:03d}-{path.name}"
            shutil.copyfile(path, target)
            copies[str(target)] = _shown(path)
        try:
            return load_rule_set(
                Path(folder),
                settings,
                check_template=catalog.check,
                check_context=catalog.check_context,
            )
        except ProblemsError as exc:
            # Name the files the user wrote, not the copies.
            problems = [
                Problem(copies.get(p.file, p.file), p.line, p.column, p.message)
                for p in exc.problems
            ]
            raise ProblemsError(problems) from None


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def run_case(
    test_file: RuleTestFile,
    case: RuleTestCase,
    rule_set: RuleSet,
    catalog: TemplateCatalog,
    schema: _ScratchSchema,
) -> CaseResult:
    result = CaseResult(test_file.label, case.name)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="leadflow-test-") as folder:
        # The schema the migrations build, created once per run rather than migrated (or
        # created) per case: either would dominate the run time.
        schema.copy_to(Path(folder) / "leadflow.db")
        engine = create_store_engine(f"sqlite:///{folder}/leadflow.db")
        try:
            clock = SettableClock(case.start)
            runtime = Runtime(engine, test_file.settings, clock, catalog)
            apply_given(engine, test_file.settings, case.given, case.start)
            for step in case.steps:
                clock.set(step.at)
                failure = _run_step(runtime, rule_set, step)
                if failure is not None:
                    result.failures.append(failure)
        except UserInputError as exc:
            result.outcome, result.error = "error", str(exc)
        finally:
            engine.dispose()
    if result.outcome != "error" and result.failures:
        result.outcome = "failed"
    result.seconds = time.perf_counter() - started
    return result


def _run_step(runtime: Runtime, rule_set: RuleSet, step: Step) -> StepFailure | None:
    engine: Engine = runtime.engine
    apply_given(engine, runtime.settings, step.given, step.at)
    mark = watermark(engine)
    with _failures_recorded() as failures:
        run_tick(runtime, rule_set, step.at, rounds=MAX_ROUNDS)
    if failures:
        msg = f"step {step.number} ({step.where}): " + "; ".join(failures)
        raise UserInputError(msg)
    actual = actions_since(engine, mark)
    expected = list(step.expect)
    if step.expects_actions and not matches(expected, actual):
        return StepFailure(step, diff_lines(expected, actual), actual)
    if step.scores:
        if rule_set.scoring is None:
            msg = f"step {step.number} ({step.where}): scores: the rules under test have no scoring: model"
            raise UserInputError(msg)
        leads = [item.lead for item in step.scores]
        observed = observed_scores(engine, rule_set, step.at, leads)
        differences = score_differences(step.scores, observed)
        if differences:
            return StepFailure(step, differences, actual, "the scores differ")
    return None


@contextmanager
def _failures_recorded() -> Iterator[list[str]]:
    """Collect the errors the engine logs at its error boundaries, and silence the rest.

    The engine never raises out of a rule, a firing, a timer or a nurture step: it logs the
    exception and goes on. A test must fail on those instead, naming the exception.
    """
    found: list[str] = []

    def keep(_logger: object, method: str, event: MutableMapping[str, Any]) -> Any:
        if method in {"error", "exception", "critical"} or event.get("exc_info"):
            problem = sys.exc_info()[1]
            ids = " ".join(
                f"{key}={event[key]}"
                for key in ("rule_id", "subject", "lead_id", "sla_id")
                if event.get(key) is not None
            )
            cause = f": {type(problem).__name__}: {problem}" if problem is not None else ""
            found.append(f"{event.get('event')} {ids}{cause}".strip())
        raise structlog.DropEvent

    previous = structlog.get_config()
    structlog.configure(processors=[keep])
    try:
        yield found
    finally:
        structlog.configure(processors=previous["processors"])
