"""``leadflow status``: stages, owners, deals, reps and the last import of each kind."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from leadflow.cli.console import FormatOption, OutputFormat, data_console, print_json
from leadflow.cli.context import cli_context
from leadflow.clock import SystemClock
from leadflow.errors import ProblemsError

if TYPE_CHECKING:
    from rich.console import Console

    from leadflow.engine.runtime import Runtime
    from leadflow.rule_language.model import RuleSet
    from leadflow.rule_language.schedule import Schedule
    from leadflow.service.leadership import CurrentLeader
    from leadflow.store.status import FailingNurtureStep, RuleRunStatus, StoreStatus


def show_status(ctx: typer.Context, output: FormatOption = OutputFormat.table) -> None:
    """Show how the funnel stands: stages, owners, the MQL queue, outbox, SLAs, rules, imports."""
    from leadflow.engine.runtime import Runtime
    from leadflow.service.leadership import current_leader
    from leadflow.store.status import collect_status

    context = cli_context(ctx)
    settings = context.settings
    status = collect_status(context.reading_engine, mql_stage=settings.stages.mql)
    rules = rules_view(
        Runtime.build(context.reading_engine, settings, SystemClock(), read_only=True), status
    )
    leader = current_leader(context.reading_engine)
    if output is OutputFormat.json:
        print_json({**status_document(status, rules), "leader": leader_document(leader)})
        return
    console = data_console(min_width=140)
    render_status(status, console)
    render_operations(status, console)
    render_failing_nurture(failing_nurture(status, rules), console)
    console.print(leader_line(leader), soft_wrap=True)
    render_rules(rules, console)


def leader_line(leader: CurrentLeader) -> str:
    """Which daemon evaluates the rules: the lock's holder, named by the record it wrote as it
    took the lock; or what is known when the record is not the holder's."""
    record = leader.record
    named = (
        f"host {record.host}, pid {record.pid}, since {_utc(record.since)} UTC"
        if record is not None
        else None
    )
    if leader.holder is None:
        last = f"; the last was {named}" if named else ""
        return f"leader: none, no daemon holds the store's leadership lock{last}"
    if leader.recorded_holder:
        return f"leader: {named} (it holds the store's leadership lock now)"
    last = f"the last recorded is {named}" if named else "none is recorded"
    return (
        f"leader: unknown daemon ({leader.holder} holds the store's leadership lock, "
        f"but did not record itself; {last})"
    )


def leader_document(leader: CurrentLeader) -> dict[str, Any]:
    """``status --format json``'s ``leader``: the lock's holder and the last record."""
    record = leader.record
    return {
        "lock_held": leader.holder is not None,
        "lock_holder": leader.holder,
        "recorded": None
        if record is None
        else {"host": record.host, "pid": record.pid, "since": record.since},
        "recorded_is_holder": leader.recorded_holder,
    }


FAILED_RUNS = ("failed", "firings_failed")
"""The recorded statuses of a last run that did not go through: the rule's own error, or some
of its firings (rolled back while the others went on)."""


@dataclass(frozen=True)
class RuleLine:
    """One rule as ``status`` shows it: its schedule and its last recorded run."""

    rule_id: str
    schedule: str
    last_run: datetime | None
    next_run: datetime | None
    """None when the rule is not enabled in the folder any more."""
    due_now: bool
    status: str | None
    matched: int | None
    version_run: str | None
    error: str | None
    failed_firings: int | None = None
    """How many firings of the last run failed (``status`` ``firings_failed``)."""

    @property
    def shown_status(self) -> str:
        """The status cell (:func:`~leadflow.store.status.shown_run_status`)."""
        from leadflow.store.status import shown_run_status

        return shown_run_status(self.status, self.failed_firings)


@dataclass(frozen=True)
class RulesView:
    """The rules folder as it would load now, and every rule that is enabled or has run."""

    version: str | None
    enabled: int
    problems: list[str]
    """The refusal, FILE:LINE:COL each, when the folder does not load."""
    lines: list[RuleLine]
    last_evaluated: RuleRunStatus | None = None
    """The newest recorded run: the version a daemon is running, whatever the folder holds now."""
    scoring: tuple[str, bool] | None = None
    """The folder's scoring model: (version, enabled); None without one."""
    step_templates: dict[tuple[str, int], str] = field(default_factory=dict)
    """(stream, step counted from 1) -> the step's template, in the folder's streams."""


def _kept_schedule(run: RuleRunStatus | None) -> Schedule | None:
    from leadflow.rule_language.schedule import Schedule

    if run is None or run.schedule is None:
        return None
    return Schedule.from_record(run.schedule)


