"""The Rules page: every rule of the running set with its schedule and last run, the reload's
outcome (a refused set's FILE:LINE:COL lines) and the scoring model's last pass.

The rules come from the daemon's snapshot, the runs from ``rule_runs`` (one row a rule, read
by primary key), the next run from the same function the scheduler uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, func, select

from leadflow.engine.rule_runs import next_run_at
from leadflow.rule_language.actions import action_name
from leadflow.rule_language.model import RuleSet
from leadflow.store.status import last_run_of, shown_run_status
from leadflow.store.tables import AUDIT, RULE_RUNS, SCORING_RUNS


@dataclass(frozen=True)
class RuleLine:
    id: str
    description: str
    enabled: bool
    subject: str
    location: str
    schedule: str
    reentry: str
    actions: tuple[str, ...]
    last_run_at: datetime | None
    """None: never ran (the page says ``never``, as ``leadflow status`` does)."""
    last_status: str | None
    """None: never ran (``-``, as ``leadflow status``; it said ``never`` here)."""
    shown_status: str
    """``ok``, ``failed``, ``3 firings failed`` or ``-``, as ``leadflow status`` says it."""
    matched: int | None
    """None: never ran (``-``, as ``leadflow status``; it said ``0``, as if a run had matched
    no one)."""
    error: str | None
    ran_version: str | None
    next_run_at: datetime | None
    last_actions: tuple[tuple[str, int], ...] = ()
    """What the last run did: audit rows per action since it started."""


@dataclass(frozen=True)
class ScoringLine:
    location: str
    enabled: bool
    version: str
    last_run_at: datetime | None
    changed: int | None


@dataclass(frozen=True)
class RulesView:
    version: str | None
    files: tuple[str, ...]
    rules: tuple[RuleLine, ...]
    scoring: ScoringLine | None


def rules_view(engine: Engine, rule_set: RuleSet | None, now: datetime) -> RulesView:
    """Each rule of ``rule_set`` in file order with its ``rule_runs`` row and next run."""
    if rule_set is None:
        return RulesView(None, (), (), None)
    ids = [rule.id for rule in rule_set.rules]
    with engine.connect() as connection:
        runs = {
            row.rule_id: row
            for row in connection.execute(select(RULE_RUNS).where(RULE_RUNS.c.rule_id.in_(ids)))
        }
        scoring = _scoring_line(connection, rule_set)
        done = {
            rule_id: _actions_since(connection, rule_id, run.last_started_at)
            for rule_id, run in runs.items()
            if run.last_started_at is not None
        }
    lines = []
    for rule in rule_set.rules:
        run = runs.get(rule.id)
        last = last_run_of(run.last_finished_at, run.last_started_at) if run is not None else None
        anchor = run.last_started_at if run is not None else None
        first_seen = run.first_seen_at if run is not None else None
        ran = run if last is not None else None  # a row may only hold a first sighting
        lines.append(
            RuleLine(
                id=rule.id,
                description=rule.description,
                enabled=rule.enabled,
                subject=str(rule.subject.value),
                location=str(rule.location),
                schedule=rule.schedule.describe(),
                reentry=rule.reentry.describe(),
                actions=tuple(action_name(action) for action in rule.actions),
                last_run_at=last,
                last_status=ran.last_status if ran is not None else None,
                shown_status=shown_run_status(
                    ran.last_status if ran is not None else None,
                    ran.failed_firings if ran is not None else None,
                ),
                matched=ran.matched if ran is not None else None,
                error=run.last_error if run is not None else None,
                ran_version=run.rule_version if run is not None else None,
                next_run_at=next_run_at(rule, anchor, now, first_seen) if rule.enabled else None,
                last_actions=done.get(rule.id, ()),
            )
        )
    return RulesView(rule_set.version, rule_set.files, tuple(lines), scoring)


def _actions_since(
    connection: Connection, rule_id: str, since: datetime
) -> tuple[tuple[str, int], ...]:
    """Audit rows per action of ``rule_id`` from ``since`` on, by ``ix_audit_rule_at``: only
    the last run's rows are counted, however long the rule's history."""
    query = (
        select(AUDIT.c.action, func.count())
        .where(AUDIT.c.rule_id == rule_id, AUDIT.c.at >= since)
        .group_by(AUDIT.c.action)
        .order_by(AUDIT.c.action)
    )
    return tuple((str(action), int(count)) for action, count in connection.execute(query))


def _scoring_line(connection: Connection, rule_set: RuleSet) -> ScoringLine | None:
    model = rule_set.scoring
    if model is None:
        return None
    run = connection.execute(
        select(SCORING_RUNS).order_by(SCORING_RUNS.c.last_run_at.desc()).limit(1)
    ).first()
    return ScoringLine(
        location=str(model.location),
        enabled=bool(model.enabled),
        version=str(model.version),
        last_run_at=run.last_run_at if run is not None else None,
        changed=run.changed if run is not None else None,
    )
