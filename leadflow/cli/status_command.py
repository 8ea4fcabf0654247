"""``leadflow status``: stages, owners, deals, reps and the last import of each kind."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from leadflow.cli.context import cli_context
from leadflow.clock import SystemClock
from leadflow.engine.rule_runs import next_run_at
from leadflow.engine.runtime import Runtime
from leadflow.errors import ProblemsError
from leadflow.rule_language.model import RuleSet
from leadflow.store.status import StoreStatus, collect_status


def show_status(ctx: typer.Context) -> None:
    """Show how the funnel stands: stages, owners, the MQL queue, outbox, SLAs, rules, imports."""
    context = cli_context(ctx)
    console = Console(width=max(Console().width, 140))
    settings = context.settings
    status = collect_status(context.engine, mql_stage=settings.stages.mql)
    render_status(status, console)
    render_operations(status, console)
    render_rules(Runtime.build(context.engine, settings, SystemClock()), status, console)


def render_operations(status: StoreStatus, console: Console) -> None:
    """The MQL queue, the outbox and the SLA timers."""
    waiting = ", ".join(
        f"{lead} (since {since:%Y-%m-%d %H:%M} UTC)" for lead, since in status.mql_queue
    )
    more = status.mql_queue_total - len(status.mql_queue)
    console.print(
        f"MQLs waiting for a rep: {status.mql_queue_total}"
        + (f": {waiting}" if waiting else "")
        + (f" and {more} more" if more > 0 else "")
    )
    outbox = (
        ", ".join(f"{name} {count}" for name, count in status.outbox_by_status.items()) or "empty"
    )
    oldest = (
        f"; oldest unsent queued {status.oldest_pending_at:%Y-%m-%d %H:%M} UTC"
        if status.oldest_pending_at
        else ""
    )
    console.print(
        f"outbox: {outbox}{oldest}"
        + ("  (see: leadflow outbox --failed)" if status.outbox_by_status.get("failed") else "")
    )
    slas = ", ".join(f"{name} {count}" for name, count in status.slas_by_status.items()) or "none"
    console.print(f"SLA timers: {slas}")


def render_rules(runtime: Runtime, status: StoreStatus, console: Console) -> None:
    """The rules folder as it would load now; each rule's schedule, last run and next run."""
    rule_set: RuleSet | None = None
    try:
        rule_set = runtime.load_rules()
    except ProblemsError as exc:
        console.print(
            f"rules folder: REFUSED, {len(exc.problems)} problem(s); a running daemon keeps its last good rules",
            style="bold red",
        )
        for problem in exc.problems[:20]:
            console.print(f"  {problem}", highlight=False)
    else:
        console.print(
            f"rules folder: {len(rule_set.enabled_rules)} enabled rule(s), version {rule_set.version}"
        )
    runs = {run.rule_id: run for run in status.rule_runs}
    rules = {rule.id: rule for rule in rule_set.enabled_rules} if rule_set else {}
    if not runs and not rules:
        console.print("rule runs: none yet")
        return
    table = Table(box=None, pad_edge=False)
    for header in ("rule", "schedule", "last run (UTC)", "next run (UTC)", "status", "matched"):
        table.add_column(header, no_wrap=True)
    for header in ("version run", "error"):  # these give way on a narrow terminal
        table.add_column(header, overflow="fold")
    now = runtime.clock.now()
    for rule_id in sorted(set(runs) | set(rules)):
        run, rule = runs.get(rule_id), rules.get(rule_id)
        last = run.last_started_at if run else None
        # As the daemon sees it: a never-run cron rule counts from its stored first sighting.
        seen = run.first_seen_at if run else None
        if rule is None:
            schedule, upcoming = "(not enabled in the folder)", "-"
        else:
            schedule, next_run = rule.schedule.describe(), next_run_at(rule, last, now, seen)
            upcoming = "due now" if next_run <= now else _utc(next_run)
        ran = run if run and last else None  # a row may only hold a first sighting
        table.add_row(
            rule_id,
            schedule,
            _utc(last) if last else "never",
            upcoming,
            ran.status if ran else "-",
            str(ran.matched) if ran else "-",
            ran.rule_version if ran else "-",
            (ran.error or "") if ran else "",
        )
    console.print(table)


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}"


def render_status(status: StoreStatus, console: Console) -> None:
    """Print ``status`` as a few small tables."""
    console.print(f"leads: {status.leads_total}")
    stages = Table("stage", "leads", box=None, pad_edge=False)
    for stage, count in status.leads_by_stage.items():
        stages.add_row(stage, str(count))
    if status.leads_by_stage:
        console.print(stages)
    owners = Table("owner", "stage", "leads", box=None, pad_edge=False)
    for (owner, stage), count in status.leads_by_owner_stage.items():
        owners.add_row(owner or "(no owner)", stage, str(count))
    if status.leads_by_owner_stage:
        console.print(owners)
    closed = ", ".join(f"{outcome} {count}" for outcome, count in status.deals_closed.items())
    console.print(f"deals: open {status.deals_open}; closed: {closed or 'none'}")
    console.print(f"reps: active {status.reps_active}, inactive {status.reps_inactive}")
    if not status.last_imports:
        console.print("last imports: none")
        return
    imports = Table(
        "import",
        "file",
        "finished",
        "status",
        "inserted",
        "updated",
        "unchanged",
        "rejected",
        box=None,
        pad_edge=False,
    )
    for run in status.last_imports.values():
        finished = run.finished_at.strftime("%Y-%m-%d %H:%M UTC") if run.finished_at else "-"
        imports.add_row(
            run.kind,
            Path(run.file).name,
            finished,
            run.status,
            *(str(n) for n in (run.inserted, run.updated, run.unchanged, run.rejected)),
        )
    console.print(imports)
