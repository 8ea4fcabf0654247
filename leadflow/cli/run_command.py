"""``leadflow run --once``: one evaluation of every due rule, or with ``--dry-run`` the plan.

A dry run prints, per rule, its first ``--limit`` planned firings (10 by default; ``--limit 0``
prints every one) and how many more there are, then the summary table: a plan of 100,000
firings is read by a person as counts and examples, not as 13 MB scrolling past. The firings
are printed as the evaluation reads them, never collected first.

The plan lines carry CRM data (external ids, evidence values): they are built as
``rich.text.Text`` pieces, so a lead called ``[/bold]x`` prints as it is instead of being read
as markup; written to a pipe or file they are plain text, without rich's rendering per line.
``--format json`` prints the same facts, every planned firing, as one document for scripts;
the plan is spooled to a temporary file while the rules run (its summary comes first in the
document), not held in memory.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from datetime import datetime, timedelta
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from leadflow.cli.console import (
    FormatOption,
    OutputFormat,
    data_console,
    json_default,
    readable_json,
)
from leadflow.cli.context import cli_context
from leadflow.clock import Clock, SettableClock, SystemClock, outside_the_calendar, parse_instant
from leadflow.errors import UserInputError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from leadflow.engine.evaluation import PlannedFiring, RuleOutcome
    from leadflow.engine.nurture_sends import NurtureSends
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
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            min=0,
            help="Dry run: planned firings printed per rule (0: every one; --format json lists every one).",
        ),
    ] = 10,
) -> None:
    """Evaluate every due rule once as of --now, apply the actions (or print them with --dry-run)."""
    if not once:
        import click

        msg = "leadflow run needs --once (the long-running service is 'leadflow daemon')"
        raise click.UsageError(msg)  # exit 2, like any other usage error
    from leadflow.engine.nurture_sends import last_audit_id, nurture_sends
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
    console = data_console()
    with context.engine.connect() as connection:
        baseline = last_audit_id(connection)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        sink: JsonPlan | PlanPrinter = (
            JsonPlan(spool) if output is OutputFormat.json else PlanPrinter(console, limit)
        )
        report = run_tick(
            runtime,
            rule_set,
            clock.now(),
            dry_run=dry_run,
            only=rule,
            force=every_rule,
            plan_to=sink if dry_run else None,
        )
        outcomes = report.rules
        waiting = _not_due(rule_set, outcomes, rule)
        sends = None
        if report.funnel is not None:
            with context.engine.connect() as connection:
                sends = nurture_sends(connection, after_id=baseline)
        if isinstance(sink, JsonPlan):
            document = run_document(
                report, rule_set, as_of=clock.now(), dry_run=dry_run, waiting=waiting, sends=sends
            )
            sink.print_document(document, sys.stdout)
        else:
            sink.close()
            _print_report(
                console,
                report,
                rule_set,
                as_of=clock.now(),
                dry_run=dry_run,
                waiting=waiting,
                sends=sends,
            )
    if any(outcome.external_failure for outcome in outcomes):
        raise typer.Exit(EXIT_EXTERNAL_FAILURE)  # the database (or SMTP) failed, not the rules
    if any(outcome.problem for outcome in outcomes):
        raise typer.Exit(1)  # a rule, or a firing of one, failed on the user's input


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
    outside = outside_the_calendar(clock.now())
    if outside is not None:
        # Rules look back from now (days_since, windows, the sales cycle's year) and SLA
        # deadlines ahead: near the calendar's first or last day those instants do not exist,
        # and each rule (each SLA timer) failed on its own.
        msg = f"--now {now}: {outside}"
        raise UserInputError(msg)
    return clock


def _not_due(rule_set: RuleSet, outcomes: list[RuleOutcome], only: list[str] | None) -> list[str]:
    """The enabled rules (of ``--rule``, if given) this run did not evaluate."""
    evaluated = {outcome.rule_id for outcome in outcomes}
    return [
        r.id for r in rule_set.enabled_rules if (not only or r.id in only) and r.id not in evaluated
    ]


def run_document(
    report: TickReport,
    rule_set: RuleSet,
    *,
    as_of: datetime,
    dry_run: bool,
    waiting: list[str],
    sends: NurtureSends | None = None,
) -> dict[str, Any]:
    """``run --once --format json``: the outcomes, with stable keys; ``plan`` is filled in by
    :class:`JsonPlan` (the dry run's firings, as they were read). ``nurture_steps``: what the
    funnel's nurture steps did with their emails (None when the funnel half did not run)."""
    return {
        "as_of": as_of,
        "dry_run": dry_run,
        "rule_version": rule_set.version,
        "rules": [
            {
                "rule_id": outcome.rule_id,
                "matched": outcome.matched,
                "fired": outcome.fired,
                "planned": outcome.matched if dry_run else 0,
                "failed": outcome.failed,
                "seconds": round(outcome.seconds, 3),
                "error": outcome.problem,
                "interrupted": outcome.interrupted,
                "note": outcome.note,
            }
            for outcome in report.rules
        ],
        "plan": [],
        "funnel": report.funnel,
        "nurture_steps": sends.document() if sends is not None else None,
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
    sends: NurtureSends | None,
) -> None:
    """What the tick did and which rules were not due (the plan lines are printed before)."""
    outcomes = report.rules
    if report.funnel is not None:
        steps = sends.text() if sends is not None else str(report.funnel["nurture"])
        console.print(
            f"SLA timers handled: {report.funnel['sla']}; nurture steps: {steps}", soft_wrap=True
        )
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

    rule, what, because = _plan_parts(planned)
    line = Text()
    line.append(rule, style="bold")
    line.append(what)
    line.append(because, style="dim")
    return line


def plan_text(planned: PlannedFiring) -> str:
    """:func:`plan_line` as plain text, for a pipe or a file (control codes stripped alike),
    without building a rich ``Text`` per firing."""
    from rich.control import strip_control_codes

    text: str = strip_control_codes("".join(_plan_parts(planned)))
    return text


def _plan_parts(planned: PlannedFiring) -> tuple[str, str, str]:
    return (
        planned.rule_id,
        f" {planned.subject} {planned.external_id}: {'; '.join(planned.actions)}  ",
        f"because {readable_json(planned.evidence)}",
    )


class PlanPrinter:
    """Prints each rule's first ``limit`` planned firings as they come (all of them with
    ``limit`` 0), then ``... and N more for RULE (use --limit, ...)``."""

    def __init__(self, console: Console, limit: int) -> None:
        self.console = console
        self.limit = limit
        self.terminal = console.is_terminal
        self.rule: str | None = None
        self.count = 0

    def __call__(self, planned: PlannedFiring) -> None:
        if planned.rule_id != self.rule:
            self.close()
            self.rule = planned.rule_id
        self.count += 1
        if self.limit and self.count > self.limit:
            return
        if self.terminal:
            self.console.print(plan_line(planned), soft_wrap=True)
        else:
            self.console.file.write(plan_text(planned) + "\n")

    def close(self) -> None:
        """Says how many of the last rule's firings were left out."""
        if self.rule is not None and self.limit and self.count > self.limit:
            self.console.print(
                f"... and {self.count - self.limit} more for {self.rule} "
                "(use --limit, or --format json for every one)",
                soft_wrap=True,
            )
        self.rule, self.count = None, 0


class JsonPlan:
    """Spools each planned firing as a line of JSON, then prints the document around them."""

    def __init__(self, spool: IO[str]) -> None:
        self.spool = spool
        self.count = 0

    def __call__(self, planned: PlannedFiring) -> None:
        entry = {
            "rule_id": planned.rule_id,
            "subject": planned.subject,
            "external_id": planned.external_id,
            "actions": planned.actions,
            "evidence": planned.evidence,
        }
        self.spool.write(",\n    " if self.count else "\n    ")
        self.spool.write(json.dumps(entry, default=json_default, ensure_ascii=False))
        self.count += 1

    def print_document(self, document: dict[str, Any], out: IO[str]) -> None:
        """``document`` as ``print_json`` prints it, its empty ``plan`` filled from the spool."""
        text = json.dumps(document, default=json_default, ensure_ascii=False, indent=2)
        head, tail = text.split('"plan": []', 1)
        out.write(head)
        out.write('"plan": [')
        if self.count:
            self.spool.seek(0)
            shutil.copyfileobj(self.spool, out)
            out.write("\n  ")
        out.write("]")
        out.write(tail)
        out.write("\n")


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
        fired = outcome.matched if dry_run else outcome.fired
        table.add_row(
            outcome.rule_id,
            str(outcome.matched),
            str(fired),
            str(outcome.failed),
            f"{outcome.seconds:.3f}",
            outcome.problem or "",
        )
    console.print(table)
    for outcome in outcomes:
        if outcome.note:
            console.print(f"note: {outcome.rule_id}: {outcome.note}", markup=False, soft_wrap=True)
    verb = "planned (dry run, nothing written)" if dry_run else "evaluated"
    console.print(f"{len(outcomes)} rule(s) {verb}, rule set {version}")
