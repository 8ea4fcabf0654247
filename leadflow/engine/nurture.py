"""Nurture streams after enrollment: each due step is emailed through the outbox.

Before a step is sent the lead is checked: it leaves the stream when it became an MQL (or
went further), was disqualified, unsubscribed, asked not to be emailed or bounced hard.
Every send is keyed by lead, stream, enrollment and step, so a step is never emailed twice.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from leadflow.engine.audit_trail import record
from leadflow.engine.due_rows import handle_due_rows
from leadflow.engine.runtime import Runtime, StopSignal
from leadflow.mail.context import email_context
from leadflow.mail.enqueue import cancel_pending_marketing, enqueue_email, is_email_address
from leadflow.rule_language.model import RuleSet
from leadflow.settings import StageSettings
from leadflow.store.models import Lead, NurtureEnrollment
from leadflow.store.tables import NURTURE

log = structlog.get_logger("leadflow.nurture")
BATCH = 500


def exit_reason(lead: Lead, stages: StageSettings) -> str | None:
    """Why the lead must leave nurture now, or ``None`` if it stays."""
    order = list(stages.progression)
    if (
        lead.stage in order
        and stages.mql in order
        and order.index(lead.stage) >= order.index(stages.mql)
    ):
        return f"became {lead.stage}"
    if lead.stage == "disqualified":
        return "disqualified"
    if lead.unsubscribed:
        return "unsubscribed"
    if lead.do_not_email:
        return "do not email"
    if lead.hard_bounced:
        return "hard bounce"
    return None


def leave_nurture(session: Session, lead_ids: Collection[int], reason: str, now: datetime) -> None:
    """End the leads' active enrollments and suppress their marketing email not yet sent."""
    ids = list(lead_ids)
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        chunk = ids[start : start + _IDS_PER_STATEMENT]
        session.execute(
            update(NURTURE)
            .where(NURTURE.c.lead_id.in_(chunk), NURTURE.c.status == "active")
            .values(status="exited", exit_reason=reason, exited_at=now, next_step_at=None)
        )
    cancel_pending_marketing(session, ids, reason, now)


_IDS_PER_STATEMENT = 1000


def run_nurture_steps(
    runtime: Runtime, rule_set: RuleSet, now: datetime, *, stop: StopSignal | None = None
) -> int:
    """Send every due step of every active enrollment; return how many were handled."""
    due = select(NurtureEnrollment).where(
        NURTURE.c.status == "active", NURTURE.c.next_step_at <= now
    )
    return handle_due_rows(
        runtime.engine,
        due,
        NURTURE,
        lambda session, enrollment: _step(runtime, session, rule_set, enrollment, now),
        batch=BATCH,
        stop=stop,
        failure_event="nurture_step_failed",
        describe=lambda enrollment: {"enrollment_id": enrollment.id, "lead_id": enrollment.lead_id},
    )


def _step(
    runtime: Runtime,
    session: Session,
    rule_set: RuleSet,
    enrollment: NurtureEnrollment,
    now: datetime,
) -> None:
    lead = session.get(Lead, enrollment.lead_id)
    assert lead is not None
    stream = rule_set.streams.get(enrollment.stream)
    reason = exit_reason(lead, runtime.settings.stages) or (
        None if stream else "stream no longer defined"
    )
    if reason is not None or stream is None:
        _end(session, enrollment, lead, now, "exited", reason or "")
        return
    if enrollment.next_step >= len(stream.steps):  # the stream was shortened since
        _end(session, enrollment, lead, now, "completed", "stream shortened")
        return
    step = stream.steps[enrollment.next_step]
    emailed = "no email address"
    if is_email_address(lead.email):
        assert lead.email is not None
        emailed = enqueue_email(
            session,
            key=f"nurture:{lead.external_id}:{stream.id}:{enrollment.id}:step{enrollment.next_step}",
            template=step.template,
            context=email_context(runtime.settings, lead=lead, rule_id=enrollment.rule_id),
            to=lead.email,
            category="marketing",
            now=now,
            catalog=runtime.templates_for(rule_set),
            settings=runtime.settings,
            lead_id=lead.id,
            rule_id=enrollment.rule_id,
            rule_version=rule_set.version,
            recipient_timezone=lead.timezone,
        ).status
    record(
        session,
        at=now,
        source="nurture",
        action="nurture_step",
        lead_id=lead.id,
        rule_id=enrollment.rule_id,
        rule_version=rule_set.version,
        params={
            "stream": stream.id,
            "step": enrollment.next_step + 1,
            "template": step.template,
            "email": emailed,
        },
    )
    enrollment.next_step += 1
    if enrollment.next_step >= len(stream.steps):
        _end(session, enrollment, lead, now, "completed", "all steps sent")
    else:
        enrollment.next_step_at = now + stream.steps[enrollment.next_step].after


def _end(
    session: Session,
    enrollment: NurtureEnrollment,
    lead: Lead,
    now: datetime,
    status: str,
    reason: str,
) -> None:
    enrollment.status, enrollment.exit_reason, enrollment.exited_at, enrollment.next_step_at = (
        status,
        reason,
        now,
        None,
    )
    record(
        session,
        at=now,
        source="nurture",
        action=f"nurture_{status}",
        lead_id=lead.id,
        rule_id=enrollment.rule_id,
        params={"stream": enrollment.stream, "reason": reason},
    )