def rules_view(runtime: Runtime, status: StoreStatus) -> RulesView:
    """Each rule's schedule, last run and next run, as the daemon sees them."""
    rule_set: RuleSet | None = None
    problems: list[str] = []
    try:
        rule_set = runtime.load_rules()
    except ProblemsError as exc:
        problems = [str(problem) for problem in exc.problems]
    runs = {run.rule_id: run for run in status.rule_runs}
    rules = {rule.id: rule for rule in rule_set.enabled_rules} if rule_set else {}
    now = runtime.clock.now()
    # A refused folder says nothing of which rules it enables: "(not enabled in the folder)"
    # on every rule told the reader they had all been turned off. The problems are listed
    # above the table (and in the JSON's ``problems``); a cell of the no-wrap column is short.
    absent = "(unknown: the folder is refused)" if problems else "(not enabled in the folder)"
    lines = []
    for rule_id in sorted(set(runs) | set(rules)):
        run, rule = runs.get(rule_id), rules.get(rule_id)
        last = run.last_run_at if run else None
        # As the daemon sees it: a never-run cron rule counts from its stored first sighting,
        # a failed run from the last successful start (it is due again).
        seen = run.first_seen_at if run else None
        anchor = run.last_started_at if run else None
        # While the folder is refused a daemon keeps running its last good rules: their
        # schedules, kept with their runs, still say when each runs next.
        kept = _kept_schedule(run) if problems and rule is None else None
        schedule = rule.schedule if rule else kept
        next_run = schedule.upcoming(anchor, seen or now) if schedule else None
        ran = run if run and last else None  # a row may only hold a first sighting
        if rule:
            described = rule.schedule.describe()
        elif kept:
            described = f"{kept.describe()} (as it last ran)"
        else:
            described = absent
        lines.append(
            RuleLine(
                rule_id=rule_id,
                schedule=described,
                last_run=last,
                next_run=next_run,
                due_now=next_run is not None and next_run <= now,
                status=ran.status if ran else None,
                matched=ran.matched if ran else None,
                version_run=ran.rule_version if ran else None,
                error=ran.error if ran else None,
                failed_firings=ran.failed_firings if ran else None,
            )
        )
    version = rule_set.version if rule_set else None
    enabled = len(rule_set.enabled_rules) if rule_set else 0
    recorded = [run for run in status.rule_runs if run.last_run_at is not None]
    newest = max(recorded, key=lambda run: run.last_run_at or now, default=None)
    model = rule_set.scoring if rule_set else None
    scoring = (model.version, model.enabled) if model is not None else None
    templates = {
        (stream_id, number): step.template
        for stream in (rule_set.streams.values() if rule_set else ())
        for stream_id in (stream.id, *stream.renamed_from)  # a failing step not yet moved
        for number, step in enumerate(stream.steps, start=1)
    }
    return RulesView(version, enabled, problems, lines, newest, scoring, templates)


def failing_nurture(status: StoreStatus, rules: RulesView) -> list[FailingNurtureStep]:
    """The failing nurture steps, each with its template as the rules folder names it."""
    return [
        replace(failing, template=rules.step_templates.get((failing.stream, failing.step)))
        for failing in status.failing_nurture
    ]


def status_document(status: StoreStatus, rules: RulesView) -> dict[str, Any]:
    """``status --format json``: the same facts as the tables, with stable keys."""
    return {
        "leads": {
            "total": status.leads_total,
            "by_stage": status.leads_by_stage,
            "by_owner": [
                {"owner": owner, "stage": stage, "leads": count}
                for (owner, stage), count in status.leads_by_owner_stage.items()
            ],
        },
        "deals": {"open": status.deals_open, "closed": status.deals_closed},
        "reps": {"active": status.reps_active, "inactive": status.reps_inactive},
        "mql_queue": {
            "total": status.mql_queue_total,
            "longest_waiting": [{"lead": lead, "since": since} for lead, since in status.mql_queue],
        },
        "outbox": {
            "by_status": status.outbox_by_status,
            "oldest_pending_at": status.oldest_pending_at,
            "claimed_by_gone": [
                {"host": host, "pid": pid, "messages": count, "retried_at": until}
                for host, pid, count, until in _gone_claims(status)
            ],
        },
        "sla_timers": status.slas_by_status,
        "nurture": {"failing_steps": [asdict(step) for step in failing_nurture(status, rules)]},
        "rules": {
            "folder": {
                "loaded": not rules.problems,
                "version": rules.version,
                "enabled": rules.enabled,
                "problems": rules.problems,
            },
            "last_evaluated": None
            if rules.last_evaluated is None
            else {
                "version": rules.last_evaluated.rule_version,
                "at": rules.last_evaluated.last_run_at,
            },
            "rules": [asdict(line) for line in rules.lines],
        },
        "last_imports": {kind: asdict(last) for kind, last in status.last_imports.items()},
        "scoring": {
            "model": None
            if rules.scoring is None
            else {"version": rules.scoring[0], "enabled": rules.scoring[1]},
            "last_pass": None if status.scoring is None else asdict(status.scoring),
            "last_failure": None
            if status.scoring_failure is None
            else asdict(status.scoring_failure),
        },
    }


