"""Reading a rule test file into typed test cases; every problem as FILE:LINE:COL.

A rule test file (YAML)::

    rules: ../rules                  # folder or list of rule files, relative to this file
    config: ../config.yaml           # optional: calendar, attributes, stages, crm links
    calendar: {timezone: UTC}        # optional: overrides config's business calendar
    start: 2026-03-02T09:00          # no offset: the calendar's timezone
    given:                           # state every test case starts from
      reps: [{external_id: r1, email: rita@example.com, pools: [east]}]
      leads: {from: leads.csv}       # or a CSV/JSONL file read by the importer
    tests:
      - name: a hot lead goes to the east pool
        given: {leads: [{external_id: L1, score: 70, attributes: {region: East}}]}
        steps:
          - at: +0m
            expect:
              - assigned: {lead: L1, rep: r1}
          - at: +4h                  # or a time
            given: {activities: [{lead: L1, type: call, actor: r1}]}
            expect: []               # nothing happens
          - at: +7d                  # scores: the scoring model's result per lead
            scores: [{lead: L1, score: 52, fit: 40, engagement: 12, grade: A3}]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadflow.config import load_settings
from leadflow.errors import ConfigError, Problem, ProblemsError, YamlSyntaxError
from leadflow.rule_language.model import Located
from leadflow.rule_language.validation_messages import explain_validation
from leadflow.rule_language.yaml_source import Path as NodePath
from leadflow.rule_language.yaml_source import SourceDocument, parse_document
from leadflow.rule_testing.actions import KINDS, TIME_FIELDS, Action, time_text, value_text
from leadflow.rule_testing.given import KIND_ORDER, MODELS, GivenBatch, InlineRecord, read_instant
from leadflow.rule_testing.references import (
    NAMED_FIELDS,
    ExpectedName,
    GivenReps,
    PendingPool,
    undeclared_attributes,
)
from leadflow.rule_testing.scores import SCORE_FIELDS, ExpectedScore
from leadflow.rule_testing.written_times import WrittenTime
from leadflow.settings import ImportKind, Settings
from leadflow.suggestions import did_you_mean


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileSpec(_Spec):
    rules: str | list[str]
    templates: str | None = None
    config: str | None = None
    calendar: dict[str, Any] | None = None
    attributes: dict[str, Any] | None = None
    start: Any = None
    given: dict[str, Any] | None = None
    tests: list[Any] = Field(min_length=1)


class CaseSpec(_Spec):
    name: str = Field(min_length=1)
    start: Any = None
    given: dict[str, Any] | None = None
    steps: list[Any] = Field(min_length=1)


class StepSpec(_Spec):
    at: Any
    given: dict[str, Any] | None = None
    expect: list[Any] | None = None
    scores: list[Any] | None = None


class ScoreSpec(_Spec):
    lead: str = Field(min_length=1)
    score: int | None = None
    fit: int | None = None
    engagement: int | None = None
    grade: str | None = None


@dataclass(frozen=True)
class Step:
    number: int
    at: datetime
    shown_at: str
    """The step's time as the test's calendar tells it (ISO 8601 with the offset)."""
    where: Located
    given: tuple[GivenBatch, ...]
    expect: tuple[Action, ...]
    scores: tuple[ExpectedScore, ...] = ()
    expects_actions: bool = True
    """False when the step gives only ``scores:``: its actions are then not compared."""
    zone: tzinfo = UTC
    """The test's calendar timezone: a time written without an offset is in it."""


@dataclass(frozen=True)
class RuleTestCase:
    name: str
    start: datetime
    where: Located
    given: tuple[GivenBatch, ...]
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class RuleTestFile:
    path: Path
    label: str
    settings: Settings
    rules: tuple[Path, ...]
    cases: tuple[RuleTestCase, ...]
    pending_pools: tuple[PendingPool, ...] = ()
    """Expected pools no given rep is in: checked against the rules' pools once loaded."""


