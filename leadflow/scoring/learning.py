"""Learn a scoring model's points from outcomes: the examples, the criteria, the fit.

The steps, each in its own module: the labelled examples (``learning_outcome``), the criteria
to weigh (``learning_candidates``), their values per lead computed in the database
(``learning_features``), the fit and the holdout's figures (``learning_fit``). What it learned
is written by ``learning_report``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from leadflow.errors import UserInputError
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.scoring.learning_candidates import (
    Candidate,
    current_candidates,
    data_candidates,
    read_back,
)
from leadflow.scoring.learning_features import (
    LeadFacts,
    activity_leads,
    criterion_values,
    read_lead_facts,
)
from leadflow.scoring.learning_fit import (
    FitOptions,
    Fitted,
    baseline_probabilities,
    fit_points,
    holdout_split,
)
from leadflow.scoring.learning_outcome import Examples, OutcomeSpec, read_examples
from leadflow.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

MIN_PER_CLASS = 10
"""Fewer positive (or negative) examples than this and there is nothing to learn from."""


@dataclass(frozen=True)
class Learned:
    outcome: OutcomeSpec
    as_of: datetime
    examples: Examples
    candidates: list[Candidate]
    """In the order of the columns: fit criteria first, then engagement."""
    support: list[int]
    """Per criterion, the examples it matched (fit) or whose lead did its activity."""
    fitted: Fitted
    options: FitOptions
    same_as: dict[str, str]
    """Criteria left out because they matched the same examples as the one named."""
    current_points: dict[str, int] = field(default_factory=dict)
    """The current model's criteria (all of them, those left out too) and their points."""

    def current_left_out(self) -> list[tuple[str, int, str]]:
        """The current model's criteria the proposal does not keep: (id, its points, why).
        The proposal replaces the model, so each of these would be gone once it is adopted."""
        position = {item.id: index for index, item in enumerate(self.candidates)}
        examples = len(self.examples.labels)
        found = []
        for criterion, points in self.current_points.items():
            twin = self.same_as.get(criterion)
            index = position[twin if twin is not None else criterion]
            support = self.support[index]
            if twin is None and self.fitted.points[index] != 0:
                # Kept: an engagement criterion every example has some of still varies in
                # value, is fitted and stays in the proposal.
                continue
            if support == 0:
                why = "matched no example"
            elif support == examples:
                why = "matched every example"
            elif twin is not None:
                why = f"matched the same examples as {twin}"
            elif index not in self.fitted.kept:
                why = "did not vary among the training examples"
            else:
                why = "its points round to 0"
            found.append((criterion, points, why))
        return found


def learn_points(
    engine: Engine,
    settings: Settings,
    current: ScoringModel | None,
    outcome: OutcomeSpec,
    now: datetime,
    options: FitOptions,
    *,
    min_support: int,
    half_life: timedelta,
    excluded: frozenset[str] = frozenset(),
) -> Learned:
    """Fit points for ``current``'s criteria and the candidates found in the data (none for
    the outcome's own field, nor for the ``excluded`` attributes and activity types)."""
    import numpy as np

    with engine.connect() as connection:
        examples = read_examples(connection, outcome)
        positives = sum(examples.labels)
        negatives = len(examples.labels) - positives
        unit = "deals" if outcome.unit == "deal" else "leads"
        if positives < MIN_PER_CLASS or negatives < MIN_PER_CLASS:
            hint = (
                "; every lead with a closed deal won one: try --unit deal (an example per deal)"
                if outcome.from_deals and outcome.unit == "lead" and positives and not negatives
                else ""
            )
            msg = (
                f"--outcome {outcome.field}: {positives} positive and {negatives} negative "
                f"{unit} ({examples.unknown} without a known outcome); a fit needs at least "
                f"{MIN_PER_CLASS} of each{hint}"
            )
            raise UserInputError(msg)
        facts = read_lead_facts(connection, now)
        ids = examples.lead_ids
        left_out = excluded | {outcome.field}
        ordered = _candidates(settings, current, facts, ids, left_out, min_support, half_life)
        if not ordered:
            msg = (
                "no criteria to weigh: the rules folder has no scoring model, and no declared "
                "lead attribute or activity type is shared by --min-support examples"
            )
            raise UserInputError(msg)
        model = read_back(ordered, settings)
        values, current_engagement = criterion_values(connection, model, ordered, now)
    width = len(ordered)
    every = np.array([values.get(lead_id, [0.0] * width) for lead_id in ids], dtype=float)
    every = every.reshape(len(ids), width)
    current_scores = (
        _current_scores(every, ordered, [current_engagement.get(i, 0) for i in ids])
        if current is not None
        else None
    )
    _unique, first = np.unique(every, axis=1, return_index=True)
    distinct = sorted(int(index) for index in first)
    same_as = _same_as(every, ordered, distinct)
    every_candidate = ordered
    features, ordered = every[:, distinct], [ordered[index] for index in distinct]
    labels = np.array(examples.labels, dtype=int)
    groups = np.array(ids, dtype=int)
    split = holdout_split(labels, groups, options)
    categorical, numeric = raw_columns(settings, facts, ids, left_out)
    comparisons: dict[str, NDArray[np.float64] | None] = {
        "baseline": baseline_probabilities(categorical, numeric, labels, split[0]),
        "current_model": current_scores,
        "stored_score": np.array([facts.stored_scores.get(i, 0) for i in ids], dtype=float),
    }
    engagement = [item.kind == "engagement" for item in ordered]
    fitted = fit_points(features, labels, groups, engagement, options, split, comparisons)
    support = [int(count) for count in (features > 0).sum(axis=0)]
    current_points = {
        item.id: item.current_points for item in every_candidate if item.current_points is not None
    }
    return Learned(
        outcome, now, examples, ordered, support, fitted, options, same_as, current_points
    )


