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
from sqlalchemy import Engine, event

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
from leadflow.rule_testing.references import unknown_pools
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
    with tempfile.TemporaryDirectory(prefix="leadflow-test-") as folder:
        store = _ScratchStore(Path(folder))
        loaded = _LoadedRules()
        try:
            return [_run_file(path, base_config, store, loaded) for path in paths]
        finally:
            store.close()


class _ScratchStore:
    """The store each test case runs on: one SQLite file, an empty copy of the schema per case.

    The schema (``metadata.create_all``, the schema the migrations build:
    tests/test_migrations.py keeps them equal) is created once per run in a template file,
    which is copied over the case's store before each case: every case starts from an identical
    empty store, and a copy costs about a millisecond where creating the schema waited on the
    disk for its DDL. Cases share one engine (its pool emptied between them, so no connection
    reaches into the next case's file), and so its cache of compiled SQL, as the daemon's ticks
    do; the first case compiles the engine's statements, the others reuse them. The file is
    scratch, thrown away after the run: ``synchronous=OFF`` spares the disk flush at each of
    the engine's commits (a crash loses nothing that matters here); journal mode, locking and
    every statement are the daemon's.
    """

    def __init__(self, folder: Path) -> None:
        self.template = folder / "schema.db"
        self.path = folder / "case" / "leadflow.db"
        self._engine: Engine | None = None

    def fresh(self) -> Engine:
        """The engine on an empty store: the previous case's file replaced by the template."""
        if self._engine is None:
            self._engine = self._scratch_engine(self.template)
            try:
                metadata.create_all(self._engine)
            finally:
                self._engine.dispose()  # the last connection checkpoints the WAL into the file
            self._engine = self._scratch_engine(self.path)
        else:
            self._engine.dispose()
        for stale in (self.path, *(self.path.with_name(self.path.name + s) for s in _SIDE_FILES)):
            stale.unlink(missing_ok=True)
        shutil.copyfile(self.template, self.path)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @staticmethod
    def _scratch_engine(path: Path) -> Engine:
        engine = create_store_engine(f"sqlite:///{path}")
        # After the store's own pragmas (listeners run in order): no flush to disk at commit.
        event.listen(engine, "connect", _no_flush)
        return engine


_SIDE_FILES = ("-wal", "-shm", "-journal")


def _no_flush(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA synchronous=OFF")


class _LoadedRules:
    """The rule sets (with their templates) already loaded in this run: test files that name
    the same rules with equal settings (every shipped one) share one, read and checked once."""

    def __init__(self) -> None:
        self._loaded: list[tuple[tuple[Path, ...], Settings, TemplateCatalog, RuleSet]] = []

    def get(self, paths: tuple[Path, ...], settings: Settings) -> tuple[TemplateCatalog, RuleSet]:
        for known_paths, known_settings, catalog, rule_set in self._loaded:
            if known_paths == paths and known_settings == settings:
                return catalog, rule_set
        catalog = TemplateCatalog(settings.path(settings.paths.templates), settings)
        rule_set = load_rules_under_test(paths, settings, catalog)
        self._loaded.append((paths, settings, catalog, rule_set))
        return catalog, rule_set


def _run_file(
    path: Path, base_config: Path | None, store: _ScratchStore, loaded: _LoadedRules
) -> FileResult:
    started = time.perf_counter()
    try:
        test_file = read_test_file(path, base_config)
        cases, notes = run_test_file(test_file, store, loaded)
        result = FileResult(test_file.label, cases, notes=notes)
    except ProblemsError as exc:
        result = FileResult(_shown(path), problems=[str(p) for p in exc.problems])
    except UserInputError as exc:
        result = FileResult(_shown(path), problems=str(exc).splitlines())
    result.seconds = time.perf_counter() - started
    return result


def run_test_file(
    test_file: RuleTestFile, store: _ScratchStore, loaded: _LoadedRules
) -> tuple[list[CaseResult], list[str]]:
    """Run every case of ``test_file``, and say what the report should note; a rule set that
    does not load raises ProblemsError."""
    catalog, rule_set = loaded.get(test_file.rules, test_file.settings)
    pools = unknown_pools(test_file.pending_pools, rule_set)
    if pools:
        raise ProblemsError(pools)
    cases = [run_case(test_file, case, rule_set, catalog, store) for case in test_file.cases]
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
    store: _ScratchStore,
) -> CaseResult:
    result = CaseResult(test_file.label, case.name)
    started = time.perf_counter()
    # The schema the migrations build, copied from the run's template rather than migrated (or
    # created) per case: either would dominate the run time.
    engine = store.fresh()
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
        return StepFailure(step, diff_lines(expected, actual, step.zone), actual)
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
