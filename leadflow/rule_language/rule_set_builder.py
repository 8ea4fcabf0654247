"""One rule set's contents, file by file: the rules, streams and scoring model each parsed file
defines, checked against each other once every file is read, and every problem along the way.

The loader (:mod:`leadflow.rule_language.loader`) finds and reads the files; this turns their
bytes into typed objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

from leadflow.errors import (
    MISSING_TEMPLATES_FOLDER,
    Problem,
    YamlSyntaxError,
    not_utf8_position,
)
from leadflow.rule_language.actions import (
    ACTION_TYPES,
    DEAL_ONLY,
    LEAD_ONLY,
    SHORTHAND,
    Action,
    Assign,
    Enroll,
    Notify,
    SetStage,
    StartSla,
)
from leadflow.rule_language.conditions import Condition, ConditionParser
from leadflow.rule_language.fields import Subject, field_catalog
from leadflow.rule_language.model import (
    FileSpec,
    Located,
    NurtureStream,
    OncePer,
    Reentry,
    Rule,
    RuleSpec,
    StreamSpec,
    StreamStep,
    content_digest,
)
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.rule_language.scoring_reader import ScoringReader
from leadflow.rule_language.stream_messages import stream_owner, validated_stream
from leadflow.rule_language.validation_messages import validated
from leadflow.rule_language.yaml_source import Path as NodePath
from leadflow.rule_language.yaml_source import SourceDocument, parse_document
from leadflow.settings import Settings
from leadflow.suggestions import did_you_mean

TemplateCheck = Callable[[str], list[Problem]]
"""Checks a template by name: its parts exist, compile and render with a full sample context."""
ContextCheck = Callable[[str, Mapping[str, str]], list[Problem]]
"""Checks a sound template again with the context keys its sender leaves empty (key -> why)."""

_STREAM_STEP_LACKS = {
    key: "a nurture email has only the lead and the rule"
    for key in ("rep", "owner", "manager", "deal", "sla")
}
_ESCALATION_LACKS = {"deal": "an SLA escalation is about a lead, not a deal"}


class RuleSetBuilder:
    """Collects rules and streams from every file, and every problem along the way."""

    def __init__(
        self,
        settings: Settings,
        check_template: TemplateCheck | None,
        check_context: ContextCheck | None = None,
    ) -> None:
        self.settings = settings
        self.check_template = check_template
        self.check_context = check_context
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        """Printed by ``check``, refusing nothing (see :attr:`RuleSet.warnings`)."""
        self.rules: list[Rule] = []
        self.streams: dict[str, NurtureStream] = {}
        self.scoring: ScoringModel | None = None
        self._rule_locations: dict[str, Located] = {}
        self._template_uses: list[tuple[str, str, Located, Mapping[str, str]]] = []
        self._stream_uses: list[tuple[str, str, Located]] = []
        self._renames: list[tuple[str, str, Located]] = []
        """(stream, an id it was renamed from, where that id is written)."""
        self.refused_streams: set[str] = set()
        """Streams defined but refused for a problem of their own: a rule enrolling one is not
        blamed for an unknown stream as well."""
        self._template_results: dict[str, list[Problem]] = {}
        self._context_results: dict[tuple[str, tuple[tuple[str, str], ...]], list[Problem]] = {}

    def add_file(self, label: str, raw: bytes) -> None:
        if b"\0" in raw:
            self.problems.append(Problem(label, 1, 1, "binary file: a rule file must be YAML text"))
            return
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line, column = not_utf8_position(raw, exc)
            self.problems.append(
                Problem(label, line, column, "not UTF-8 text: save the file as UTF-8")
            )
            return
        try:
            document = parse_document(label, text)
        except YamlSyntaxError as exc:
            self.problems.append(
                Problem(label, exc.mark.line, exc.mark.column, f"invalid YAML: {exc.message}")
            )
            return
        if document.data is None:
            # A save cut short (an editor's truncate-then-write, a copy interrupted) leaves an
            # empty file: taken as "no rules", it would quietly drop the file's live rules.
            self.problems.append(Problem(label, 1, 1, _nothing_in(label, text)))
            return
        for path, mark in document.duplicate_keys:
            self.problems.append(
                Problem(
                    label,
                    mark.line,
                    mark.column,
                    f"duplicate key {path[-1]!r}: each key may appear once",
                )
            )
        _FileReader(self, document).read()

    def problem(
        self, document: SourceDocument, path: NodePath, message: str, *, key: bool = False
    ) -> None:
        mark = document.mark(path, key=key)
        self.problems.append(Problem(document.file, mark.line, mark.column, message))

    def add_rule(self, rule: Rule, document: SourceDocument, path: NodePath) -> None:
        earlier = self._rule_locations.get(rule.id)
        if earlier is not None:
            self.problem(
                document,
                (*path, "id"),
                f"rule {rule.id}: duplicate id, already defined at {earlier}",
            )
            return
        self._rule_locations[rule.id] = rule.location
        self.rules.append(rule)

    def add_stream(self, stream: NurtureStream, document: SourceDocument, path: NodePath) -> None:
        earlier = self.streams.get(stream.id)
        if earlier is not None:
            self.problem(
                document,
                (*path, "id"),
                f"stream {stream.id}: duplicate id, already defined at {earlier.location}",
            )
            return
        self.streams[stream.id] = stream

    def add_scoring(self, model: ScoringModel, document: SourceDocument, path: NodePath) -> None:
        if self.scoring is not None:
            self.problem(
                document,
                path,
                f"a rule set has one scoring model; one is already defined at {self.scoring.location}",
                key=True,
            )
            return
        self.scoring = model

    def use_template(
        self, owner: str, name: str, where: Located, unavailable: Mapping[str, str]
    ) -> None:
        """Note a template used at ``where``; ``unavailable``: context keys its sender leaves
        empty, and why (checked once all files are read)."""
        self._template_uses.append((owner, name, where, unavailable))

    def use_stream(self, owner: str, name: str, where: Located) -> None:
        self._stream_uses.append((owner, name, where))

    def rename_stream(self, stream_id: str, old_id: str, where: Located) -> None:
        self._renames.append((stream_id, old_id, where))

    def check_references(self) -> None:
        self._check_renames()
        renamed_to = {old: new for new, old, _ in self._renames}
        for owner, name, where in self._stream_uses:
            if name not in self.streams and name not in self.refused_streams:
                known = [*self.streams, *self.refused_streams]
                hint = (
                    f"stream {renamed_to[name]} was renamed from it: enroll in {renamed_to[name]}"
                    if name in renamed_to
                    else did_you_mean(name, known, otherwise="define it under streams:")
                )
                self.problems.append(
                    Problem(
                        where.file,
                        where.line,
                        where.column,
                        f"{owner}: unknown stream {name!r}; {hint}",
                    )
                )
        if self.check_template is None:
            return
        missing_folder = False
        for owner, name, where, unavailable in self._template_uses:
            for found in self._template_problems(name, unavailable):
                if found.message == MISSING_TEMPLATES_FOLDER:
                    # One line for the folder, not one for each template a rule uses.
                    if not missing_folder:
                        self.problems.append(found)
                    missing_folder = True
                    continue
                self.problems.append(
                    Problem(
                        where.file, where.line, where.column, f"{owner}: template {name!r}: {found}"
                    )
                )

    def _check_renames(self) -> None:
        """An id a stream was renamed from names no stream of the set, and one stream only:
        otherwise whose enrollments those are would be a guess."""
        claimed: dict[str, str] = {}
        for stream_id, old_id, where in self._renames:
            if old_id == stream_id:
                why = "is the stream's own id"
            elif old_id in self.streams:
                why = (
                    f"is a stream defined at {self.streams[old_id].location}; a renamed stream "
                    "is no longer there under its old id: remove one of the two"
                )
            elif old_id in claimed:
                why = f"is already claimed by stream {claimed[old_id]}: only one stream can be it"
            else:
                claimed[old_id] = stream_id
                continue
            self.problems.append(
                Problem(
                    where.file,
                    where.line,
                    where.column,
                    f"stream {stream_id}: renamed_from {old_id!r} {why}",
                )
            )

    def _template_problems(self, name: str, unavailable: Mapping[str, str]) -> list[Problem]:
        """The template's own problems (checked once per name), else those of this use."""
        assert self.check_template is not None
        if name not in self._template_results:
            self._template_results[name] = self.check_template(name)
        if self._template_results[name] or self.check_context is None or not unavailable:
            return self._template_results[name]
        key = (name, tuple(sorted(unavailable.items())))
        if key not in self._context_results:
            self._context_results[key] = self.check_context(name, unavailable)
        return self._context_results[key]


