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
from leadflow.rule_language.conditions import referenced_fields
from leadflow.rule_language.scoring_model import KNOWN_ACTIVITY_TYPES, ScoringModel
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
    stored_activity_types,
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
from leadflow.suggestions import did_you_mean

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

MIN_PER_CLASS = 10
"""Fewer positive (or negative) examples than this and there is nothing to learn from."""
OUTCOME_READERS = {"stage": frozenset({"stage", "stage_entered_at", "days_in_stage"})}
"""Per outcome field, the fields that give it away: a stage outcome is also read by when the
lead entered its stage (a customer since last week has few days in stage)."""


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
    reads_left_out: dict[str, str] = field(default_factory=dict)
    """The current model's criteria never fitted because they read the outcome or an
    ``--exclude``d field or activity type: the reason, per criterion id."""

    def current_left_out(self) -> list[tuple[str, int, str]]:
        """The current model's criteria the proposal does not keep: (id, its points, why).
        The proposal replaces the model, so each of these would be gone once it is adopted."""
        position = {item.id: index for index, item in enumerate(self.candidates)}
        examples = len(self.examples.labels)
        found = []
        for criterion, points in self.current_points.items():
            if criterion in self.reads_left_out:
                found.append((criterion, points, self.reads_left_out[criterion]))
                continue
            twin = self.same_as.get(criterion)
            index = position[twin if twin is not None else criterion]
            support = self.support[index]
            if twin is None and self.fitted.points[index] != 0:
                # Kept: an engagement criterion every example has some of still varies in
                # value, is fitted and stays in the proposal.
                continue
            if support == 0:
                why = "matched no example"
            elif support == examples and index not in self.fitted.kept:
                # An engagement criterion every example has some of still varies (decay):
                # fitted, it was left out because its points round to 0, said below.
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
        _refuse_unknown_types(excluded, stored_activity_types(connection), current)
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
    current_points = {
        item.id: item.current_points for item in ordered if item.current_points is not None
    }
    # Computed (the current model's AUC is what it is, leak and all) but never fitted: a
    # criterion reading the outcome predicts it perfectly and would take all the points.
    reads_left_out = _reading_left_out(current, outcome.field, excluded)
    fitted_columns = [i for i, item in enumerate(ordered) if item.id not in reads_left_out]
    if not fitted_columns:
        msg = (
            "no criteria to weigh: every criterion of the scoring model reads the outcome or "
            "what --exclude names, and no other declared lead attribute or activity type is "
            "shared by --min-support examples"
        )
        raise UserInputError(msg)
    every, ordered = every[:, fitted_columns], [ordered[i] for i in fitted_columns]
    _unique, first = np.unique(every, axis=1, return_index=True)
    distinct = sorted(int(index) for index in first)
    same_as = _same_as(every, ordered, distinct)
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
    return Learned(
        outcome,
        now,
        examples,
        ordered,
        support,
        fitted,
        options,
        same_as,
        current_points,
        reads_left_out,
    )


def _refuse_unknown_types(
    excluded: frozenset[str], stored: set[str], current: ScoringModel | None
) -> None:
    """An ``--exclude`` name that is no attribute must be an activity type the store or the
    model knows: a typo (``form_fil``) left the leaking type in the fit without a word. The
    types leadflow itself names are no typo, held or not."""
    modelled = current.engagement if current is not None else ()
    known = stored | set(KNOWN_ACTIVITY_TYPES)
    known |= {kind for criterion in modelled for kind in criterion.activity_types}
    for name in sorted(excluded):
        if not name.startswith("attributes.") and name not in known:
            hint = did_you_mean(name, sorted(known), prefix="; ")
            msg = (
                f"--exclude {name}: no activity of type {name!r} in the store or the scoring "
                f"model, and not an attribute (attributes.NAME){hint}"
            )
            raise UserInputError(msg)


def _reading_left_out(
    current: ScoringModel | None, outcome: str, excluded: frozenset[str]
) -> dict[str, str]:
    """The current model's criteria that read the outcome (anywhere in their condition) or an
    excluded attribute or activity type, with the reason: the candidates never include such
    a criterion, and the current model's must not either."""
    if current is None:
        return {}
    giving_away = OUTCOME_READERS.get(outcome, frozenset({outcome}))
    found: dict[str, str] = {}
    for fit in current.fit:
        names = list(dict.fromkeys(spec.name for spec in referenced_fields(fit.condition)))
        reason = next((_giving_away(name, outcome) for name in names if name in giving_away), None)
        excluded_name = next((name for name in names if name in excluded), None)
        if reason is None and excluded_name is not None:
            reason = f"reads {excluded_name}, left out by --exclude"
        if reason is not None:
            found[fit.id] = reason
    for engagement in current.engagement:
        kind = next((kind for kind in engagement.activity_types if kind in excluded), None)
        if kind is not None:
            found[engagement.id] = f"counts activity {kind}, left out by --exclude"
    return found


def _giving_away(name: str, outcome: str) -> str:
    if name == outcome:
        return f"reads the outcome {outcome}"
    return f"reads {name}, which gives away the outcome {outcome}"


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