def _gone_claims(status: StoreStatus) -> list[tuple[str, int, int, datetime]]:
    """(host, pid, messages, retried at) of each sender holding ``sending`` rows that is known
    to be gone: a dead process of this host."""
    from leadflow.outbox.claimers import claimer_gone

    gone = []
    for claim in status.outbox_claims:
        claimer = claimer_gone(claim.claimed_by)
        if claimer is not None:
            gone.append((claimer.host, claimer.pid, claim.messages, claim.lease_until))
    return gone


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
    for host, pid, count, until in _gone_claims(status):
        console.print(
            f"  {count} sending: claimed by a process that is gone (host {host}, pid {pid}): "
            f"retried at {until:%Y-%m-%d %H:%M:%S} UTC, or at once by a sender started on {host}",
            soft_wrap=True,  # one line, however long the host's name
        )
    slas = ", ".join(f"{name} {count}" for name, count in status.slas_by_status.items()) or "none"
    console.print(f"SLA timers: {slas}")
    scoring = status.scoring
    if scoring is not None:
        grades = ", ".join(f"{grade} {count}" for grade, count in scoring.leads_by_grade.items())
        console.print(
            f"scoring: last pass {_utc(scoring.last_run_at)} UTC, model {scoring.model_version}, "
            f"{scoring.changed} lead(s) changed" + (f"; grades: {grades}" if grades else "")
        )
    failure = status.scoring_failure
    if failure is not None:
        # Said until a pass succeeds: the scores stay those of the last pass that did.
        console.print(
            f"scoring FAILING: {failure.failures} pass(es) in a row, the last at "
            f"{_utc(failure.failed_at)} UTC (model {failure.model_version}): {failure.error}",
            style="bold red",
        )


def render_failing_nurture(failing: list[FailingNurtureStep], console: Console) -> None:
    """Nurture steps that keep failing, said only when there are some: their emails are not
    sent, and until now only the daemon's log said so."""
    for step in failing:
        template = f" (template {step.template})" if step.template else ""
        when = f" at {_utc(step.last_failed_at)} UTC" if step.last_failed_at else ""
        console.print(
            f"nurture step failing: {step.stream} step {step.step}{template} for "
            f"{step.enrollments} enrollment(s); last error{when}: {step.last_error}",
            style="bold red",
        )


def render_rules(rules: RulesView, console: Console) -> None:
    """The rules folder as it would load now; each rule's schedule, last run and next run."""
    from rich.table import Table

    if rules.problems:
        console.print(
            f"rules folder: REFUSED, {len(rules.problems)} problem(s); a running daemon keeps its last good rules",
            style="bold red",
        )
        for problem in rules.problems[:20]:
            console.print(f"  {problem}")
    else:
        model = ""
        if rules.scoring is not None:
            state = "enabled" if rules.scoring[1] else "disabled"
            model = f", scoring model {rules.scoring[0]} ({state})"
        console.print(
            f"rules folder: {rules.enabled} enabled rule(s){model}, version {rules.version}"
        )
    newest = rules.last_evaluated
    if newest is not None and newest.last_run_at is not None:
        console.print(
            f"last evaluated: version {newest.rule_version} at {_utc(newest.last_run_at)} UTC"
            + ("" if newest.rule_version == rules.version else " (the rules still running)")
        )
    if not rules.lines:
        console.print("rule runs: none yet")
        return
    table = Table(box=None, pad_edge=False)
    for header in ("rule", "schedule", "last run (UTC)", "next run (UTC)", "status", "matched"):
        table.add_column(header, no_wrap=True)
    for header in ("version run", "error"):  # these give way on a narrow terminal
        table.add_column(header, overflow="fold")
    for line in rules.lines:
        upcoming = "-" if line.next_run is None else _utc(line.next_run)
        table.add_row(
            line.rule_id,
            line.schedule,
            _utc(line.last_run) if line.last_run else "never",
            "due now" if line.due_now else upcoming,
            line.shown_status,
            "-" if line.matched is None else str(line.matched),
            line.version_run or "-",
            line.error or "",
            # In red as the other failures status reports (a failing scoring pass or nurture
            # step): a run whose firings failed read "ok".
            style="red" if line.status in FAILED_RUNS else None,
        )
    console.print(table)


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M}"


def render_status(status: StoreStatus, console: Console) -> None:
    """Print ``status`` as a few small tables."""
    from rich.table import Table

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
        "superseded",
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
            *(
                str(n)
                for n in (run.inserted, run.updated, run.unchanged, run.rejected, run.superseded)
            ),
        )
    console.print(imports)
