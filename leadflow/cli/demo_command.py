"""``leadflow demo``: a sample funnel moving on a fast simulated clock, in a store of its own."""

from __future__ import annotations

from typing import Annotated

import typer

from leadflow.cli.console import data_console
from leadflow.cli.context import cli_context


def demo(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", min=1, max=60, help="Simulated days to run.")] = 5,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show info log events on a terminal too.")
    ] = False,
) -> None:
    """Create a sample funnel under state/demo/ and run the shipped rules over a few days."""
    from rich.progress import Progress
    from rich.table import Table

    from leadflow.cli.demo_funnel import run_demo_funnel

    context = cli_context(ctx)
    context.render_for_person(verbose=verbose)
    settings = context.settings
    folder = settings.path(settings.paths.state) / "demo"
    console = data_console(min_width=110)
    console.print(
        f"Sample funnel: 15 reps, 1,200 leads, 400 deals in {folder}; rules from {settings.path(settings.paths.rules)}"
    )
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("simulating, two hours a step", total=days * 12)
        reports = run_demo_funnel(
            settings,
            folder,
            days=days,
            progress=lambda done, _total: bar.update(task, completed=done),
        )
    table = Table(
        "day",
        "MQLs assigned",
        "SLA escalations",
        "reassigned",
        "deals recycled",
        "nurture emails",
        "emails delivered",
        title="The funnel, day by day",
    )
    for report in reports:
        table.add_row(
            report.day,
            str(report.mqls),
            str(report.escalations),
            str(report.reassigned),
            str(report.recycled),
            str(report.nurture_sent),
            str(report.emails_delivered),
        )
    console.print(table)
    emails = len(list((folder / "maildir" / "new").glob("*.eml")))
    store = f"LEADFLOW_DATABASE__URL=sqlite:///{folder / 'leadflow.db'}"
    console.print(
        f"{emails} emails were delivered as .eml files into {folder / 'maildir' / 'new'}.",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"Why each lead moved:  {store} leadflow audit --limit 30", highlight=False, soft_wrap=True
    )
    console.print(
        f"How the funnel stands: {store} leadflow status", highlight=False, soft_wrap=True
    )
