"""The lead scoring model of a rule set: fit criteria, engagement criteria and grades.

Written under ``scoring:`` in one file of the rules folder (docs/scoring.md). Fit criteria
are conditions on the lead in the rule grammar, each worth points; engagement criteria give
points per activity of some types (optionally only those matching a condition on the
activity), fading with a half-life or counted inside a window, and capped per criterion
(overall, or per period). A lead's score is ``fit + engagement + adjustment`` (the adjustment
is what ``adjust_score``/``set_score`` actions added).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)

from leadflow.rule_language.actions import Duration, ScorePoints
from leadflow.rule_language.conditions import Condition
from leadflow.rule_language.model import RULE_ID_PATTERN, Located

MOST_TYPE_LENGTH = 60
"""An activity type's longest name (the activities table's column)."""
FIT_LETTERS = ("A", "B", "C")
"""Fit grade letters from best; a lead below the last band is ``D``."""
ENGAGEMENT_DIGITS = ("1", "2", "3")
"""Engagement grade digits from best; a lead below the last band is ``4``."""
KNOWN_ACTIVITY_TYPES = (
    "email_open",
    "email_click",
    "unsubscribe",
    "page_view",
    "download",
    "webinar",
    "form_fill",
)
"""The activity types leadflow writes itself (its tracking pixel and links: the first three,
``leadflow.mail.tracking_hits.ACTIVITY_TYPES``) and those docs/scoring.md and the shipped
model name. Any other type a CRM sends is as good: ``check`` only warns of a type within a
typo of one of these (``form_fil``), which would otherwise match no activity, silently."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FitSpec(_Spec):
    id: str = Field(pattern=RULE_ID_PATTERN)
    description: str = ""
    when: Any
    points: ScorePoints


MOST_CAP = 1_000_000


class PeriodCapSpec(_Spec):
    points: Annotated[int, Field(ge=1, le=MOST_CAP)]
    per: Duration


def _cap(value: Any) -> int | PeriodCapSpec | None:
    """A cap in one message: pydantic's union reported two per mistake, each in its own
    internal name (``cap.constrained-int: ...``, ``cap.PeriodCapSpec: expected a mapping``)."""
    from leadflow.rule_language.validation_messages import explain_validation

    if value is None or isinstance(value, PeriodCapSpec):
        return value
    if isinstance(value, dict):
        try:
            return PeriodCapSpec.model_validate(value)
        except ValidationError as exc:
            found = "; ".join(text for text, _, _ in explain_validation(PeriodCapSpec, exc, ()))
            msg = f"{found} (a cap per period is {{points: N, per: 7d}})"
            raise ValueError(msg) from None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MOST_CAP:
        return value
    msg = (
        f"expected a whole number of points from 1 to {MOST_CAP:,}, or {{points: N, per: 7d}}"
        f" for a cap per period, found {_as_written(value)}"
    )
    raise ValueError(msg)


def _activity(value: Any) -> str | list[str]:
    """An activity type or a list of them, in one message: pydantic's union reported two per
    mistake in its internal names (``activity.constrained-str: expected text``,
    ``activity.list[constrained-str]: expected a list``)."""

    def is_type(item: Any) -> bool:
        return isinstance(item, str) and 1 <= len(item) <= MOST_TYPE_LENGTH

    if is_type(value):
        return cast(str, value)
    if isinstance(value, list) and all(is_type(item) for item in value):
        return cast(list[str], value)
    msg = (
        f"expected an activity type (text of 1 to {MOST_TYPE_LENGTH} characters, such as "
        f"page_view) or a list of them, found {_as_written(value)}"
    )
    raise ValueError(msg)


def _as_written(value: Any) -> str:
    """``value`` as a rule file spells it: a boolean as YAML's ``true``/``false`` (``cap: true``
    was refused as "found True", Python's spelling), as ``leadflow/config.py`` says it."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


class EngagementSpec(_Spec):
    id: str = Field(pattern=RULE_ID_PATTERN)
    description: str = ""
    activity: Annotated[str | list[str], PlainValidator(_activity)]
    when: Any = None
    points: ScorePoints
    half_life: Duration | None = None
    window: Duration | None = None
    cap: Annotated[int | PeriodCapSpec | None, PlainValidator(_cap)] = None

    @model_validator(mode="after")
    def _one_decay(self) -> EngagementSpec:
        if self.half_life is not None and self.window is not None:
            msg = (
                "give either half_life: (points fade) or window: (full points, then none), not both"
            )
            raise ValueError(msg)
        if isinstance(self.activity, list) and not self.activity:
            msg = "activity: expects a type or a non-empty list of types"
            raise ValueError(msg)
        return self


BandName = Annotated[
    str, BeforeValidator(lambda value: str(value) if isinstance(value, int) else value)
]
"""A grade band's name; engagement bands are digits, which YAML reads as numbers."""


