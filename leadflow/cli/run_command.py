"""``leadflow run --once``: one evaluation of every due rule, or with ``--dry-run`` the plan.

The plan lines carry CRM data (external ids, evidence values): they are built as
``rich.text.Text`` pieces, so a lead called ``[/bold]x`` prints as it is instead of being read
as markup. ``--format json`` prints the same facts as one document for scripts.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leadflow.cli.console import FormatOption, OutputFormat, data_console, print_json
from leadflow.cli.context import cli_context
from leadflow.clock import Clock, SettableClock, SystemClock, parse_instant
from leadflow.errors import UserInputError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from leadflow.engine.evaluation import PlannedFiring, RuleOutcome
    from leadflow.engine.tick import TickReport
    from leadflow.rule_language.model import RuleSet

EXIT_EXTERNAL_FAILURE = 3


def run_once(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Evaluate what is due now, then exit.")
    ] = False,
    now: Annotated[
        str | None, typer.Option("--now", help="Evaluate as of this ISO time (default: now).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; write nothing.")
    ] = False,
    rule: Annotated[
        list[str] | None, typer.Option("--rule", help="Only this rule id (repeatable).")
    ] = None,
    every_rule: Annotated[
        bool, typer.Option("--all", help="Evaluate every enabled rule, due or not.")
    ] = False,
    output: FormatOption = OutputFormat.table,
) -> None:
    """Evaluate every due rule once as of --now, apply the actions (or print them with --dry-run)."""
    if not once:
        import click

        msg = "leadflow run needs --once (the long-running service is 'leadflow daemon')"
        raise click.UsageError(msg)  # exit 2, like any other usage error
    from leadflow.engine.runtime import Runtime
    from leadflow.engine.tick import run_tick

    context = cli_context(ctx)
    clock = _clock(now, dry_run=dry_run)
    runtime = Runtime.build(context.engine, context.settings, clock, read_only=dry_run)
    rule_set = runtime.load_rules()
    unknown = sorted(set(rule or ()) - {r.id for r in rule_set.rules})
    if unknown:
        msg = f"--rule: unknown rule id(s) {', '.join(unknown)}"
        raise UserInputError(msg)
    report = run_tick(runtime, rule_set, clock.now(), dry_run=dry_run, only=rule, force=every_rule)
    outcomes = report.rules
    waiting = _not_due(rule_set, outcomes, rule)
    if output is OutputFormat.json:
        print_json(
            run_document(report, rule_set, as_of=clock.now(), dry_run=dry_run, waiting=waiting)
        )
    else:
        _print_report(
            data_console(), report, rule_set, as_of=clock.now(), dry_run=dry_run, waiting=waiting
        )
    if any(outcome.external_failure for outcome in outcomes):
        raise typer.Exit(EXIT_EXTERNAL_FAILURE)  # the database failed, not the rules
    if any(outcome.error for outcome in outcomes):
        raise typer.Exit(1)


def _clock(now: str | None, *, dry_run: bool) -> Clock:
    """The clock of ``--now``; a future instant only for a dry run."""
    try:
        clock: Clock = SettableClock(parse_instant(now)) if now else SystemClock()
    except ValueError as exc:
        raise UserInputError(f"--now: {exc}") from None
    if not dry_run and clock.now() > SystemClock().now() + timedelta(minutes=1):
        # Recorded runs and SLA timers in the future would hold the daemon back until then.
        msg = f"--now {now} is in the future: add --dry-run, or try it with leadflow simulate"
        raise UserInputError(msg)
    return clock


def _not_due(rule_set: RuleSet, outcomes: list[RuleOutcome], only: list[str] | None) -> list[str]:
    """The enabled rules (of ``--rule``, if given) this run did not evaluate."""
    evaluated = {outcome.rule_id for outcome in outcomes}
    return [
        r.id for r in rule_set.enabled_rules if (not only or r.id in only) and r.id not in evaluated
    ]


def run_document(
    report: TickReport, rule_set: RuleSet, *, as_of: datetime, dry_run: bool, waiting: list[str]
) -> dict[str, Any]:
    """``run --once --format json``: the outcomes, the plan of a dry run, with stable keys."""
    return {
        "as_of": as_of,
        "dry_run": dry_run,
        "rule_version": rule_set.version,
        "rules": [
            {
                "rule_id": outcome.rule_id,
                "matched": outcome.matched,
                "fired": outcome.fired,
                "planned": len(outcome.planned),
                "failed": outcome.failed,
                "seconds": round(outcome.seconds, 3),
                "error": outcome.error,
                "interrupted": outcome.interrupted,
            }
            for outcome in report.rules
        ],
        "plan": [asdict(planned) for outcome in report.rules for planned in outcome.planned],
        "funnel": report.funnel,
        "not_due": waiting,
    }


def _print_report(
    console: Console,
    report: TickReport,
    rule_set: RuleSet,
    *,
    as_of: datetime,
    dry_run: bool,
    waiting: list[str],
) -> None:
    """What the tick did, the plan of a dry run, and which rules were not due."""
    outcomes = report.rules
    if report.funnel is not None:
        slas, steps = report.funnel["sla"], report.funnel["nurture"]
        console.print(f"SLA timers handled: {slas}; nurture steps sent: {steps}")
    if dry_run:
        for outcome in outcomes:
            for planned in outcome.planned:
                console.print(plan_line(planned), soft_wrap=True)
    _print_summary(console, outcomes, rule_set.version, dry_run=dry_run)
    if waiting:
        console.print(
            f"not due yet as of {as_of:%Y-%m-%d %H:%M} UTC (their next scheduled time after the last run has not come): "
            f"{', '.join(waiting)}; --all evaluates them anyway",
            soft_wrap=True,
        )


def plan_line(planned: PlannedFiring) -> Text:
    """One planned firing: the rule id in bold, the evidence dim, CRM text never markup."""
    from rich.text import Text

    line = Text()
    line.append(planned.rule_id, style="bold")
    line.append(f" {planned.subject} {planned.external_id}: {'; '.join(planned.actions)}  ")
    line.append(f"because {json.dumps(planned.evidence, default=str)}", style="dim")
    return line


def _print_summary(
    console: Console, outcomes: list[RuleOutcome], version: str, *, dry_run: bool
) -> None:
    from rich.table import Table

    table = Table(
        "rule",
        "matched",
        "would fire" if dry_run else "fired",
        "failed",
        "seconds",
        "error",
        box=None,
    )
    for outcome in outcomes:
        fired = len(outcome.planned) if dry_run else outcome.fired
        table.add_row(
            outcome.rule_id,
            str(outcome.matched),
            str(fired),
            str(outcome.failed),
            f"{outcome.seconds:.3f}",
            outcome.error or "",
        )
    console.print(table)
    verb = "planned (dry run, nothing written)" if dry_run else "evaluated"
    console.print(f"{len(outcomes)} rule(s) {verb}, rule set {version}")