def read_test_file(path: Path, base_config: Path | None = None) -> RuleTestFile:
    """The file's test cases; :class:`ProblemsError` lists every problem in it.

    ``base_config`` is the configuration used when the file names none (the one the command
    line uses); the environment is never read, so a test means the same everywhere.
    """
    label = _label(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise ProblemsError([Problem(label, 0, 0, "rule test file not found")]) from None
    except UnicodeDecodeError:
        raise ProblemsError(
            [Problem(label, 1, 1, "not UTF-8 text: save the file as UTF-8")]
        ) from None
    try:
        document = parse_document(label, text)
    except YamlSyntaxError as exc:
        problem = Problem(label, exc.mark.line, exc.mark.column, f"invalid YAML: {exc.message}")
        raise ProblemsError([problem]) from None
    reader = _Reader(path, document)
    found = reader.read(base_config)
    if reader.problems or found is None:
        # The file's own given: is read again for each case: its problems are said once.
        problems = list(dict.fromkeys(reader.problems))
        raise ProblemsError(problems or [Problem(label, 1, 1, "no test cases")])
    return found


def _label(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Reader:
    def __init__(self, path: Path, document: SourceDocument) -> None:
        self.path = path
        self.folder = path.parent
        self.document = document
        self.problems: list[Problem] = []
        self.zone = ZoneInfo("UTC")
        self.settings: Settings | None = None
        self.named: list[ExpectedName] = []
        """Reps and pools the step being read expects, checked against the given reps."""
        self.pending_pools: list[PendingPool] = []

    def located(self, path: NodePath, *, key: bool = False) -> Located:
        mark = self.document.mark(path, key=key)
        return Located(self.document.file, mark.line, mark.column)

    def problem(self, path: NodePath, message: str, *, key: bool = False) -> None:
        where = self.located(path, key=key)
        self.problems.append(Problem(where.file, where.line, where.column, message))

    def validate(
        self,
        model: type[BaseModel],
        data: Any,
        path: NodePath,
        context: dict[str, Any] | None = None,
    ) -> Any:
        try:
            return model.model_validate(data, context=context)
        except ValidationError as exc:
            for message, where, is_key in explain_validation(model, exc, path):
                self.problem(where, message, key=is_key)
            return None

    def read(self, base_config: Path | None) -> RuleTestFile | None:
        data = self.document.data
        if not isinstance(data, dict):
            self.problem((), "expected a mapping with rules:, start:, given: and tests:")
            return None
        spec = self.validate(FileSpec, data, ())
        if not isinstance(spec, FileSpec):
            return None
        settings = self._settings(spec, base_config)
        rules = self._rules(spec)
        if settings is None:
            return None
        self.zone = ZoneInfo(settings.calendar.timezone)
        self.settings = settings
        cases = [self._case(spec, raw, ("tests", index)) for index, raw in enumerate(spec.tests)]
        names = [case.name for case in cases if case is not None]
        for index, case in enumerate(cases):
            if case is not None and names.count(case.name) > 1:
                self.problem(("tests", index, "name"), f"duplicate test name {case.name!r}")
        return RuleTestFile(
            self.path,
            self.document.file,
            settings,
            rules,
            tuple(case for case in cases if case is not None),
            tuple(self.pending_pools),
        )

    def _settings(self, spec: FileSpec, base_config: Path | None) -> Settings | None:
        config = self.folder / spec.config if spec.config else base_config
        if spec.config and config is not None and not config.is_file():
            self.problem(("config",), f"config: file {spec.config!r} not found")
            return None
        overrides: dict[str, Any] = {"database.url": "sqlite://"}
        if spec.templates is not None:
            overrides["paths.templates"] = str((self.folder / spec.templates).resolve())
        if spec.calendar is not None:
            overrides["calendar"] = spec.calendar
        if spec.attributes is not None:
            overrides["attributes"] = spec.attributes
        try:
            return load_settings(config, env={}, overrides=overrides).settings
        except ConfigError as exc:
            for line in str(exc).splitlines():
                message = line.removeprefix("argument: ")
                section = message.split(".", 1)[0].split(":", 1)[0]
                where = section if section in {"calendar", "attributes"} else "config"
                self.problem((where,), message if where != "config" else f"config: {message}")
            return None

    def _rules(self, spec: FileSpec) -> tuple[Path, ...]:
        raws = [spec.rules] if isinstance(spec.rules, str) else spec.rules
        paths = []
        for index, raw in enumerate(raws):
            path = (self.folder / raw).resolve()
            where: NodePath = ("rules",) if isinstance(spec.rules, str) else ("rules", index)
            if not path.exists():
                self.problem(
                    where, f"rules: {raw!r} not found (relative to {_label(self.folder) or '.'})"
                )
            elif len(raws) > 1 and path.is_dir():
                self.problem(where, "rules: give one folder, or a list of rule files")
            paths.append(path)
        return tuple(paths)

    def time(self, value: Any, path: NodePath, anchor: datetime | None) -> datetime | None:
        if anchor is None and not isinstance(value, datetime) and str(value).strip()[:1] in "+-":
            self.problem(path, "a relative time (+2h) needs a start: time")
            return None
        try:
            return read_instant(value, anchor or datetime.now(self.zone), self.zone)
        except ValueError as exc:
            self.problem(path, str(exc))
            return None

    def _case(self, spec: FileSpec, raw: Any, path: NodePath) -> RuleTestCase | None:
        case = self.validate(CaseSpec, raw, path)
        if not isinstance(case, CaseSpec):
            return None
        start_path = (*path, "start") if case.start is not None else ("start",)
        raw_start = case.start if case.start is not None else spec.start
        if raw_start is None:
            self.problem(path, f"test {case.name!r}: no start: time (give one here or at the top)")
            return None
        start = self.time(raw_start, start_path, None)
        if start is None:
            # Reported already; read on with a stand-in so the steps' problems show too.
            start = datetime(2000, 1, 1, tzinfo=UTC)
        given = self.given(spec.given, ("given",), start) + self.given(
            case.given, (*path, "given"), start
        )
        reps = GivenReps.none()
        reps.add(given)
        steps: list[Step] = []
        for index, raw_step in enumerate(case.steps):
            self.named = []
            step = self._step(raw_step, (*path, "steps", index), index + 1, start)
            if step is None:
                continue
            reps.add(step.given)
            self.problems += reps.unknown_reps(self.named)
            self.pending_pools += reps.unknown_pools(self.named)
            if steps and step.at < steps[-1].at:
                self.problem((*path, "steps", index, "at"), "steps must not go back in time")
            steps.append(step)
        return RuleTestCase(case.name, start, self.located(path), given, tuple(steps))

    def _step(self, raw: Any, path: NodePath, number: int, start: datetime) -> Step | None:
        if isinstance(raw, dict) and "expect" not in raw and "scores" not in raw:
            self.problem(
                path, "a step expects actions (expect: [...]), scores (scores: [...]) or both"
            )
        step = self.validate(StepSpec, raw, path)
        if not isinstance(step, StepSpec):
            return None
        at = self.time(step.at, (*path, "at"), start)
        if at is None:
            return None
        if step.expect is None and step.scores is None:
            return None
        given = self.given(step.given, (*path, "given"), at)
        expect = tuple(self._expected(step.expect or [], (*path, "expect"), at))
        scores = tuple(self._scores(step.scores or [], (*path, "scores")))
        shown = at.astimezone(self.zone).isoformat(timespec="seconds")
        return Step(
            number,
            at,
            shown,
            self.located(path),
            given,
            expect,
            scores,
            expects_actions=step.expect is not None,
            zone=self.zone,
        )

    def _scores(self, raws: list[Any], path: NodePath) -> Iterable[ExpectedScore]:
        for index, raw in enumerate(raws):
            here = (*path, index)
            spec = self.validate(ScoreSpec, raw, here)
            if not isinstance(spec, ScoreSpec):
                continue
            given = [name for name in SCORE_FIELDS if name in spec.model_fields_set]
            if not given:
                self.problem(here, f"scores: give one or more of {', '.join(SCORE_FIELDS)}")
                continue
            values = tuple(
                (name, None if getattr(spec, name) is None else str(getattr(spec, name)))
                for name in given
            )
            yield ExpectedScore(spec.lead, values, self.located(here))

    def given(
        self, raw: dict[str, Any] | None, path: NodePath, anchor: datetime
    ) -> tuple[GivenBatch, ...]:
        batches: list[GivenBatch] = []
        for kind, value in (raw or {}).items():
            if kind not in KIND_ORDER:
                expected = f"expected one of {', '.join(KIND_ORDER)}"
                hint = did_you_mean(str(kind), KIND_ORDER, otherwise=expected)
                self.problem((*path, kind), f"given: unknown kind {kind!r}; {hint}", key=True)
                continue
            batch = self._batch(kind, value, (*path, kind), anchor)
            if batch is not None:
                batches.append(batch)
        return tuple(batches)

    def _batch(
        self, kind: ImportKind, value: Any, path: NodePath, anchor: datetime
    ) -> GivenBatch | None:
        if isinstance(value, dict) and set(value) == {"from"}:
            source = (self.folder / str(value["from"])).resolve()
            if not source.is_file():
                self.problem((*path, "from"), f"{kind}: file {value['from']!r} not found")
                return None
            return GivenBatch(kind, source=source)
        if not isinstance(value, list):
            self.problem(
                path, f"{kind}: expected a list of records (- external_id: ...) or from: FILE"
            )
            return None
        context = {"anchor": anchor, "zone": self.zone}
        records = []
        for index, item in enumerate(value):
            here = (*path, index)
            record = self.validate(MODELS[kind], item, here, context)
            if record is None:
                continue
            attributes = item.get("attributes") if isinstance(item, dict) else None
            if self.settings is not None and isinstance(attributes, dict):
                for name, message in undeclared_attributes(kind, attributes, self.settings):
                    self.problem((*here, "attributes", name), message, key=True)
            fields = {str(name): self.located((*here, name)) for name in item}
            records.append(InlineRecord(record, self.located(here), fields))
        return GivenBatch(kind, records=tuple(records))

    def _expected(self, raws: list[Any], path: NodePath, at: datetime) -> Iterable[Action]:
        for index, raw in enumerate(raws):
            here = (*path, index)
            if not isinstance(raw, dict) or len(raw) != 1:
                self.problem(
                    here,
                    f"an expected action is one key naming it, e.g. '- assigned: {{lead: L1, rep: r1}}'; expected one of {', '.join(KINDS)}",
                )
                continue
            name, values = next(iter(raw.items()))
            kind = KINDS.get(str(name))
            if kind is None:
                hint = did_you_mean(str(name), KINDS, suffix=" ")
                self.problem(
                    (*here, name),
                    f"unknown action {name!r}; {hint}expected one of {', '.join(KINDS)}",
                    key=True,
                )
                continue
            action = self._action(kind.name, values, (*here, name), at)
            if action is not None:
                yield action

    def _action(self, name: str, values: Any, path: NodePath, at: datetime) -> Action | None:
        kind = KINDS[name]
        if not isinstance(values, dict):
            self.problem(path, f"{name}: expected a mapping of {', '.join(kind.fields)}")
            return None
        problems = len(self.problems)
        for field in values:
            if field not in kind.fields:
                expected = f"expected {', '.join(kind.fields)}"
                hint = did_you_mean(str(field), kind.fields, otherwise=expected)
                self.problem((*path, field), f"{name}: unknown field {field!r}; {hint}", key=True)
            elif isinstance(values[field], dict | list):
                self.problem(
                    (*path, field), f"{name}: {field}: expected one value, not a list or mapping"
                )
        missing = [field for field in kind.keys if field not in values]
        if missing:
            self.problem(path, f"{name}: missing {', '.join(missing)}")
        if len(self.problems) > problems:
            return None
        shown: list[tuple[str, str | None]] = []
        written: list[tuple[str, WrittenTime]] = []
        for field in kind.fields:
            if field not in values:
                continue
            if field in TIME_FIELDS and values[field] is not None:
                moment = self.time(values[field], (*path, field), at)
                shown.append((field, None if moment is None else time_text(moment)))
                text = self.document.plain.get((*path, field), str(values[field]))
                written.append((field, WrittenTime.of(text, self.zone, at)))
            else:
                shown.append((field, value_text(values[field])))
            named = NAMED_FIELDS.get((name, field))
            if named is not None and values[field] is not None:
                label = f"{name}: {field}"
                where = self.located((*path, field))
                self.named.append(ExpectedName(named, str(values[field]), label, where))
        compared = frozenset(kind.keys + kind.always) | frozenset(values)
        return Action(name, tuple(shown), compared, tuple(written))
