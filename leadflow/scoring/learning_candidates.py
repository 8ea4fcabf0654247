"""The criteria a fit chooses points for: the current model's, and candidates from the data.

Each candidate is written as the YAML of a scoring criterion and read back through the
scoring reader, so every criterion the fit can give points to is one a person can read, edit
and ``leadflow check``:

- each declared lead attribute: a text attribute gives one ``equals`` criterion per value
  held by at least ``min_support`` examples (the most frequent ``MAX_VALUES``; rarer values stay
  in the reference group, with no points); a number gives ``at_least`` thresholds at its
  quintiles, rounded to two significant digits (so ``employees >= 200`` not ``>= 197.4``); a
  boolean gives ``equals: true``; dates are left out;
- each activity type done by at least ``min_support`` examples' leads: two engagement
  criteria, one with the given half-life and one that never fades (``-ever``): the fit
  weighs recent and lasting engagement apart.

The current model's criteria come first, with their own conditions, decay and caps.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

from leadflow.durations import format_duration
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.rule_language.scoring_reader import ScoringReader
from leadflow.rule_language.yaml_source import parse_document
from leadflow.settings import Settings

MAX_VALUES = 30
"""Per text attribute, at most this many values get a criterion of their own."""
QUANTILES = (0.2, 0.4, 0.6, 0.8)

Kind = Literal["fit", "engagement"]


@dataclass(frozen=True)
class Candidate:
    """One criterion the fit may give points to, as it would be written (without points)."""

    id: str
    kind: Kind
    spec: Mapping[str, Any]
    """The criterion's YAML mapping, ``points`` left out (and ``cap`` as ``cap_per_point``)."""
    current_points: int | None = None
    """The current model's points for it; None for a criterion found in the data."""

    @property
    def origin(self) -> str:
        return "current model" if self.current_points is not None else "from the data"


def current_candidates(model: ScoringModel) -> list[Candidate]:
    """The current model's criteria, their YAML read back from the model's file."""
    document = parse_document(
        model.location.file, Path(model.location.file).read_text(encoding="utf-8")
    )
    section = document.data["scoring"]
    found: list[Candidate] = []
    for kind in ("fit", "engagement"):
        for raw in section.get(kind) or []:
            spec = {key: value for key, value in raw.items() if key != "points"}
            found.append(Candidate(raw["id"], kind, spec, current_points=int(raw["points"])))
    return found


def data_candidates(
    settings: Settings,
    attributes: Sequence[Mapping[str, Any]],
    activity_leads: Mapping[str, int],
    *,
    min_support: int,
    half_life: timedelta,
    taken: Iterable[str] = (),
    excluded: frozenset[str] = frozenset(),
) -> list[Candidate]:
    """Candidates from the examples' attributes (one mapping per example) and the number of
    examples whose lead did each activity type; ``excluded`` attributes (``attributes.X``)
    and activity types get none."""
    ids = _Ids(taken)
    found: list[Candidate] = []
    for name, kind in settings.attributes.leads.items():
        if f"attributes.{name}" in excluded:
            continue
        values = [row.get(name) for row in attributes]
        field = f"attributes.{name}"
        if kind == "string":
            counts = Counter(value for value in values if isinstance(value, str) and value)
            for value, count in counts.most_common(MAX_VALUES):
                if min_support <= count <= len(values) - min_support:
                    spec: dict[str, Any] = {"when": {"field": field, "equals": value}}
                    found.append(Candidate(ids.new(f"{name}-{value}"), "fit", spec))
        elif kind in {"integer", "number"}:
            numbers = sorted(
                float(value)
                for value in values
                if isinstance(value, int | float) and not isinstance(value, bool)
            )
            for threshold in _thresholds(numbers, integer=kind == "integer"):
                support = sum(1 for number in numbers if number >= threshold)
                if min_support <= support <= len(values) - min_support:
                    spec = {"when": {"field": field, "at_least": threshold}}
                    found.append(Candidate(ids.new(f"{name}-at-least-{threshold}"), "fit", spec))
        elif kind == "boolean":
            support = sum(1 for value in values if value is True)
            if min_support <= support <= len(values) - min_support:
                spec = {"when": {"field": field, "equals": True}}
                found.append(Candidate(ids.new(name), "fit", spec))
    for activity, support in sorted(activity_leads.items()):
        if support >= min_support and activity not in excluded:
            spec = {"activity": activity, "half_life": format_duration(half_life)}
            found.append(Candidate(ids.new(activity), "engagement", spec))
            # The same activities never fading: whether a lead ever did it may matter more
            # than when (and the fit still learns something when --as-of is long after them).
            lasting = {"activity": activity}
            found.append(Candidate(ids.new(f"{activity}-ever"), "engagement", lasting))
    return found


def _thresholds(numbers: Sequence[float], *, integer: bool) -> list[int | float]:
    if not numbers:
        return []
    picked: list[int | float] = []
    for share in QUANTILES:
        raw = numbers[min(len(numbers) - 1, int(share * len(numbers)))]
        nice = float(f"{raw:.2g}")
        value: int | float = round(nice) if integer or nice.is_integer() else nice
        if value > numbers[0] and value not in picked:
            picked.append(value)
    return picked


class _Ids:
    """Criterion ids in the rule grammar's alphabet, unique within the proposal."""

    def __init__(self, taken: Iterable[str]) -> None:
        self.taken = set(taken)

    def new(self, text: str) -> str:
        slug = re.sub(r"[^a-z0-9_.]+", "-", text.lower()).strip("-.")[:60] or "criterion"
        if not slug[0].isalnum():
            slug = f"c{slug}"
        candidate, number = slug, 2
        while candidate in self.taken:
            candidate, number = f"{slug}-{number}", number + 1
        self.taken.add(candidate)
        return candidate


def written(candidate: Candidate, points: int) -> dict[str, Any]:
    """The criterion's YAML mapping with ``points``; a current cap scaled to the new points."""
    spec = {"id": candidate.id, **{k: v for k, v in candidate.spec.items() if k != "id"}}
    spec["points"] = points
    cap = spec.get("cap")
    if cap is not None and candidate.current_points:
        ratio = abs(points) / abs(candidate.current_points)
        if isinstance(cap, dict):
            spec["cap"] = {**cap, "points": max(1, round(cap["points"] * ratio))}
        else:
            spec["cap"] = max(1, round(cap * ratio))
    order = ("id", "description", "activity", "when", "points", "half_life", "window", "cap")
    return {key: spec[key] for key in order if key in spec}


def read_back(candidates: Sequence[Candidate], settings: Settings) -> ScoringModel:
    """The candidates as one scoring model (each at its current points, or 1), read by the
    scoring reader: a candidate the rule grammar cannot hold is a bug, and raises."""
    section: dict[str, Any] = {"enabled": False, "fit": [], "engagement": []}
    for candidate in candidates:
        section[candidate.kind].append(written(candidate, candidate.current_points or 1))
    text = yaml.safe_dump({"scoring": section}, sort_keys=False, allow_unicode=True)
    document = parse_document("(candidate criteria)", text)
    reader = ScoringReader(document, settings)
    model = reader.read(document.data["scoring"], ("scoring",))
    if model is None:
        problems = "; ".join(str(problem) for problem in reader.problems)
        raise RuntimeError(f"a candidate criterion is not valid rule text: {problems}")
    return model
