"""Fit the criteria's points with scikit-learn and measure them on a held-out share.

- **Split**: a stratified holdout (``holdout`` of the examples, seeded), the rest for training.
  With an example per deal, a lead's deals stay on one side (``StratifiedGroupKFold``'s first
  fold is the holdout, so the share is ``1/round(1/holdout)``): otherwise the holdout would
  score accounts the model saw.
- **Fit**: ``LogisticRegressionCV``, L2-regularised, on the criteria standardised over the
  training share (so the penalty weighs each criterion alike); the strength ``C`` is chosen by
  stratified cross-validation on the training share for the best log loss (probabilities that
  are honest, not only well ordered). Coefficients are turned back to the criteria's own units.
- **Points**: "points to double the odds" (PDO), as credit scorecards do: a criterion worth
  ``coef`` in log-odds gets ``round(coef x PDO / ln 2)`` points, so every PDO points of score
  double the odds of the outcome, whatever the model. Criteria whose points round to 0 are
  dropped. The score at even odds is ``-intercept x PDO / ln 2``.
- **Baseline**: a plain ``LogisticRegression`` (scikit-learn's defaults) on the raw columns:
  text attributes one-hot, numbers median-imputed and standardised, activity counts per type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from leadflow.errors import UserInputError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

LN2 = math.log(2)
DECILES = 10
FADED = 0.05
"""A criterion whose largest value in the training share is below this is left out."""
WEAKEST_C = 1e-4
"""The smallest C ``LogisticRegressionCV`` tries (Cs=10 spans 1e-4 to 1e4): chosen, it says
the criteria hardly tell the outcomes apart."""
MAX_POINTS = 1_000_000
"""The scoring model's bound on a criterion's points."""


@dataclass(frozen=True)
class FitOptions:
    holdout: float
    seed: int
    points_to_double: int
    folds: int = 5
    grouped: bool = False
    """Keep each lead's examples on one side of every split (an example per deal)."""


@dataclass(frozen=True)
class Decile:
    number: int
    examples: int
    low: int
    high: int
    predicted: float
    observed: float
    lift: float


@dataclass(frozen=True)
class Fitted:
    """What the fit learned, and how its scores did on the holdout."""

    kept: list[int]
    """Column indices that varied in the training share (the others were left out)."""
    coefficients: list[float]
    """Per column (0.0 for a column left out), in log-odds per unit."""
    intercept: float
    points: list[int]
    c: float
    train: NDArray[np.intp]
    test: NDArray[np.intp]
    probabilities: NDArray[np.float64]
    """The fitted model's probability per holdout example."""
    scores: NDArray[np.float64]
    """The integer points score per holdout example."""
    auc: dict[str, float | None]
    deciles: list[Decile]


def half_away(value: float) -> int:
    """Round half away from zero, as the scoring model rounds engagement."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def holdout_split(
    labels: NDArray[np.int_], groups: NDArray[np.int_], options: FitOptions
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(train, test) example indices: stratified, seeded, grouped by lead when asked."""
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    every = np.arange(len(labels))
    if options.grouped:
        folds = max(2, round(1 / options.holdout))
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=options.seed)
        train, test = next(splitter.split(every, labels, groups))
        return train, test
    train, test = train_test_split(
        every, test_size=options.holdout, stratify=labels, random_state=options.seed
    )
    return np.sort(train), np.sort(test)


def _cv_splits(
    labels: NDArray[np.int_], groups: NDArray[np.int_], options: FitOptions
) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    smaller = int(min(labels.sum(), len(labels) - labels.sum()))
    folds = min(options.folds, smaller)
    if options.grouped:
        folds = min(folds, len(set(groups.tolist())))
        grouped = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=options.seed)
        return list(grouped.split(labels, labels, groups))
    plain = StratifiedKFold(n_splits=folds, shuffle=True, random_state=options.seed)
    return list(plain.split(labels, labels))


