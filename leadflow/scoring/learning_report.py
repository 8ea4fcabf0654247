"""What a fit learned, written down: the proposed scoring file, the report, the lift chart.

The proposal is a ``scoring:`` section with ``enabled: false`` (nothing changes until a person
turns it on), each criterion under a comment giving its support and coefficient, criteria
worth 0 points left out. It is written by hand, not dumped, so that it reads like the shipped
``rules/scoring.yaml``; each criterion's ``when:`` is dumped as a flow mapping, which quotes
what YAML would misread.
"""

from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import escape

import yaml

from leadflow.scoring.learning import Learned
from leadflow.scoring.learning_candidates import written
from leadflow.scoring.learning_fit import WEAKEST_C


def proposal_text(learned: Learned, rules_note: str) -> str:
    fitted = learned.fitted
    pdo = learned.options.points_to_double
    auc = fitted.auc
    positives = sum(learned.examples.labels)
    lines = [
        "# Proposed by `leadflow score fit` (docs/scoring-fit.md): points learned from outcomes.",
        f"# Outcome: {learned.outcome.describe()}; {len(learned.examples.labels)} examples "
        f"({positives} positive), {learned.examples.unknown} left out without a known outcome.",
        f"# As of {learned.as_of.isoformat()}; holdout {len(fitted.test)} examples: ROC AUC "
        f"{_figure(auc['points'])} (points), {_figure(auc['fitted'])} (fitted model), "
        f"{_figure(auc['baseline'])} (plain logistic regression on the raw columns).",
        f"# Every {pdo} points double the odds of the outcome; a score of "
        f"{round(-fitted.intercept * pdo / math.log(2))} is even odds.",
        f"# {rules_note}",
        *(f"# {line}" for line in left_out_lines(learned)),
        "# Review it, move it into the rules folder in place of the old model, run",
        "# `leadflow check` and `leadflow plan`, then set enabled: true.",
        "scoring:",
        f"  description: Points learned from {len(learned.examples.labels)} outcomes "
        f"({learned.as_of.date().isoformat()}).",
        "  enabled: false",
    ]
    for kind in ("fit", "engagement"):
        entries = [
            index
            for index, item in enumerate(learned.candidates)
            if item.kind == kind and fitted.points[index] != 0
        ]
        lines.append(f"  {kind}:" if entries else f"  {kind}: []")
        entries.sort(key=lambda index: -abs(fitted.points[index]))
        for index in entries:
            lines.extend(_criterion_lines(learned, index))
    return "\n".join(lines) + "\n"


def left_out_lines(learned: Learned) -> list[str]:
    """The current model's criteria the proposal drops, one line each, with the reason: once
    the proposal replaces the model they are gone, so a person must see them (a criterion the
    data cannot judge, such as a competitor's domain nobody here has, may still be wanted)."""
    dropped = learned.current_left_out()
    if not dropped:
        return []
    return [
        "Not in this proposal, from the current model (add back by hand what should stay):",
        *(f"  {name} ({points:+d} points): {why}" for name, points, why in dropped),
    ]


def _criterion_lines(learned: Learned, index: int) -> list[str]:
    item = learned.candidates[index]
    points = learned.fitted.points[index]
    coefficient = learned.fitted.coefficients[index]
    matched = "matched" if item.kind == "fit" else "with this activity"
    unit = ""
    if item.kind == "engagement":
        unit = " per fresh activity" if "half_life" in item.spec else " per activity"
    lines = [
        f"    # support {learned.support[index]} of {len(learned.examples.labels)} examples {matched}; "
        f"coefficient {coefficient:+.3f}{unit}; {item.origin}"
        + (f" (was {item.current_points} points)" if item.current_points is not None else "")
    ]
    spec = written(item, points)
    first = True
    for key, value in spec.items():
        prefix = "    - " if first else "      "
        first = False
        flow = _flow(value)
        if len(prefix) + len(key) + len(flow) > LONGEST_LINE and isinstance(value, dict):
            # A long nested condition (any:/all: of several) reads better as a block.
            block = yaml.safe_dump(
                value, default_flow_style=None, allow_unicode=True, sort_keys=False, width=10**6
            )
            lines.append(f"{prefix}{key}:")
            lines.extend(f"        {line}" for line in block.splitlines())
        else:
            lines.append(f"{prefix}{key}: {flow}")
    return lines


LONGEST_LINE = 100
"""A criterion's line longer than this is written as a block."""


