"""``leadflow demo``: a sample funnel moving on a fast simulated clock, in a store of its own."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from leadflow.cli.console import data_console
from leadflow.cli.context import cli_context
from leadflow.cli.invocation import invoked_as

MQL_THRESHOLD = 60
"""The shipped mql-assignment rule's threshold, named when the followed lead crosses it."""

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from leadflow.cli.demo_funnel import DemoRun
    from leadflow.funnel.period import Period
    from leadflow.settings import Settings


def demo(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", min=1, max=60, help="Simulated days to run.")] = 5,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", help="Show the info log events (rules evaluated, mail sent)."),
    ] = False,
) -> None:
    """Create a sample funnel under state/demo/ and run the shipped rules over a few days."""
    from rich.progress import Progress

    from leadflow.cli.demo_funnel import run_demo_funnel

    context = cli_context(ctx)
    context.render_for_person(verbose=verbose, even_off_a_terminal=True)
    settings = context.settings
    _shipped_rules_at_hand(settings)
    folder = settings.path(settings.paths.state) / "demo"
    console = data_console(min_width=110)
    console.print(
        f"Sample funnel: 15 reps, 1,200 leads, 400 deals in {folder}; rules from {settings.path(settings.paths.rules)}"
    )
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("simulating, two hours a step", total=days * 12)
        run = run_demo_funnel(
            settings,
            folder,
            days=days,
            progress=lambda done, _total: bar.update(task, completed=done),
        )
    store = f"LEADFLOW_DATABASE__URL=sqlite:///{folder / 'leadflow.db'}"
    if run.scoring is not None:
        _scores(console, run, store)
    emails = len(list((folder / "maildir" / "new").glob("*.eml")))
    console.print(
        f"{emails} emails were delivered as .eml files into {folder / 'maildir' / 'new'}"
        f"{_pending_text(run.pending)}.",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"Why each lead moved:  {store} {invoked_as()} audit --limit 30",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"How the funnel stands: {store} {invoked_as()} status", highlight=False, soft_wrap=True
    )
    period = demo_period(days)
    _report_and_dashboard(console, store, folder, period)
    console.print()
    show_week_report(settings, folder, period)


def _shipped_rules_at_hand(settings: Settings) -> None:
    """Run outside the leadflow folder, the demo announced its sample funnel, made its store
    and only then failed on the rules folder, with no word on where the rules it runs are."""
    from leadflow.errors import UserInputError

    rules = settings.path(settings.paths.rules)
    if not rules.is_dir():
        raise UserInputError(
            f"{rules}: rules folder not found; the demo runs the rules and templates shipped"
            " in the leadflow folder: run it there, or point paths.rules and paths.templates"
            " (LEADFLOW_PATHS__RULES, LEADFLOW_PATHS__TEMPLATES) at them"
        )


def _pending_text(pending: tuple[datetime, ...]) -> str:
    """The emails the demo queued but did not deliver: due after its last step."""
    if not pending:
        return ""
    count, them = (
        (f"{len(pending)} email is", "it")
        if len(pending) == 1
        else (f"{len(pending)} emails are", "them")
    )
    return (
        f"; {count} still pending in the outbox, due from {pending[0]:%Y-%m-%d %H:%M} UTC, "
        f"after the demo's last step (leadflow outbox lists {them})"
    )


def demo_period(days: int) -> Period:
    """The simulated days, whole: from the first day's start to the end of the day the last
    step ends in. The dashboard's Funnel page takes whole days, so the report printed and the
    page linked name the same period. Its ``now`` is the simulated clock's after the last step:
    the report printed here measures what is still open there, not at the midnight after it."""
    from leadflow.cli.demo_funnel import START
    from leadflow.funnel.period import Period, day_start

    end = START + timedelta(days=days)
    last = end - timedelta(microseconds=1)
    return Period(day_start(START.date()), day_start(last.date(), after=True), now=end)


WEEK_SECTIONS = ("stage_entries", "conversion", "sla", "pipeline")
"""What a week shows: stage counts and conversion, SLA compliance per rep, pipeline velocity."""