def fit_points(
    features: NDArray[np.float64],
    labels: NDArray[np.int_],
    groups: NDArray[np.int_],
    engagement: Sequence[bool],
    options: FitOptions,
    split: tuple[NDArray[np.intp], NDArray[np.intp]],
    comparisons: Mapping[str, NDArray[np.float64] | None],
) -> Fitted:
    """Fit, turn into points, and score the holdout. ``engagement`` marks the columns whose
    points are rounded per lead (engagement criteria); ``comparisons`` are other scores per
    example (the baseline's probabilities, the current model's score) whose AUC is reported."""
    import numpy as np
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import roc_auc_score

    train, test = split
    x_train, y_train = features[train], labels[train]
    spread = x_train.std(axis=0)
    # A column that never reaches FADED (an activity decayed to almost nothing by --as-of)
    # would get points only a huge coefficient could make whole: it is left out like a
    # constant one.
    varies = (spread > 0) & (np.abs(x_train).max(axis=0) >= FADED)
    kept = [int(index) for index in np.flatnonzero(varies)]
    if not kept:
        raise UserInputError("no criterion varies among the training examples: nothing to fit")
    mean, scale = x_train[:, kept].mean(axis=0), spread[kept]
    model = LogisticRegressionCV(
        Cs=10,
        cv=_cv_splits(y_train, groups[train], options),
        scoring="neg_log_loss",
        l1_ratios=(0.0,),
        use_legacy_attributes=False,
        max_iter=10_000,
    )
    model.fit((x_train[:, kept] - mean) / scale, y_train)
    standardised = model.coef_[0]
    coefficients = [0.0] * features.shape[1]
    for position, index in enumerate(kept):
        coefficients[index] = float(standardised[position] / scale[position])
    intercept = float(model.intercept_[0] - np.sum(standardised * mean / scale))
    factor = options.points_to_double / LN2
    points = [
        max(-MAX_POINTS, min(MAX_POINTS, half_away(value * factor))) for value in coefficients
    ]
    probabilities = model.predict_proba((features[test][:, kept] - mean) / scale)[:, 1]
    scores = points_scores(features[test], points, engagement)
    y_test = labels[test]
    auc: dict[str, float | None] = {
        "fitted": float(roc_auc_score(y_test, probabilities)),
        "points": float(roc_auc_score(y_test, scores)),
    }
    for name, values in comparisons.items():
        if values is None or len(set(values[test].tolist())) < 2:
            auc[name] = None
        else:
            auc[name] = float(roc_auc_score(y_test, values[test]))
    return Fitted(
        kept=kept,
        coefficients=coefficients,
        intercept=intercept,
        points=points,
        c=float(model.C_),
        train=train,
        test=test,
        probabilities=probabilities,
        scores=scores,
        auc=auc,
        deciles=deciles(scores, y_test, intercept, options.points_to_double),
    )


def points_scores(
    features: NDArray[np.float64], points: Sequence[int], engagement: Sequence[bool]
) -> NDArray[np.float64]:
    """The integer score per example: fit points summed, each engagement criterion's points
    times its value rounded half away from zero (as the scoring model rounds)."""
    import numpy as np

    scores = np.zeros(features.shape[0])
    for index, (worth, rounded) in enumerate(zip(points, engagement, strict=True)):
        if worth == 0:
            continue
        values = features[:, index] * worth
        if rounded:
            values = np.sign(values) * np.floor(np.abs(values) + 0.5)
        scores += values
    return scores


def deciles(
    scores: NDArray[np.float64], labels: NDArray[np.int_], intercept: float, pdo: int
) -> list[Decile]:
    """The holdout by score decile, best first (ties in example order): examples, score range,
    the rate the points imply (``1 / (1 + exp(-(intercept + score x ln 2 / PDO)))``), the
    observed rate, and lift (observed over the holdout's rate)."""
    import numpy as np

    order = np.lexsort((np.arange(len(scores)), -scores))
    base = float(labels.mean())
    found = []
    for number, part in enumerate(np.array_split(order, DECILES), start=1):
        if len(part) == 0:
            continue
        implied = 1 / (1 + np.exp(-(intercept + scores[part] * LN2 / pdo)))
        observed = float(labels[part].mean())
        found.append(
            Decile(
                number=number,
                examples=len(part),
                low=int(scores[part].min()),
                high=int(scores[part].max()),
                predicted=float(implied.mean()),
                observed=observed,
                lift=observed / base if base else 0.0,
            )
        )
    return found


def baseline_probabilities(
    categorical: Sequence[Sequence[str]],
    numeric: NDArray[np.float64],
    labels: NDArray[np.int_],
    train: NDArray[np.intp],
) -> NDArray[np.float64]:
    """A plain logistic regression on the raw columns, fitted on ``train``: its probability
    for every example."""
    import numpy as np
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    parts: list[Any] = []
    if categorical and len(categorical[0]):
        texts = np.array(categorical, dtype=object)
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        encoder.fit(texts[train])
        parts.append(encoder.transform(texts))
    if numeric.shape[1]:
        numbers = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
        )
        numbers.fit(numeric[train])
        parts.append(numbers.transform(numeric))
    if not parts:
        return np.full(len(labels), float(labels[train].mean()))
    matrix = np.hstack(parts)
    plain = LogisticRegression(max_iter=10_000).fit(matrix[train], labels[train])
    result: NDArray[np.float64] = plain.predict_proba(matrix)[:, 1]
    return result
