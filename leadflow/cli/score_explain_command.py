"""``leadflow score explain LEAD``: every contribution to a lead's score, adding up to it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from leadflow.cli.console import FormatOption, OutputFormat, data_console, print_json
from leadflow.cli.context import cli_context
from leadflow.errors import UserInputError

if TYPE_CHECKING:
    from rich.console import Console

    from leadflow.scoring.explain import ScoreExplanation

ACTIVITIES_SHOWN = 5
TOO_EARLY = (
    "{option} {given}: too close to the calendar's first day: the scoring model looks back "
    "from it (windows, half-lives); give a later time"
)
"""The model's look-back from a time in year 1 is before any date Python can hold."""


def explain(
    ctx: typer.Context,
    lead: Annotated[str, typer.Argument(help="The lead's external id (the CRM's id).")],
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Explain the score as of this ISO time (default: when the model last stored "
            "the lead's score, so the lines add up to it; 'now' for this moment).",
        ),
    ] = None,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Why a lead has its score: each fit and engagement criterion, the activities that earned
    the points (decayed to now), the rules' adjustment, and the last changes."""
    from leadflow.clock import SettableClock, SystemClock, parse_instant
    from leadflow.engine.runtime import Runtime
    from leadflow.ingest.json_values import text_problem
    from leadflow.scoring.explain import explain_score

    problem = text_problem(lead)
    if problem is not None:
        raise UserInputError(f"LEAD: {problem}")
    try:
        clock = SettableClock(parse_instant(at)) if at and at != "now" else SystemClock()
    except ValueError as exc:
        raise UserInputError(f"--at: {exc}") from None
    context = cli_context(ctx)
    runtime = Runtime.build(context.reading_engine, context.settings, clock, read_only=True)
    model = runtime.load_rules().scoring
    try:
        found = explain_score(
            context.reading_engine, model, lead, clock.now(), as_stored=at is None
        )
    except OverflowError:
        raise UserInputError(TOO_EARLY.format(option="--at", given=at)) from None
    if found is None:
        msg = f"no lead with external id {lead!r}"
        raise UserInputError(msg)
    if output is OutputFormat.json:
        print_json(found.as_json())
        return
    given = clock.now() if at and at != "now" else None
    _print(data_console(min_width=100), found, given, SystemClock().now())


def _print(
    console: Console, found: ScoreExplanation, given: datetime | None, now: datetime
) -> None:
    from rich.table import Table

    stored = found.stored
    console.print(
        f"{found.lead}: stored score {stored['score']} (fit {_text(stored['fit'])}, engagement "
        f"{_text(stored['engagement'])}, adjustment {stored['adjustment']}, grade "
        f"{stored['grade'] or '-'})"
    )
    if found.model_version is None:
        console.print(
            "No scoring model in the rules folder: the score is the CRM's (import or API), "
            "moved only by rules' adjust_score/set_score."
        )
    else:
        state = "enabled"
        if not found.model_enabled:
            state = (
                "enabled: false in the rules folder, but the store's scores are from its last "
                "pass (the demo turns it on in its own store)"
                if found.model_ran_here
                else "disabled (enabled: false): not applied"
            )
        when = f"as of {found.at:%Y-%m-%d %H:%M:%S} UTC"
        if found.stored["scored_at"] == found.at:
            when += ", when the stored score was computed (--at now: this moment)"
        console.print(f"Scoring model {found.model_version}, {state}; {when}:")
        table = Table("part", "criterion", "points", "how", box=None)
        for item in found.contributions:
            how = item.rule
            if item.raw is not None:
                how += f" (sum {item.raw:.2f} before cap and rounding)"
            table.add_row(item.part, item.criterion, f"{item.points:+d}", how)
            for activity in item.activities[:ACTIVITIES_SHOWN]:
                table.add_row(
                    "",
                    f"  {activity.external_id}",
                    "",
                    f"{activity.type} at {activity.occurred_at:%Y-%m-%d %H:%M}: "
                    f"worth {activity.value:.2f}",
                )
            if len(item.activities) > ACTIVITIES_SHOWN:
                more = len(item.activities) - ACTIVITIES_SHOWN
                table.add_row("", f"  ... {more} more", "", "")
            if item.machine:
                table.add_row(
                    "", f"  {len(item.machine)} by a machine", "", "recorded, worth no points"
                )
        table.add_row(
            "total",
            # Every part, the rules' too, so the line adds up as written: 25 + 0 + -20 = 5.
            f"fit {found.fit} + engagement {found.engagement} + rules {found.adjustment}",
            f"= {found.total}",
            _agreement(found, given, now),
        )
        console.print(table)
    if found.history:
        console.print("Last changes (newest first):")
        history = Table("at (UTC)", "from", "to", "why", box=None)
        for row in found.history:
            history.add_row(
                f"{row['at']:%Y-%m-%d %H:%M}",
                str(row["old_score"]),
                str(row["new_score"]),
                row["why"],
            )
        console.print(history)


def _agreement(found: ScoreExplanation, given: datetime | None, now: datetime) -> str:
    """How the total relates to the stored score; ``given``: the instant of ``--at`` (None
    for none, or ``now``)."""
    if not found.model_enabled and not found.model_ran_here:
        return "what the score would be with the model on"
    if found.matches_stored:
        return "= the stored score"
    written = found.stored_from == "import_or_api"
    source = ""
    if written:
        # No pass stored it: a score posted or imported while no model was live (or before
        # any pass) is kept as written until the next pass.
        never = " (no pass has scored this lead yet)" if found.stored["scored_at"] is None else ""
        source = (
            f"the stored score {found.stored['score']} was written by an import or the API, "
            f"not by a scoring pass{never}"
        )
    if given is None:
        if written:
            return f"{source}; the next pass stores this"
        return "the stored score is from the last scoring pass; the next one stores this"
    # An instant of one's choosing is no pass's: the next pass computes its own instant's.
    scored_at = found.stored["scored_at"]
    last = f" ({scored_at:%Y-%m-%d %H:%M} UTC)" if scored_at is not None else ""
    stored = source if written else f"the stored one is the last pass's{last}"
    when = f"{given:%Y-%m-%d %H:%M} UTC"
    if given > now:
        return f"the score at {when} if nothing else changes; {stored}"
    return f"the score as of {when}; {stored}"


def _text(value: int | None) -> str:
    return "-" if value is None else str(value)
