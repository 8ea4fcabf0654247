"""Rules, nurture streams and the rule set: frozen, typed, versioned."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from leadflow.errors import Problem
from leadflow.rule_language.actions import (
    Action,
    Duration,
    Notify,
    OffsetDuration,
    TemplateName,
)
from leadflow.rule_language.conditions import Condition
from leadflow.rule_language.fields import Subject
from leadflow.rule_language.schedule import Schedule
from leadflow.setting_types import TimezoneName

RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,99}$"


def content_digest(raw: Any) -> str:
    """A short hash of a rule's or a model's part as written, whatever its keys' order: it
    changes exactly when what the part says does."""
    canonical = json.dumps(raw, sort_keys=True, default=str).encode()
    return hashlib.sha256(canonical).hexdigest()[:10]


class Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OncePer(Spec):
    once_per: Duration


def _runnable_cron(expression: str) -> str:
    return Schedule.crontab(expression, "UTC").cron or expression


CronExpression = Annotated[str, AfterValidator(_runnable_cron)]
"""Five cron fields, minute hour day month weekday (Debian's cron: 0 or 7 is Sunday)."""

DEFAULT_EVERY = timedelta(minutes=5)


class RuleSpec(Spec):
    """The shape of one rule in a file; ``when`` and ``actions`` are parsed separately."""

    id: str = Field(pattern=RULE_ID_PATTERN)
    description: str = ""
    enabled: bool = True
    subject: Literal["lead", "deal"] = "lead"
    every: Duration | None = None
    cron: CronExpression | None = None
    timezone: TimezoneName | None = None
    when: Any
    reentry: Literal["once", "every_time"] | OncePer = "once"
    actions: list[Any] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_schedule(self) -> RuleSpec:
        if self.cron is not None and self.every is not None:
            msg = "give either every: or cron:, not both"
            raise ValueError(msg)
        if self.cron is not None and self.timezone is None:
            msg = "a cron: schedule needs timezone: (an IANA name such as Europe/Berlin)"
            raise ValueError(msg)
        if self.cron is None and self.timezone is not None:
            msg = "timezone: belongs to a cron: schedule; every: counts from the last run"
            raise ValueError(msg)
        return self

    def schedule(self) -> Schedule:
        if self.cron is not None and self.timezone is not None:
            return Schedule.crontab(self.cron, self.timezone)
        return Schedule.interval(self.every or DEFAULT_EVERY)


class StepSpec(Spec):
    template: TemplateName
    after: OffsetDuration = timedelta(0)


StreamId = Annotated[str, Field(pattern=RULE_ID_PATTERN)]


def _as_list(value: Any) -> Any:
    """``renamed_from: welcome`` reads as ``[welcome]``."""
    return [value] if isinstance(value, str) else value


class StreamSpec(Spec):
    id: StreamId
    description: str = ""
    renamed_from: Annotated[list[StreamId], BeforeValidator(_as_list)] = []
    allow_parallel: bool = False
    steps: list[StepSpec] = Field(min_length=1)


class FileSpec(Spec):
    rules: list[Any] = []
    streams: list[Any] = []
    scoring: Any = None


@dataclass(frozen=True)
class Reentry:
    """Whether a rule may act again on a lead it already acted on (Marketo's qualification)."""

    mode: Literal["once", "every_time", "once_per"]
    period: timedelta | None = None

    def describe(self) -> str:
        if self.mode == "once_per" and self.period is not None:
            from leadflow.durations import format_duration

            return f"once per {format_duration(self.period)}"
        return self.mode.replace("_", " ")


@dataclass(frozen=True)
class Located:
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    enabled: bool
    subject: Subject
    schedule: Schedule
    condition: Condition
    reentry: Reentry
    actions: tuple[Action, ...]
    digest: str
    """Content hash of this rule alone: changes exactly when the rule's text changes."""
    location: Located = field(compare=False)


@dataclass(frozen=True)
class StreamStep:
    template: str
    after: timedelta


@dataclass(frozen=True)
class NurtureStream:
    id: str
    description: str
    allow_parallel: bool
    steps: tuple[StreamStep, ...]
    location: Located = field(compare=False)
    renamed_from: tuple[str, ...] = ()
    """The ids this stream had before (``renamed_from:``): enrollments made under one of them
    are this stream's, and go on where they are."""


@dataclass(frozen=True)
class RuleSet:
    """One immutable, validated snapshot of the rules folder."""

    rules: tuple[Rule, ...]
    streams: Mapping[str, NurtureStream]
    version: str
    """Content hash of every rule file, plus ``+git.<commit>`` in a git checkout."""
    files: tuple[str, ...] = ()
    scoring: Any = None
    """The :class:`~leadflow.rule_language.scoring_model.ScoringModel` when a file defines
    ``scoring:``; then leadflow owns each lead's score. None: scores come from the CRM."""
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
    """What ``leadflow check`` prints as a warning without refusing the set (a value repeated
    in an ``in:`` list): the daemon runs the set as it is."""
    templates: Any = field(default=None, compare=False)
    """The email templates as they were when this set was validated (a frozen catalog): the
    engine renders from these, so templates change only together with a good rule set."""

    @property
    def active_scoring(self) -> Any:
        """The scoring model when it is enabled: then every tick rescores the leads."""
        return self.scoring if self.scoring is not None and self.scoring.enabled else None

    def stream_for(self, stream_id: str) -> NurtureStream | None:
        """The stream an enrollment made under ``stream_id`` is in now: the stream of that id,
        or the one renamed from it; None when the set has neither."""
        found = self.streams.get(stream_id)
        if found is not None:
            return found
        return next(
            (stream for stream in self.streams.values() if stream_id in stream.renamed_from),
            None,
        )

    def rule(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)

    @property
    def enabled_rules(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.enabled)

    @property
    def sends_marketing(self) -> bool:
        """Whether any email of this set is marketing (carries an unsubscribe link): a nurture
        stream's steps, or a rule's ``notify: {to: lead}``."""
        return bool(self.streams) or any(
            isinstance(action, Notify) and action.to == "lead"
            for rule in self.rules
            for action in rule.actions
        )