def _flow(value: Any) -> str:
    text = yaml.safe_dump(
        value, default_flow_style=True, allow_unicode=True, width=10**6, sort_keys=False
    )
    return text.strip().removesuffix("...").strip()


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def report_document(learned: Learned, output: str, chart: str | None) -> dict[str, Any]:
    """The report as one JSON-ready document (``--format json``)."""
    fitted = learned.fitted
    deciles = [
        {
            "decile": item.number,
            "examples": item.examples,
            "score_low": item.low,
            "score_high": item.high,
            "predicted_rate": item.predicted,
            "observed_rate": item.observed,
            "lift": item.lift,
        }
        for item in fitted.deciles
    ]
    return {
        "outcome": learned.outcome.describe(),
        "unit": learned.outcome.unit,
        "as_of": learned.as_of,
        "examples": len(learned.examples.labels),
        "positive": sum(learned.examples.labels),
        "unknown_outcome": learned.examples.unknown,
        "train": len(fitted.train),
        "holdout": len(fitted.test),
        "holdout_lead_ids": [learned.examples.lead_ids[int(i)] for i in fitted.test],
        "seed": learned.options.seed,
        "regularisation_c": fitted.c,
        "strongest_penalty_chosen": fitted.c <= WEAKEST_C,
        "points_to_double_odds": learned.options.points_to_double,
        "intercept": fitted.intercept,
        "auc": fitted.auc,
        # The current model's AUC is computed with every one of its criteria, those the fit
        # leaves out for reading the outcome too: these, by id.
        "current_model_auc_includes": sorted(learned.reads_left_out),
        "top_decile_lift": fitted.deciles[0].lift if fitted.deciles else None,
        "deciles": deciles,
        "criteria": [
            {
                "id": item.id,
                "kind": item.kind,
                "origin": item.origin,
                "support": learned.support[index],
                "coefficient": fitted.coefficients[index],
                "points": fitted.points[index],
                "current_points": item.current_points,
                "kept": fitted.points[index] != 0,
            }
            for index, item in enumerate(learned.candidates)
        ],
        "same_as": learned.same_as,
        "current_left_out": [
            {"id": name, "current_points": points, "reason": why}
            for name, points, why in learned.current_left_out()
        ],
        "half_life": new_half_life(learned),
        "proposal": output,
        "chart": chart,
    }


def new_half_life(learned: Learned) -> str | None:
    for item in learned.candidates:
        if item.current_points is None and item.kind == "engagement":
            return str(item.spec.get("half_life"))
    return None


BAR_WIDTH, GAP, HEIGHT, LEFT, BOTTOM, TOP = 48, 12, 240, 56, 40, 40


def lift_chart(learned: Learned) -> str:
    """An SVG bar chart of lift by score decile (1 = the best scores), the line at 1 = random."""
    deciles = learned.fitted.deciles
    peak = max([item.lift for item in deciles] + [1.0])
    top = math.ceil(peak * 2) / 2
    width = LEFT + len(deciles) * (BAR_WIDTH + GAP) + GAP
    total = TOP + HEIGHT + BOTTOM

    def y_of(lift: float) -> float:
        return TOP + HEIGHT - lift / top * HEIGHT

    auc = learned.fitted.auc["points"]
    title = f"Lift by score decile (holdout {len(learned.fitted.test)}, ROC AUC {_figure(auc)})"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" '
        f'viewBox="0 0 {width} {total}" font-family="sans-serif" font-size="12">',
        f'<rect x="0" y="0" width="{width}" height="{total}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="14">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + HEIGHT}" stroke="black"/>',
        f'<line x1="{LEFT}" y1="{TOP + HEIGHT}" x2="{width}" y2="{TOP + HEIGHT}" stroke="black"/>',
    ]
    steps = round(top / 0.5)
    for step in range(steps + 1):
        value = step * 0.5
        y = y_of(value)
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:.1f}</text>'
            f'<line x1="{LEFT - 3}" y1="{y:.1f}" x2="{LEFT}" y2="{y:.1f}" stroke="black"/>'
        )
    for position, item in enumerate(deciles):
        x = LEFT + GAP + position * (BAR_WIDTH + GAP)
        y = y_of(item.lift)
        parts.append(
            f'<rect class="bar" x="{x}" y="{y:.1f}" width="{BAR_WIDTH}" '
            f'height="{TOP + HEIGHT - y:.1f}" fill="#4a78b5">'
            f"<title>decile {item.number}: lift {item.lift:.2f}, observed "
            f"{item.observed:.1%}, scores {item.low}..{item.high}</title></rect>"
        )
        parts.append(
            f'<text x="{x + BAR_WIDTH / 2}" y="{y - 4:.1f}" text-anchor="middle">'
            f"{item.lift:.2f}</text>"
            f'<text x="{x + BAR_WIDTH / 2}" y="{TOP + HEIGHT + 16}" text-anchor="middle">'
            f"{item.number}</text>"
        )
    one = y_of(1.0)
    parts.append(
        f'<line x1="{LEFT}" y1="{one:.1f}" x2="{width}" y2="{one:.1f}" stroke="#c0392b" '
        'stroke-dasharray="4 3"/>'
    )
    parts.append(
        f'<text x="{LEFT + (width - LEFT) / 2}" y="{total - 6}" text-anchor="middle">'
        "score decile (1 = highest scores); dashed line: lift 1 (no better than random)</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