class _FileReader:
    """Reads the rules and streams of one parsed file into the builder."""

    def __init__(self, builder: RuleSetBuilder, document: SourceDocument) -> None:
        self.builder = builder
        self.document = document
        self.settings = builder.settings
        self._subject = Subject.LEAD
        self._starts_sla = False
        """The rule whose actions are being read: its subject, and whether it starts an SLA."""

    def located(self, path: NodePath) -> Located:
        mark = self.document.mark(path)
        return Located(self.document.file, mark.line, mark.column)

    def read(self) -> None:
        data = self.document.data
        if not isinstance(data, dict):
            self.builder.problem(
                self.document,
                (),
                "expected a mapping with rules:, streams: and/or scoring: at the top of the file",
            )
            return
        if not data:
            # '{}' says no more than an empty file does (a template or a tool's output cut to
            # its braces), and was taken as "no rules": the file's live rules dropped quietly.
            self.builder.problem(
                self.document,
                (),
                "the file holds only an empty mapping ({}), with no rules:, streams: or "
                "scoring: key: delete it to remove its rules, or write 'rules: []' to keep it "
                "without any (refused so that a save cut short never removes live rules)",
            )
            return
        self._validate(FileSpec, data, (), owner="")
        # An unknown top-level key must not hide the problems inside the rules.
        rules, streams = data.get("rules"), data.get("streams")
        for index, raw in enumerate(rules if isinstance(rules, list) else []):
            self._rule(raw, ("rules", index))
        for index, raw in enumerate(streams if isinstance(streams, list) else []):
            self._stream(raw, ("streams", index))
        if "scoring" in data and _no_criteria(data["scoring"]):
            # A save cut short at 'scoring:' (or a section emptied by mistake) was read as "no
            # model": the live model went quietly, and scores posted meanwhile were kept as is.
            self.builder.problem(
                self.document,
                ("scoring",),
                "scoring: expected its criteria (fit: and/or engagement:), or 'enabled: false' "
                "to turn scoring off (refused so that a save cut short never removes the live "
                "model)",
                key=True,
            )
        elif data.get("scoring") is not None:
            reader = ScoringReader(self.document, self.settings)
            model = reader.read(data["scoring"], ("scoring",))
            self.builder.problems += reader.problems
            self.builder.warnings += reader.warnings
            if model is not None:
                self.builder.add_scoring(model, self.document, ("scoring",))

    def _validate(
        self, model: type[BaseModel], data: Any, path: NodePath, owner: str
    ) -> BaseModel | None:
        def report(where: NodePath, message: str, is_key: bool) -> None:
            self.builder.problem(self.document, where, message, key=is_key)

        return validated(model, data, path, owner, report)

    def _rule(self, raw: Any, path: NodePath) -> None:
        rule_id = raw.get("id") if isinstance(raw, dict) else None
        owner = f"rule {_shown_id(rule_id)}: " if isinstance(rule_id, str) else ""
        before = len(self.builder.problems)
        spec = self._validate(RuleSpec, raw, path, owner)
        if not isinstance(raw, dict):
            return
        owner = owner.removesuffix(": ") or "rule"
        subject = Subject(spec.subject) if isinstance(spec, RuleSpec) else _subject_of(raw)
        condition = None
        if "when" in raw:
            condition = self._condition(raw["when"], subject, (*path, "when"), owner)
        raw_actions = raw.get("actions")
        actions: tuple[Action, ...] = ()
        if isinstance(raw_actions, list):
            self._subject = subject
            self._starts_sla = any(isinstance(a, dict) and "start_sla" in a for a in raw_actions)
            actions = tuple(self._actions(raw_actions, subject, (*path, "actions"), owner))
        if not isinstance(spec, RuleSpec) or condition is None:
            return
        if len(self.builder.problems) > before:
            return
        reentry = (
            Reentry("once_per", spec.reentry.once_per)
            if isinstance(spec.reentry, OncePer)
            else Reentry(spec.reentry)
        )
        rule = Rule(
            id=spec.id,
            description=spec.description,
            enabled=spec.enabled,
            subject=subject,
            schedule=spec.schedule(),
            condition=condition,
            reentry=reentry,
            actions=actions,
            digest=content_digest(raw),
            location=self.located(path),
        )
        self.builder.add_rule(rule, self.document, path)

    def _condition(
        self, data: Any, subject: Subject, path: NodePath, owner: str
    ) -> Condition | None:
        catalog = field_catalog(subject, self.settings)
        parser = ConditionParser(self.document, catalog, self.settings.stages.all())
        condition = parser.parse(data, path)
        for found in parser.problems:
            message = f"{owner}: {found.message}"
            self.builder.problems.append(Problem(found.file, found.line, found.column, message))
        for found in parser.warnings:
            message = f"{owner}: {found.message}"
            self.builder.warnings.append(Problem(found.file, found.line, found.column, message))
        return condition

    def _actions(
        self, raws: list[Any], subject: Subject, path: NodePath, owner: str
    ) -> Iterable[Action]:
        for index, raw in enumerate(raws):
            here = (*path, index)
            if not isinstance(raw, dict) or len(raw) != 1:
                self.builder.problem(
                    self.document,
                    here,
                    f"{owner}: an action is one key naming it, e.g. '- set_stage: mql'; expected one of {', '.join(ACTION_TYPES)}",
                )
                continue
            name, value = next(iter(raw.items()))
            kind = ACTION_TYPES.get(str(name))
            if kind is None:
                hint = did_you_mean(str(name), ACTION_TYPES, suffix=" ")
                self.builder.problem(
                    self.document,
                    (*here, name),
                    f"{owner}: unknown action {name!r}; {hint}expected one of {', '.join(ACTION_TYPES)}",
                    key=True,
                )
                continue
            if (name in LEAD_ONLY and subject is Subject.DEAL) or (
                name in DEAL_ONLY and subject is Subject.LEAD
            ):
                self.builder.problem(
                    self.document,
                    (*here, name),
                    f"{owner}: {name} is not available in a {subject.value} rule",
                    key=True,
                )
                continue
            if not isinstance(value, dict) and name in SHORTHAND:
                value = {SHORTHAND[str(name)]: value}
            action = self._validate(kind, value, (*here, name), f"{owner}: {name}: ")
            if action is not None:
                self._check_action(action, (*here, name), owner)
                yield action  # type: ignore[misc]

    def _check_action(self, action: BaseModel, path: NodePath, owner: str) -> None:
        where = self.located(path)
        stages = self.settings.stages.all()
        if isinstance(action, SetStage) and action.stage not in stages:
            hint = did_you_mean(action.stage, stages, suffix=" ")
            self.builder.problem(
                self.document,
                path,
                f"{owner}: unknown stage {action.stage!r}; {hint}stages are {', '.join(stages)}",
            )
        elif isinstance(action, Notify):
            self.builder.use_template(owner, action.template, where, self._notify_lacks(action))
        elif isinstance(action, Enroll):
            self.builder.use_stream(owner, action.stream, where)
        elif isinstance(action, StartSla):
            self._check_sla(action, path, owner)
        elif isinstance(action, Assign) and action.route_by is not None:
            catalog = field_catalog(Subject.LEAD, self.settings)
            if catalog.get(action.route_by) is None:
                self.builder.problem(
                    self.document,
                    (*path, "route_by"),
                    f"{owner}: route_by: {catalog.unknown_message(action.route_by)}",
                )

    def _notify_lacks(self, action: Notify) -> dict[str, str]:
        """The context keys a ``notify`` of the rule being read leaves empty, and why."""
        lacks: dict[str, str] = {}
        if self._subject is Subject.LEAD:
            lacks["deal"] = "a lead rule's email has no deal"
        if not self._starts_sla:
            lacks["sla"] = "the rule has no start_sla"
        if action.to == "lead":
            lacks["rep"] = "an email to the lead has no receiving rep"
        return lacks

    def _check_sla(self, action: StartSla, path: NodePath, owner: str) -> None:
        calendars = {"default", *getattr(self.settings, "calendars", {})}
        if action.calendar not in calendars:
            self.builder.problem(
                self.document,
                (*path, "calendar"),
                f"{owner}: unknown calendar {action.calendar!r}; known: {', '.join(sorted(calendars))}",
            )
        for index, level in enumerate(action.escalate):
            if level.template is not None:
                self.builder.use_template(
                    owner,
                    level.template,
                    self.located((*path, "escalate", index, "template")),
                    _ESCALATION_LACKS,
                )

    def _stream(self, raw: Any, path: NodePath) -> None:
        stream_id = raw.get("id") if isinstance(raw, dict) else None

        def report(where: NodePath, message: str, is_key: bool) -> None:
            self.builder.problem(self.document, where, message, key=is_key)

        spec = validated_stream(raw, path, report)
        if not isinstance(spec, StreamSpec):
            if isinstance(stream_id, str):
                self.builder.refused_streams.add(stream_id)
            return
        steps = []
        for index, step in enumerate(spec.steps):
            self.builder.use_template(
                stream_owner(spec.id, index + 1),
                step.template,
                self.located((*path, "steps", index, "template")),
                _STREAM_STEP_LACKS,
            )
            steps.append(StreamStep(template=step.template, after=step.after or timedelta(0)))
        stream = NurtureStream(
            id=spec.id,
            description=spec.description,
            allow_parallel=spec.allow_parallel,
            steps=tuple(steps),
            location=self.located(path),
            renamed_from=tuple(spec.renamed_from),
        )
        for index, old_id in enumerate(spec.renamed_from):
            self.builder.rename_stream(
                spec.id, old_id, self.located((*path, "renamed_from", index))
            )
        self.builder.add_stream(stream, self.document, path)