class GradesSpec(_Spec):
    fit: dict[BandName, int] = Field(min_length=1)
    engagement: dict[BandName, int] = Field(min_length=1)

    @model_validator(mode="after")
    def _bands(self) -> GradesSpec:
        for name, known, below in (
            ("fit", FIT_LETTERS, "D"),
            ("engagement", ENGAGEMENT_DIGITS, "4"),
        ):
            bands: dict[str, int] = getattr(self, name)
            unknown = [key for key in bands if key not in known]
            if unknown:
                msg = f"{name}: bands are {', '.join(known)} (below the last is {below}), found {', '.join(map(repr, unknown))}"
                raise ValueError(msg)
            # "below the last is D": bands may stop early, but a skipped one (A and C with no
            # B) left its letter to no lead, and C meant what B should have.
            given = [key for key in known if key in bands]
            if given != list(known[: len(given)]):
                skipped = next(key for key in known if key not in bands)
                msg = (
                    f"{name}: band {skipped} is missing: give the bands from {known[0]} on, "
                    f"without a gap ({', '.join(known)}; below the last is {below})"
                )
                raise ValueError(msg)
            ordered = [bands[key] for key in given]
            if ordered != sorted(ordered, reverse=True) or len(set(ordered)) != len(ordered):
                msg = f"{name}: each band's lower bound must be below the one before ({', '.join(known)})"
                raise ValueError(msg)
        return self


class ScoringSpec(_Spec):
    description: str = ""
    enabled: bool = True
    fit: list[Any] = []
    engagement: list[Any] = []
    grades: GradesSpec | None = None


@dataclass(frozen=True)
class FitCriterion:
    id: str
    description: str
    condition: Condition
    points: int
    location: Located = field(compare=False)


@dataclass(frozen=True)
class EngagementCriterion:
    id: str
    description: str
    activity_types: tuple[str, ...]
    condition: Condition | None
    """Over the activity's fields (``type``, ``occurred_at``, ``properties.<name>``)."""
    points: int
    half_life: timedelta | None
    window: timedelta | None
    cap: int | None
    cap_per: timedelta | None
    """With ``cap``: the cap holds per period of this length (UTC-aligned), not overall."""
    location: Located = field(compare=False)

    @property
    def weekly_periods(self) -> bool:
        """Periods of whole weeks, which start on a Monday 00:00 UTC as ISO weeks do; other
        periods count from 1970-01-01 00:00 UTC (a Thursday)."""
        return self.cap_per is not None and self.cap_per % timedelta(days=7) == timedelta(0)

    def decay_text(self) -> str:
        from leadflow.durations import format_duration

        if self.half_life is not None:
            return f"half-life {format_duration(self.half_life)}"
        if self.window is not None:
            return f"counted for {format_duration(self.window)}"
        return "never fades"


@dataclass(frozen=True)
class Grades:
    fit: tuple[tuple[str, int], ...]
    """(letter, lower bound), best first; below the last is ``D``."""
    engagement: tuple[tuple[str, int], ...]
    """(digit, lower bound), best first; below the last is ``4``."""

    def grade(self, fit: int, engagement: int) -> str:
        letter = next((name for name, low in self.fit if fit >= low), "D")
        digit = next((name for name, low in self.engagement if engagement >= low), "4")
        return letter + digit


@dataclass(frozen=True)
class ScoringModel:
    """One validated scoring model: what ``score`` means while it is in the rules folder."""

    description: str
    enabled: bool
    """False: checked, tested and planned, but scores still come from the CRM."""
    fit: tuple[FitCriterion, ...]
    engagement: tuple[EngagementCriterion, ...]
    grades: Grades | None
    digest: str
    """Content hash of the ``scoring:`` section: changes exactly when the model's text does."""
    engagement_digest: str
    """Content hash of the ``engagement:`` list alone: unchanged by a new fit criterion or
    grade band, so a pass after such a change keeps the engagement leads store."""
    location: Located = field(compare=False)

    @property
    def version(self) -> str:
        return self.digest

    @property
    def engagement_version(self) -> str:
        return self.engagement_digest


def misspelt_activity_types(model: ScoringModel) -> list[tuple[EngagementCriterion, str, str]]:
    """(criterion, type, "did you mean ...?") for each activity type of the model that is not
    one of :data:`KNOWN_ACTIVITY_TYPES` but close to one."""
    from leadflow.suggestions import did_you_mean

    found = []
    for criterion in model.engagement:
        for kind in criterion.activity_types:
            if kind in KNOWN_ACTIVITY_TYPES:
                continue
            hint = did_you_mean(kind, KNOWN_ACTIVITY_TYPES, cutoff=0.8)
            if hint:
                found.append((criterion, kind, hint))
    return found