def _same_as(
    every: NDArray[np.float64], ordered: list[Candidate], distinct: list[int]
) -> dict[str, str]:
    """Criteria that match exactly the same examples as an earlier one (the current model's
    come first): left out, so that a person never reads the same points twice."""
    import numpy as np

    found = {}
    for index, item in enumerate(ordered):
        if index in distinct:
            continue
        twin = next(k for k in distinct if np.array_equal(every[:, k], every[:, index]))
        found[item.id] = ordered[twin].id
    return found


def _candidates(
    settings: Settings,
    current: ScoringModel | None,
    facts: LeadFacts,
    ids: list[int],
    excluded: frozenset[str],
    min_support: int,
    half_life: timedelta,
) -> list[Candidate]:
    existing = current_candidates(current) if current is not None else []
    found = data_candidates(
        settings,
        [facts.attributes.get(lead_id, {}) for lead_id in ids],
        activity_leads(facts, ids),
        min_support=min_support,
        half_life=half_life,
        taken=[item.id for item in existing],
        excluded=excluded,
    )
    every = existing + found
    return [item for item in every if item.kind == "fit"] + [
        item for item in every if item.kind == "engagement"
    ]


def _current_scores(
    features: NDArray[np.float64], ordered: list[Candidate], engagement: list[int]
) -> NDArray[np.float64]:
    """The current model's fit + engagement per example, as of the fit's ``now``
    (``engagement``: its engagement criteria's whole points per example)."""
    import numpy as np

    weights = np.array(
        [item.current_points or 0 if item.kind == "fit" else 0 for item in ordered], dtype=float
    )
    result: NDArray[np.float64] = features @ weights + np.array(engagement, dtype=float)
    return result


def raw_columns(
    settings: Settings, facts: LeadFacts, ids: list[int], excluded: frozenset[str]
) -> tuple[list[list[str]], NDArray[np.float64]]:
    """The baseline's columns per example: text attributes (missing as ``(none)``), and
    numbers, booleans (1/0) and activity counts per type (missing numbers as NaN); never an
    ``excluded`` attribute or activity type (the outcome's own field is one)."""
    import numpy as np

    declared = {
        name: kind
        for name, kind in settings.attributes.leads.items()
        if f"attributes.{name}" not in excluded
    }
    texts = [name for name, kind in declared.items() if kind == "string"]
    numbers = [name for name, kind in declared.items() if kind in {"integer", "number", "boolean"}]
    kinds = sorted(
        {kind for lead_id in ids for kind in facts.activity_counts.get(lead_id, {})} - excluded
    )
    categorical: list[list[str]] = []
    numeric: list[list[float]] = []
    for lead_id in ids:
        stored = facts.attributes.get(lead_id, {})
        categorical.append([str(stored[name]) if stored.get(name) else "(none)" for name in texts])
        row = [_number(stored.get(name)) for name in numbers]
        counts = facts.activity_counts.get(lead_id, {})
        numeric.append(row + [float(counts.get(kind, 0)) for kind in kinds])
    return categorical, np.array(numeric, dtype=float).reshape(len(ids), len(numbers) + len(kinds))


def _number(value: object) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return float("nan")
