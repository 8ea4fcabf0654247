"""SLA timers after they start: met, cancelled, or climbing their escalation ladder.

Each running timer is looked at when its next level is due (``next_escalation_at``): first
it is closed if the owner acted (an activity of a listed type after the start) or the lead
left ``mql``; a lead recycled, in nurture or disqualified meanwhile cancels it; otherwise the
level fires once and the next one is scheduled in business time after the due time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from leadflow.engine.assignment import StoredRoster, choose_rep
from leadflow.engine.business_hours import calendar_named
from leadflow.engine.due_rows import handle_due_rows
from leadflow.engine.runtime import Runtime, StopSignal
from leadflow.engine.sla_timers import level_due, new_sla_timer
from leadflow.mail.context import email_context
from leadflow.mail.enqueue import enqueue_email
from leadflow.mail.templates import TemplateCatalog
from leadflow.rule_language.actions import Assign, StartSla
from leadflow.rule_language.model import RuleSet
from leadflow.store.audit_trail import record
from leadflow.store.models import Lead, Rep, SlaTimer
from leadflow.store.stage_history import change_row
from leadflow.store.tables import ACTIVITIES, SLA_TIMERS, STAGE_CHANGES

log = structlog.get_logger("leadflow.sla")
BATCH = 200


def run_sla_escalations(
    runtime: Runtime, rule_set: RuleSet, now: datetime, *, stop: StopSignal | None = None
) -> int:
    """Handle every running timer whose next level is due; return how many were handled."""
    due = select(SlaTimer).where(
        SLA_TIMERS.c.status == "running", SLA_TIMERS.c.next_escalation_at <= now
    )
    return handle_due_rows(
        runtime.engine,
        due,
        SLA_TIMERS,
        lambda session, timer: _handle(runtime, session, rule_set, timer, now),
        batch=BATCH,
        stop=stop,
        failure_event="sla_failed",
        describe=lambda timer: {
            "sla_id": timer.id,
            "lead_id": timer.lead_id,
            "rule_id": timer.rule_id,
        },
    )


def _handle(
    runtime: Runtime, session: Session, rule_set: RuleSet, timer: SlaTimer, now: datetime
) -> None:
    lead = session.get(Lead, timer.lead_id)
    assert lead is not None
    settings = runtime.settings
    if lead.stage in settings.stages.side:
        _close(session, timer, lead, now, "cancelled", f"lead is {lead.stage}")
        return
    if timer.met_by.get("stage_change", True) and lead.stage != settings.stages.mql:
        _close(session, timer, lead, now, "met", f"lead moved to {lead.stage}")
        return
    acted = _owner_activity(session, timer, now)
    if acted is not None:
        # Acting after the due time still ends the ladder, but is not counted as meeting the
        # SLA: compliance reports read "met" as "on time".
        if acted > timer.due_at:
            _close(session, timer, lead, acted, "met_late", "the owner acted after the due time")
        else:
            _close(session, timer, lead, acted, "met", "the owner acted")
        return
    _escalate(runtime, session, rule_set, timer, lead, now)


def _owner_activity(session: Session, timer: SlaTimer, now: datetime) -> datetime | None:
    types = list(timer.met_by.get("activities", []))
    if not types or timer.owner_id is None:
        return None
    query = (
        select(ACTIVITIES.c.occurred_at)
        .where(
            ACTIVITIES.c.lead_id == timer.lead_id,
            ACTIVITIES.c.actor_id == timer.owner_id,
            ACTIVITIES.c.type.in_(types),
            ACTIVITIES.c.occurred_at >= timer.started_at,
            ACTIVITIES.c.occurred_at <= now,
        )
        .order_by(ACTIVITIES.c.occurred_at)
        .limit(1)
    )
    found: datetime | None = session.execute(query).scalar_one_or_none()
    return found


def _close(
    session: Session, timer: SlaTimer, lead: Lead, at: datetime, status: str, reason: str
) -> None:
    _finish(timer, status, at, reason)
    _audit(session, timer, lead, at, f"sla_{status}", {"reason": reason, "level": timer.level})


def _finish(timer: SlaTimer, status: str, at: datetime, reason: str) -> None:
    """The timer stops: no more levels."""
    timer.status, timer.closed_at, timer.close_reason = status, at, reason
    timer.next_escalation_at = None


def _escalate(
    runtime: Runtime,
    session: Session,
    rule_set: RuleSet,
    timer: SlaTimer,
    lead: Lead,
    now: datetime,
) -> None:
    ladder: list[dict[str, Any]] = list(timer.ladder)
    if timer.level >= len(ladder):
        _close(session, timer, lead, now, "breached", "no escalation level left")
        return
    level = ladder[timer.level]
    number = timer.level + 1
    # When the level was due, next to when it fired: after an outage the lateness shows.
    due_at = timer.next_escalation_at
    timer.level = number
    owner = session.get(Rep, timer.owner_id) if timer.owner_id is not None else None
    # The email's `sla` is the SLA the recipient works to: after a reassignment the fresh one,
    # whose due time is ahead (the old one's had passed: "get in touch by" a time gone by).
    shown = timer
    if level.get("reassign"):
        moved = _reassign(runtime, session, rule_set, timer, lead, now)
        if moved is not None:
            owner, shown = moved
    target = owner if level.get("notify") in (None, "owner") else _manager(session, owner)
    if level.get("notify") and level.get("template"):
        catalog = runtime.templates_for(rule_set)
        _notify(runtime, catalog, session, timer, lead, level, number, target, owner, now, shown)
    _audit(
        session,
        timer,
        lead,
        now,
        "sla_escalated",
        {
            "level": number,
            "due_at": due_at,
            "fired_at": now,
            "notify": level.get("notify"),
            "to": target.email if target else None,
            "reassign": bool(level.get("reassign")),
        },
    )
    if timer.status != "running":
        return
    if number < len(ladder):
        calendar = calendar_named(runtime.settings, timer.calendar)
        timer.next_escalation_at = level_due(calendar, timer.due_at, ladder, number)
    else:
        _finish(timer, "breached", now, "escalation ladder done")


def _manager(session: Session, rep: Rep | None) -> Rep | None:
    return (
        session.get(Rep, rep.manager_id) if rep is not None and rep.manager_id is not None else None
    )


def _notify(
    runtime: Runtime,
    catalog: TemplateCatalog,
    session: Session,
    timer: SlaTimer,
    lead: Lead,
    level: dict[str, Any],
    number: int,
    target: Rep | None,
    owner: Rep | None,
    now: datetime,
    shown: SlaTimer,
) -> None:
    if target is None or not target.email:
        _audit(
            session,
            timer,
            lead,
            now,
            "email_skipped",
            {"level": number, "reason": f"no {level['notify']} to email"},
        )
        return
    context = email_context(
        runtime.settings,
        lead=lead,
        rep=target,
        owner=owner,
        manager=_manager(session, owner),
        sla=shown,
        rule_id=timer.rule_id,
    )
    enqueue_email(
        session,
        key=f"sla:{timer.id}:level{number}",
        template=str(level["template"]),
        context=context,
        to=target.email,
        category="operational",
        now=now,
        catalog=catalog,
        settings=runtime.settings,
        lead_id=lead.id,
        rule_id=timer.rule_id,
        rule_version=timer.rule_version,
    )


def _reassign(
    runtime: Runtime,
    session: Session,
    rule_set: RuleSet,
    timer: SlaTimer,
    lead: Lead,
    now: datetime,
) -> tuple[Rep, SlaTimer] | None:
    """Give the lead to the next rep of the pool that assigned it, with a fresh SLA (returned
    with the rep)."""
    rule = rule_set.rule(timer.rule_id)
    assign = next((a for a in rule.actions if isinstance(a, Assign)), None) if rule else None
    start = (
        next((a for a in rule.actions if isinstance(a, StartSla) and a.name == timer.name), None)
        if rule
        else None
    )
    if assign is None or start is None:
        _audit(
            session,
            timer,
            lead,
            now,
            "reassign_failed",
            {
                "reason": "the rule that started the SLA no longer assigns leads",
            },
        )
        return None
    choice = choose_rep(
        StoredRoster(session, runtime.settings, now),
        lead,
        assign.model_copy(update={"prefer_previous_owner": False}),
        runtime.settings,
        now,
        exclude={timer.owner_id or 0},
    )
    if choice.rep is None:
        _audit(session, timer, lead, now, "reassign_failed", {"reason": choice.how})
        return None
    old_owner = lead.owner_id
    lead.owner_id = choice.rep.id
    session.execute(
        insert(STAGE_CHANGES),
        [
            change_row(
                at=now,
                lead_id=lead.id,
                from_stage=lead.stage,
                to_stage=lead.stage,
                from_owner_id=old_owner,
                to_owner_id=choice.rep.id,
                cause="reassignment",
                rule_id=timer.rule_id,
                source=rule_set.version,
            )
        ],
    )
    _finish(timer, "reassigned", now, f"reassigned to {choice.rep.external_id}")
    fresh = new_sla_timer(
        runtime.settings,
        start,
        lead_id=lead.id or 0,
        owner_id=choice.rep.id,
        rule_id=timer.rule_id,
        rule_version=rule_set.version,
        now=now,
    )
    due = fresh.due_at
    fresh_timer = SlaTimer(**fresh.row())
    session.add(fresh_timer)
    session.flush()
    _audit(
        session,
        timer,
        lead,
        now,
        "reassigned",
        {
            "from_rep_id": old_owner,
            "to": choice.rep.external_id,
            "pool": choice.pool,
            "new_due_at": due.isoformat(),
        },
        version=rule_set.version,
    )
    return choice.rep, fresh_timer


def _audit(
    session: Session,
    timer: SlaTimer,
    lead: Lead,
    at: datetime,
    action: str,
    params: dict[str, Any],
    *,
    version: str | None = None,
) -> None:
    """One audit row about ``timer``, under the rule (and version) that started it."""
    record(
        session,
        at=at,
        source="sla",
        action=action,
        lead_id=lead.id,
        rule_id=timer.rule_id,
        rule_version=version or timer.rule_version,
        params={"sla": timer.name, **params},
    )