def show_week_report(settings: Settings, folder: Path, period: Period) -> None:
    """``leadflow report`` of the demo's store over ``period``, its sections for a week only."""
    from leadflow.clock import SystemClock
    from leadflow.funnel.report import build_report
    from leadflow.funnel.sections import sections
    from leadflow.funnel.text import render_tables
    from leadflow.store.database import create_store_engine

    engine = create_store_engine(f"sqlite:///{folder / 'leadflow.db'}")
    try:
        report = build_report(engine, settings, period, SystemClock().now())
    finally:
        engine.dispose()
    rows = sections(report)
    shown = {name: rows[name] for name in WEEK_SECTIONS}
    shown["sla"] = [row for row in shown["sla"] if row["by"] == "rep"]
    render_tables(report, shown, None)


def _report_and_dashboard(console: Console, store: str, folder: Path, period: Period) -> None:
    """Where to read the simulated days' whole funnel report, and how to open the dashboard."""
    from leadflow.dashboard.access import hash_password

    # Days, as the dashboard's link names them: --to's day is included.
    first, last = (f"{at:%Y-%m-%d}" for at in (period.start, period.end - timedelta(days=1)))
    console.print(
        f"The whole report:     {store} {invoked_as()} report --from {first} --to {last} "
        f"--now {period.as_of:%Y-%m-%dT%H:%M:%SZ} "
        f"(--format html --output {folder / 'report.html'} for the charts)",
        highlight=False,
        soft_wrap=True,
    )
    # A throwaway user for the demo's store only; the hash is made here, never shipped.
    user = "LEADFLOW_DASHBOARD__USERS__DEMO"
    # The Funnel page shows the last 7 days unless told: the simulated days are in the past.
    days = f"from={first}&to={last}"
    # `dashboard serve`, not the daemon: the daemon would tick at today's date and run every
    # SLA check, nurture step and recycling due since the simulated days on the demo's store.
    console.print(
        f"The dashboard:        {store} LEADFLOW_DASHBOARD__ENABLED=true "
        f"{user}__PASSWORD_HASH='{hash_password('demo')}' {invoked_as()} dashboard serve "
        f"--now {period.as_of:%Y-%m-%dT%H:%M:%SZ}, then open "
        f"'http://127.0.0.1:8080/ui/funnel?{days}' (user demo, password demo)",
        highlight=False,
        soft_wrap=True,
    )


def _scores(console: Console, run: DemoRun, store: str) -> None:
    """A few leads' scores day by day, the moment one becomes an MQL, and where to ask why."""
    from rich.table import Table

    how = (
        "runs turned on here (enabled: true for the demo's store only; your rules folder is "
        "unchanged)"
        if run.turned_on
        else "runs as in your rules folder"
    )
    console.print(
        f"Scoring: the model in {run.scoring} {how}: score = fit + engagement, engagement fades.",
        highlight=False,
        soft_wrap=True,
    )
    days = (report.day.rsplit(" ", 1)[0] for report in run.reports)  # "Mon 02 Mar"
    table = Table("lead", *days, title="Score = fit + engagement and grade, at each day's end")
    for lead in run.followed:
        cells = [f"{day.score} = {day.fit}+{day.engagement} {day.grade}" for day in lead.days]
        table.add_row(f"{lead.external_id}\n{lead.profile}", *cells)
    console.print(table)
    crossing = run.crossing
    if crossing is None:
        return
    owner = f", assigned to {crossing.owner}" if crossing.owner else ""
    crossed = (
        f"crossed {MQL_THRESHOLD}"
        if crossing.old_score < MQL_THRESHOLD <= crossing.new_score
        else f"reached {crossing.new_score}"
    )
    steps = " -> ".join(f"{at:%H:%M} {score} ({what})" for at, score, what in crossing.steps)
    console.print(
        f"{crossing.external_id} engaged on {crossing.at:%a %d %b} (UTC): {steps}; it {crossed} "
        f"and became an MQL in the same tick{owner}.",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        # --at: the folder's model is off, so explain's default instant would be the real now.
        f"Why this score:       {store} {invoked_as()} score explain {crossing.external_id} "
        f"--at {crossing.at:%Y-%m-%dT%H:%M:%SZ}",
        highlight=False,
        soft_wrap=True,
    )
