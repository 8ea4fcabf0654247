"""The actions a rule can take, as frozen typed objects validated from the rule file.

Each action is written as a one-key mapping naming it, e.g. ``- set_stage: mql`` or
``- notify: {to: owner, template: mql_assigned}``; scalar shorthands are expanded into the
action's only required option. ``SHORTHAND`` and ``ACTION_TYPES`` are the grammar.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from leadflow.durations import not_a_duration, parse_duration


def parse_rule_duration(value: object) -> timedelta:
    """A positive duration of at most :data:`LONGEST_DURATION`; :class:`DurationError` if not."""
    if not isinstance(value, str | int | float | timedelta):
        raise not_a_duration(value)
    return parse_duration(value)  # its own bounds: positive, at most LONGEST_DURATION


def _allow_zero(value: object) -> timedelta:
    if value in (0, "0", "0h", "0m", "0s", "0d") or value == timedelta(0):
        return timedelta(0)
    return parse_rule_duration(value)


Duration = Annotated[timedelta, BeforeValidator(parse_rule_duration)]
"""A duration in a rule file: ``90m``, ``4h``, ``2d``, ``1w``, or seconds."""
OffsetDuration = Annotated[timedelta, BeforeValidator(_allow_zero)]
"""A duration that may also be zero (the first step of a stream, the first escalation)."""
_RECIPIENT = re.compile(r"^(owner|manager|lead|rep:[^\s]+)$")


def _recipient(value: str) -> str:
    if not _RECIPIENT.match(value):
        msg = "expected owner, manager, lead or rep:<external id>"
        raise ValueError(msg)
    return value


Recipient = Annotated[str, AfterValidator(_recipient)]
TemplateName = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")]


class ActionSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SetStage(ActionSpec):
    """Move the lead to a stage (for a deal rule: the deal's lead)."""

    stage: str


ScorePoints = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
"""Scores are stored in a 32-bit column; a million either way is far beyond any real model."""


class AdjustScore(ActionSpec):
    """Add to the lead's score (negative to lower it)."""

    by: ScorePoints


class SetScore(ActionSpec):
    """Set the lead's score."""

    to: ScorePoints


class Assign(ActionSpec):
    """Give the lead an owner from a pool of reps, or from a pool chosen by a lead field."""

    pool: str | None = None
    route_by: str | None = None
    pools: dict[str, str] = {}
    default_pool: str | None = None
    strategy: Literal["round_robin", "least_loaded"] = "round_robin"
    prefer_previous_owner: bool = True

    @model_validator(mode="after")
    def _one_way_to_choose_a_pool(self) -> Assign:
        if (self.pool is None) == (self.route_by is None):
            msg = "give either pool: NAME, or route_by: FIELD with pools: {value: pool}"
            raise ValueError(msg)
        if self.route_by is not None and not self.pools and self.default_pool is None:
            msg = "route_by needs pools: {value: pool} and/or default_pool:"
            raise ValueError(msg)
        return self


class Notify(ActionSpec):
    """Email someone from a template (operational to reps, marketing to the lead)."""

    to: Recipient
    template: TemplateName


class EscalationLevel(ActionSpec):
    """One rung of an SLA's escalation ladder, reached ``after`` business time past due."""

    after: OffsetDuration = timedelta(0)
    notify: Literal["owner", "manager"] | None = None
    template: TemplateName | None = None
    reassign: bool = False

    @model_validator(mode="after")
    def _does_something(self) -> EscalationLevel:
        if self.notify is None and not self.reassign:
            msg = "an escalation level must notify: owner|manager, or reassign: true"
            raise ValueError(msg)
        if self.notify is not None and self.template is None:
            msg = "notify needs a template:"
            raise ValueError(msg)
        return self


class MetBy(ActionSpec):
    """What meets the SLA: an activity of these types by the owner, or leaving the stage."""

    activities: tuple[str, ...] = ("call", "email", "meeting")
    stage_change: bool = True


class StartSla(ActionSpec):
    """Start a named SLA timer, due after ``within`` business time of ``calendar``."""

    name: str = Field(min_length=1, max_length=100)
    within: Duration
    calendar: str = "default"
    met_by: MetBy = MetBy()
    escalate: tuple[EscalationLevel, ...] = ()
    counted_from: Literal["now", "stage_entered_at"] = Field(default="now", alias="from")
    """When the clock starts: the firing (``now``) or when the lead entered its stage, for MQLs
    moved in from a CRM with their stage time (``stage_entered_at``)."""

    @model_validator(mode="after")
    def _ladder_in_order(self) -> StartSla:
        offsets = [level.after for level in self.escalate]
        if offsets != sorted(offsets):
            msg = "escalate: levels must be in order of after:"
            raise ValueError(msg)
        return self


class Enroll(ActionSpec):
    """Enroll the lead in a nurture stream."""

    stream: str


class CloseDeal(ActionSpec):
    """Close the deal (deal rules only): recycled back to nurture, or lost."""

    outcome: Literal["recycled", "lost"] = "recycled"
    reason: str = Field(min_length=1, max_length=500)


Action = SetStage | AdjustScore | SetScore | Assign | Notify | StartSla | Enroll | CloseDeal

ACTION_TYPES: dict[str, type[ActionSpec]] = {
    "set_stage": SetStage,
    "adjust_score": AdjustScore,
    "set_score": SetScore,
    "assign": Assign,
    "notify": Notify,
    "start_sla": StartSla,
    "enroll": Enroll,
    "close_deal": CloseDeal,
}
SHORTHAND = {"set_stage": "stage", "adjust_score": "by", "set_score": "to", "enroll": "stream"}
LEAD_ONLY = frozenset({"assign", "start_sla"})
DEAL_ONLY = frozenset({"close_deal"})


def action_name(action: ActionSpec) -> str:
    """The rule-file name of an action object."""
    for name, kind in ACTION_TYPES.items():
        if isinstance(action, kind):
            return name
    msg = f"unknown action {action!r}"
    raise TypeError(msg)