def _nothing_in(label: str, text: str) -> str:
    """Why a file whose YAML is no document at all is refused, and the two ways out."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        what = "the file is empty"
    elif all(line.startswith("#") for line in lines):
        what = "the file holds only comments"
    else:
        what = "the file holds no document (null)"
    if PurePath(label).stem.lower() == "scoring":
        # The scoring model's own file: 'rules: []' would keep it and drop the model unsaid.
        return (
            f"{what}: delete it to remove the scoring model, or write 'scoring: "
            "{enabled: false}' to turn scoring off (refused so that a save cut short never "
            "removes the live model)"
        )
    return (
        f"{what}: delete it to remove its rules, or write 'rules: []' to keep it without any "
        "(refused so that a save cut short never removes live rules)"
    )


def _no_criteria(raw: Any) -> bool:
    """A ``scoring:`` section that is nothing at all (``scoring:`` alone, ``{}``), or enabled
    with only a description: what a save cut short leaves, never a model."""
    if raw is None:
        return True
    if not isinstance(raw, dict):
        return False  # the reader says what a section must be
    return raw.get("enabled", True) is not False and raw.keys() <= {"description", "enabled"}


def _subject_of(raw: dict[str, Any]) -> Subject:
    return Subject.DEAL if raw.get("subject") == "deal" else Subject.LEAD


def _shown_id(rule_id: str) -> str:
    """The id as written, or quoted with escapes when it holds a control character (a NUL or
    an escape sequence in the id must not reach the terminal that prints the problem)."""
    return rule_id if rule_id.isprintable() else repr(rule_id)
