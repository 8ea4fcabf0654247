"""Read the ``scoring:`` section of a rule file into a :class:`ScoringModel`, or its problems.

Fit conditions are parsed against the lead's fields, engagement conditions against the
activity's (``type``, ``occurred_at``, ``properties.<name>``), with the same located messages
as a rule's ``when:``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from leadflow.errors import Problem
from leadflow.rule_language.conditions import Condition, ConditionParser, searches_json_text
from leadflow.rule_language.fields import Subject, field_catalog
from leadflow.rule_language.model import Located, content_digest
from leadflow.rule_language.scoring_model import (
    ENGAGEMENT_DIGITS,
    FIT_LETTERS,
    EngagementCriterion,
    EngagementSpec,
    FitCriterion,
    FitSpec,
    Grades,
    PeriodCapSpec,
    ScoringModel,
    ScoringSpec,
)
from leadflow.rule_language.validation_messages import validated
from leadflow.rule_language.yaml_source import Path as NodePath
from leadflow.rule_language.yaml_source import SourceDocument
from leadflow.settings import Settings


class ScoringReader:
    """Reads one file's ``scoring:`` section, collecting every problem with its position."""

    def __init__(self, document: SourceDocument, settings: Settings) -> None:
        self.document = document
        self.settings = settings
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def located(self, path: NodePath) -> Located:
        mark = self.document.mark(path)
        return Located(self.document.file, mark.line, mark.column)

    def problem(self, path: NodePath, message: str, *, key: bool = False) -> None:
        mark = self.document.mark(path, key=key)
        self.problems.append(Problem(self.document.file, mark.line, mark.column, message))

    def read(self, raw: Any, path: NodePath) -> ScoringModel | None:
        spec = self._validate(ScoringSpec, raw, path, "scoring: ")
        if not isinstance(spec, ScoringSpec):
            return None
        before = len(self.problems)
        # One id space for both lists: explain, the score history and `score fit` name a
        # criterion by its id alone.
        seen: dict[str, Located] = {}
        fit = self._criteria(spec.fit, (*path, "fit"), self._fit, seen)
        engagement = self._criteria(spec.engagement, (*path, "engagement"), self._engagement, seen)
        if len(self.problems) > before:
            return None
        grades = None
        if spec.grades is not None:
            grades = Grades(
                fit=tuple(
                    (key, spec.grades.fit[key]) for key in FIT_LETTERS if key in spec.grades.fit
                ),
                engagement=tuple(
                    (key, spec.grades.engagement[key])
                    for key in ENGAGEMENT_DIGITS
                    if key in spec.grades.engagement
                ),
            )
        engagement_raw = raw.get("engagement", [])
        criteria = tuple(item for item in engagement if isinstance(item, EngagementCriterion))
        fits = tuple(item for item in fit if isinstance(item, FitCriterion))
        if any(item.weekly_periods for item in criteria):
            # Weekly cap periods start on Mondays (counted from the epoch, they started on
            # Thursdays): the same text gives other scores than before, so its digests differ
            # and the first pass after the upgrade recomputes every lead (cause ``model``), not
            # only the leads due.
            raw = {"model": raw, "weeks start": "Monday"}
            engagement_raw = {"engagement": engagement_raw, "weeks start": "Monday"}
        # contains/starts_with/ends_with on an attribute or a property no longer match a list
        # or an object held there ({"url": ["/pricing"]}): other scores from the same text,
        # so, as above, the first pass after the upgrade recomputes every lead.
        searched = [item.condition for item in criteria if item.condition is not None]
        if any(searches_json_text(condition) for condition in searched):
            engagement_raw = {"engagement": engagement_raw, "text operators": "text only"}
            raw = {"model": raw, "text operators": "text only"}
        elif any(searches_json_text(item.condition) for item in fits):
            raw = {"model": raw, "text operators": "text only"}
        return ScoringModel(
            description=spec.description,
            enabled=spec.enabled,
            fit=fits,
            engagement=criteria,
            grades=grades,
            digest=content_digest(raw),
            engagement_digest=content_digest(engagement_raw),
            location=self.located(path),
        )

    def _criteria(
        self,
        raws: list[Any],
        path: NodePath,
        read: Callable[[Any, NodePath], Any],
        seen: dict[str, Located],
    ) -> list[Any]:
        found = []
        for index, raw in enumerate(raws):
            here = (*path, index)
            item = read(raw, here)
            if item is None:
                continue
            earlier = seen.get(item.id)
            if earlier is not None:
                self.problem(
                    (*here, "id"),
                    f"criterion {item.id}: duplicate id, already defined at {earlier}",
                )
                continue
            seen[item.id] = item.location
            found.append(item)
        return found

    def _fit(self, raw: Any, path: NodePath) -> FitCriterion | None:
        owner = _owner(raw)
        spec = self._validate(FitSpec, raw, path, owner)
        condition = self._condition(raw, Subject.LEAD, path, owner)
        if not isinstance(spec, FitSpec) or condition is None:
            return None
        return FitCriterion(spec.id, spec.description, condition, spec.points, self.located(path))

    def _engagement(self, raw: Any, path: NodePath) -> EngagementCriterion | None:
        owner = _owner(raw)
        spec = self._validate(EngagementSpec, raw, path, owner)
        condition = None
        if isinstance(raw, dict) and raw.get("when") is not None:
            condition = self._condition(raw, Subject.ACTIVITY, path, owner)
            if condition is None:
                return None
        if not isinstance(spec, EngagementSpec):
            return None
        types = spec.activity if isinstance(spec.activity, list) else [spec.activity]
        cap = spec.cap.points if isinstance(spec.cap, PeriodCapSpec) else spec.cap
        return EngagementCriterion(
            id=spec.id,
            description=spec.description,
            activity_types=tuple(dict.fromkeys(types)),
            condition=condition,
            points=spec.points,
            half_life=spec.half_life,
            window=spec.window,
            cap=cap,
            cap_per=spec.cap.per if isinstance(spec.cap, PeriodCapSpec) else None,
            location=self.located(path),
        )

    def _condition(
        self, raw: Any, subject: Subject, path: NodePath, owner: str
    ) -> Condition | None:
        if not isinstance(raw, dict) or "when" not in raw:
            return None
        parser = ConditionParser(
            self.document, field_catalog(subject, self.settings), self.settings.stages.all()
        )
        condition = parser.parse(raw["when"], (*path, "when"))
        for found in parser.problems:
            self.problems.append(
                Problem(found.file, found.line, found.column, f"{owner}{found.message}")
            )
        for found in parser.warnings:
            self.warnings.append(
                Problem(found.file, found.line, found.column, f"{owner}{found.message}")
            )
        return condition

    def _validate(
        self, model: type[BaseModel], data: Any, path: NodePath, owner: str
    ) -> BaseModel | None:
        def report(where: NodePath, message: str, is_key: bool) -> None:
            self.problem(where, message, key=is_key)

        return validated(model, data, path, owner, report)


def _owner(raw: Any) -> str:
    criterion = raw.get("id") if isinstance(raw, dict) else None
    return f"scoring: criterion {criterion}: " if isinstance(criterion, str) else "scoring: "
