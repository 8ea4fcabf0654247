"""``leadflow score fit``: learn the scoring model's points from leads with a known outcome.

scikit-learn is an optional extra (``pip install 'leadflow[learn]'``): it is imported inside
the command, so ``--help`` and every other command start without it (and without numpy).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from leadflow.cli.console import FormatOption, OutputFormat
from leadflow.cli.context import cli_context
from leadflow.cli.score_explain_command import TOO_EARLY
from leadflow.errors import UserInputError

if TYPE_CHECKING:
    from leadflow.scoring.learning import Learned

MISSING_SKLEARN = "leadflow score fit needs scikit-learn: pip install 'leadflow[learn]'"


def fit_scoring(
    ctx: typer.Context,
    outcome: Annotated[
        str,
        typer.Option(
            "--outcome",
            help="The known outcome: a lead field (attributes.converted, stage, ...) or deals.",
        ),
    ],
    positive: Annotated[
        str | None,
        typer.Option("--positive", help="Values that mean yes, comma-separated (e.g. customer)."),
    ] = None,
    negative: Annotated[
        str | None,
        typer.Option(
            "--negative", help="Values that mean no, comma-separated (e.g. disqualified,recycled)."
        ),
    ] = None,
    unit: Annotated[
        Literal["lead", "deal"],
        typer.Option("--unit", help="With --outcome deals: one example per lead, or per deal."),
    ] = "lead",
    holdout: Annotated[
        float,
        typer.Option("--holdout", min=0.05, max=0.5, help="Share held out to measure the fit."),
    ] = 0.3,
    seed: Annotated[
        int,
        # The split's generator takes 0 to 2**32 - 1; outside it a ValueError traceback.
        typer.Option("--seed", min=0, max=2**32 - 1, help="Seed of the split and the folds."),
    ] = 0,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Engagement as of this ISO time (default: now)."),
    ] = None,
    half_life: Annotated[
        str, typer.Option("--half-life", help="Half-life of new engagement criteria.")
    ] = "30d",
    min_support: Annotated[
        int,
        typer.Option("--min-support", min=1, help="Examples a new criterion must match."),
    ] = 20,
    exclude: Annotated[
        str | None,
        typer.Option(
            "--exclude",
            help="Attributes (attributes.X) and activity types to leave out, comma-separated: "
            "what is only known after the outcome.",
        ),
    ] = None,
    points_to_double: Annotated[
        int,
        typer.Option("--points-to-double-odds", min=1, help="Points that double the odds."),
    ] = 10,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The proposed scoring file to write.")
    ] = Path("scoring.proposed.yaml"),
    chart: Annotated[
        Path | None,
        typer.Option(
            "--chart",
            help="Write an SVG chart of lift by score decile (a file name ending in .svg).",
        ),
    ] = None,
    rules: Annotated[
        Path | None, typer.Option("--rules", help="Rules folder (default: paths.rules).")
    ] = None,
    output_format: FormatOption = OutputFormat.table,
) -> None:
    """Fit points for the scoring criteria from known outcomes; write a proposed scoring file."""
    try:
        import sklearn  # noqa: F401 (only to say what is missing, before any work)
    except ImportError:
        raise UserInputError(MISSING_SKLEARN) from None
    from leadflow.clock import SystemClock, parse_instant
    from leadflow.durations import parse_duration
    from leadflow.rule_language.loader import load_rule_set
    from leadflow.scoring.learning import learn_points
    from leadflow.scoring.learning_fit import FitOptions
    from leadflow.scoring.learning_outcome import outcome_spec
    from leadflow.scoring.learning_report import lift_chart, proposal_text, report_document

    context = cli_context(ctx)
    settings = context.settings
    folder = rules if rules is not None else settings.path(settings.paths.rules)
    _refuse_inside(output, folder)
    if chart is not None and chart.suffix.lower() != ".svg":
        # The chart is SVG text: written to lift.png it was a file no image viewer opens.
        msg = f"--chart {chart}: the chart is an SVG drawing; give a file name ending in .svg"
        raise UserInputError(msg)
    spec = outcome_spec(outcome, positive, negative, unit, settings)
    try:
        now = parse_instant(as_of) if as_of else SystemClock().now()
    except ValueError as exc:
        raise UserInputError(f"--as-of: {exc}") from None
    try:
        fresh_half_life = parse_duration(half_life)
    except ValueError as exc:
        raise UserInputError(f"--half-life: {exc}") from None
    excluded = _excluded(exclude, settings.attributes.leads)
    current = load_rule_set(folder, settings).scoring
    options = FitOptions(holdout, seed, points_to_double, grouped=spec.unit == "deal")
    try:
        learned = learn_points(
            context.reading_engine,  # only reads: never migrates
            settings,
            current,
            spec,
            now,
            options,
            min_support=min_support,
            half_life=fresh_half_life,
            excluded=excluded,
        )
    except OverflowError:
        raise UserInputError(TOO_EARLY.format(option="--as-of", given=as_of)) from None
    note = (
        f"It would replace the model in {current.location.file}."
        if current is not None
        else f"The rules folder {folder} has no scoring model yet."
    )
    output.write_text(proposal_text(learned, note), encoding="utf-8")
    if chart is not None:
        chart.write_text(lift_chart(learned), encoding="utf-8")
    document = report_document(learned, str(output), None if chart is None else str(chart))
    if output_format is OutputFormat.json:
        from leadflow.cli.console import print_json

        print_json(document)
        return
    _print_report(learned, document)


def _excluded(text: str | None, declared: Mapping[str, str]) -> frozenset[str]:
    names = frozenset(part.strip() for part in (text or "").split(",") if part.strip())
    for name in sorted(names):
        attribute = name.removeprefix("attributes.")
        if name.startswith("attributes.") and attribute not in declared:
            msg = f"--exclude {name}: {attribute!r} is not declared under attributes.leads"
            raise UserInputError(msg)
    return names


def _refuse_inside(output: Path, folder: Path) -> None:
    if output.resolve().is_relative_to(folder.resolve()):
        msg = (
            f"--output {output}: inside the rules folder {_shown(folder)}, where a second scoring model "
            "would make the rule set invalid; write it elsewhere and move it in place of the old "
            "model after review"
        )
        raise UserInputError(msg)


def _criteria(count: int) -> str:
    return "criterion" if count == 1 else "criteria"


def _print_report(learned: Learned, document: dict[str, object]) -> None:
    from rich.table import Table

    from leadflow.cli.console import data_console
    from leadflow.scoring.learning_report import left_out_lines

    console = data_console(min_width=100)
    fitted = learned.fitted
    console.print(
        f"Outcome: {learned.outcome.describe()}. {document['examples']} examples "
        f"({document['positive']} positive), {document['unknown_outcome']} without a known "
        f"outcome left out; trained on {document['train']}, held out {document['holdout']} "
        f"(seed {learned.options.seed}); C = {fitted.c:.4g}."
    )
    auc = Table(title="Holdout ROC AUC")
    auc.add_column("score")
    auc.add_column("ROC AUC", justify="right")
    names = {
        "fitted": "fitted model (probabilities)",
        "points": "proposed points (integer score)",
        "baseline": "plain logistic regression on the raw columns",
        "current_model": "current model, recomputed as of --as-of",
        "stored_score": "stored score",
    }
    if learned.reads_left_out:
        # Its criteria reading the outcome (or what --exclude names) are in its score, and they
        # predict the outcome from itself: its AUC is no yardstick for the proposal's.
        count = len(learned.reads_left_out)
        names["current_model"] += f", with its {count} left-out {_criteria(count)} (a leak)"
    for key, label in names.items():
        value = fitted.auc.get(key)
        auc.add_row(label, "n/a" if value is None else f"{value:.3f}")
    console.print(auc)
    table = Table(
        title=f"Calibration and lift by score decile (top-decile lift {fitted.deciles[0].lift:.2f})"
    )
    for name in ("decile", "examples", "scores", "predicted", "observed", "lift"):
        table.add_column(name, justify="right")
    for item in fitted.deciles:
        table.add_row(
            str(item.number),
            str(item.examples),
            f"{item.low}..{item.high}",
            f"{item.predicted:.1%}",
            f"{item.observed:.1%}",
            f"{item.lift:.2f}",
        )
    console.print(table)
    kept = sum(1 for points in fitted.points if points)
    if document["strongest_penalty_chosen"]:
        console.print(
            "Cross-validation chose the strongest regularisation it tried: on this data the "
            "criteria hardly tell the outcomes apart; read the points with suspicion."
        )
    elif not kept:
        console.print("No criterion earns a whole point: try a smaller --points-to-double-odds.")
    console.print(
        f"Wrote {document['proposal']}: {kept} of {len(fitted.points)} criteria kept "
        "(the others' points round to 0, or they did not vary)."
        + (f" Chart: {document['chart']}." if document["chart"] else ""),
        soft_wrap=True,  # a long path broken at the console's width cannot be copied
    )
    for line in left_out_lines(learned):
        console.print(line, highlight=False, markup=False)


def _shown(folder: Path) -> str:
    try:
        return str(folder.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)
