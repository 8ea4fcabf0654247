"""Nurture streams after enrollment: each due step is emailed through the outbox.

Before a step is sent the lead is checked: it leaves the stream when it became an MQL (or
went further), was disqualified, unsubscribed, asked not to be emailed or bounced hard.
Every send is keyed by lead, stream, enrollment and step, so a step is never emailed twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from leadflow.collector_pause import collector_paused
from leadflow.engine.batch_writes import NURTURE_EMAIL, BatchWrites, QueuedAudit, write_batch
from leadflow.engine.due_rows import due_pages
from leadflow.engine.plain_rows import leads_by_id
from leadflow.engine.runtime import Runtime, StopSignal
from leadflow.engine.stream_leavers import STREAM_GONE, STREAM_SHORTENED
from leadflow.logs import log_failure
from leadflow.mail.context import email_context
from leadflow.mail.enqueue import counts_for_cap, email_row, recent_marketing
from leadflow.outbox.store import SUPPRESSED
from leadflow.rule_language.model import RuleSet
from leadflow.settings import StageSettings
from leadflow.store.audit_trail import audit_row
from leadflow.store.email_addresses import is_recipient
from leadflow.store.models import Lead, NurtureEnrollment
from leadflow.store.tables import NURTURE

log = structlog.get_logger("leadflow.nurture")
BATCH = 2000
NO_ADDRESS = "no email address"
"""Why a step of a lead without a (valid) email address queues nothing."""
RETRY_FIRST = timedelta(minutes=1)
RETRY_MOST = timedelta(hours=1)


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


def run_nurture_steps(
    runtime: Runtime, rule_set: RuleSet, now: datetime, *, stop: StopSignal | None = None
) -> int:
    """Send every due step of every active enrollment; return how many were handled.

    Due enrollments are taken in id order, a batch per transaction: their leads and the
    leads' recent marketing email are read once per batch, each step is decided in Python,
    and the batch's emails, enrollment changes and audit rows are written together.
    """
    due = select(NurtureEnrollment).where(
        NURTURE.c.status == "active", NURTURE.c.next_step_at <= now
    )
    pages = due_pages(runtime.engine, due, NURTURE, batch=BATCH, stop=stop)
    handled = 0
    for session, page in pages:
        with collector_paused():
            handled += _steps(runtime, session, rule_set, page, now)
    return handled


def _steps(
    runtime: Runtime,
    session: Session,
    rule_set: RuleSet,
    enrollments: list[NurtureEnrollment],
    now: datetime,
) -> int:
    """Handle one batch of due enrollments; return how many succeeded."""
    lead_ids = {enrollment.lead_id for enrollment in enrollments}
    leads = {lead.id: lead for lead in leads_by_id(session, lead_ids)}  # plain rows
    session.expunge_all()  # from here on only the batch's writes reach the store
    recent = recent_marketing(session, lead_ids, now, runtime.settings)
    items: list[tuple[str, BatchWrites]] = []
    failed = 0
    for enrollment in enrollments:
        writes = BatchWrites()
        label = f"enrollment {enrollment.id} (lead {enrollment.lead_id})"
        try:
            queued = _step(
                runtime, rule_set, enrollment, leads[enrollment.lead_id], now, recent, writes
            )
        except Exception as exc:  # one step's failure is kept and logged; the others go on
            log_failure(
                log,
                "nurture_step_failed",
                exc,
                enrollment_id=enrollment.id,
                lead_id=enrollment.lead_id,
            )
            items.append((label, _failed(rule_set, enrollment, now, exc)))
            failed += 1
            continue
        if queued:
            recent[enrollment.lead_id] = recent.get(enrollment.lead_id, 0) + 1
        items.append((label, writes))

    def refused(label: str, exc: Exception) -> None:
        log_failure(log, "nurture_step_failed", exc, enrollment=label)

    return len(items) - failed - write_batch(session, items, now, refused)


def retry_delay(failures: int) -> timedelta:
    """How long a step that failed ``failures`` times in a row waits before the next attempt:
    1 minute, doubling, at most an hour. A template fixed by a reload is used within the hour;
    a broken one costs an attempt an hour, not a log line and a render every minute."""
    doubled: timedelta = RETRY_FIRST * 2 ** min(failures - 1, 10)
    return min(doubled, RETRY_MOST)


def _failed(
    rule_set: RuleSet, enrollment: NurtureEnrollment, now: datetime, exc: Exception
) -> BatchWrites:
    """What a failed step writes: the enrollment counts the attempt, keeps the error for
    ``leadflow status`` and waits (:func:`retry_delay`); the lead's audit hears of the error
    when it is new for this enrollment (not once per attempt)."""
    failures = enrollment.failures + 1
    error = str(exc).strip() or type(exc).__name__
    delay = retry_delay(failures)
    writes = BatchWrites()
    writes.enrollment_changes[enrollment.id or 0] = {
        "failures": failures,
        "last_error": error,
        "last_failed_at": now,
        "next_step_at": now + delay,
    }
    if error != enrollment.last_error:
        stream = rule_set.stream_for(enrollment.stream)
        steps = stream.steps if stream else ()
        template = (
            steps[enrollment.next_step].template if enrollment.next_step < len(steps) else None
        )
        writes.audit.append(
            audit_row(
                at=now,
                source="nurture",
                action="nurture_step_failed",
                lead_id=enrollment.lead_id,
                rule_id=enrollment.rule_id,
                rule_version=rule_set.version,
                params={
                    "stream": stream.id if stream else enrollment.stream,
                    "step": enrollment.next_step + 1,
                    "template": template,
                    "error": error,
                    "retry_in": delay,
                },
            )
        )
    return writes


def _step(
    runtime: Runtime,
    rule_set: RuleSet,
    enrollment: NurtureEnrollment,
    lead: Lead,
    now: datetime,
    recent: dict[int, int],
    writes: BatchWrites,
) -> bool:
    """Stage the enrollment's due step in ``writes``; return whether a marketing email counted
    against the frequency cap was queued."""
    stream = rule_set.stream_for(enrollment.stream)
    changes: dict[str, Any] = writes.enrollment_changes.setdefault(enrollment.id or 0, {})
    if stream is not None and stream.id != enrollment.stream:
        changes["stream"] = stream.id  # renamed_from: it goes on under the stream's new id
    reason = exit_reason(lead, runtime.settings.stages) or (None if stream else STREAM_GONE)
    if reason is not None or stream is None:
        _end(rule_set, enrollment, lead, now, "exited", reason or "", writes)
        return False
    if enrollment.next_step >= len(stream.steps):  # the stream was shortened since
        _end(rule_set, enrollment, lead, now, "completed", STREAM_SHORTENED, writes)
        return False
    step = stream.steps[enrollment.next_step]
    audit = audit_row(
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
            "email": NO_ADDRESS,
        },
    )
    queued = False
    skipped: str | None = NO_ADDRESS
    if is_recipient(lead.email):
        assert lead.email is not None
        key = f"nurture:{lead.external_id}:{stream.id}:{enrollment.id}:step{enrollment.next_step}"
        row = email_row(
            key=key,
            template=step.template,
            context=email_context(runtime.settings, lead=lead, rule_id=enrollment.rule_id),
            to=lead.email,
            category="marketing",
            now=now,
            catalog=runtime.templates_for(rule_set),
            settings=runtime.settings,
            lead=lead,
            recent_marketing=lambda: recent.get(lead.id or 0, 0),
            lead_id=lead.id,
            rule_id=enrollment.rule_id,
            rule_version=rule_set.version,
            recipient_timezone=lead.timezone,
        )
        writes.outbox.append(row)
        skipped = suppressed_because(row)
        if skipped is not None:
            audit["params"]["skipped"] = skipped
        writes.audit.append(QueuedAudit(audit, key, NURTURE_EMAIL))
        queued = counts_for_cap(row)
    else:
        audit["params"]["skipped"] = skipped
        writes.audit.append(audit)
    next_step = enrollment.next_step + 1
    changes["next_step"] = next_step
    if enrollment.failures:  # the step went through at last: it is no longer failing
        changes.update(failures=0, last_error=None, last_failed_at=None)
    so_far = dict(enrollment.steps_skipped or {})
    if skipped is not None:
        so_far[skipped] = so_far.get(skipped, 0) + 1
        changes["steps_skipped"] = so_far
    if next_step >= len(stream.steps):
        _end(rule_set, enrollment, lead, now, "completed", completion_reason(so_far), writes)
    else:
        changes["next_step_at"] = now + stream.steps[next_step].after
    return queued


def suppressed_because(row: Mapping[str, Any]) -> str | None:
    """Why a queued step's email will not go out (``frequency cap``), or None when it will."""
    if row["status"] != SUPPRESSED:
        return None
    reason = str(row.get("status_reason") or "suppressed")
    return reason.split(":", 1)[0].replace("_", " ")  # the kind, without the lead's numbers


def completion_reason(skipped: Mapping[str, int]) -> str:
    """``all steps sent``, or, when some were gone through without an email, ``all steps done
    (3 skipped: no email address)``: a stream no email of went out was not "sent"."""
    if not skipped:
        return "all steps sent"
    total = sum(skipped.values())
    why = ", ".join(
        f"{reason}" if len(skipped) == 1 else f"{count} {reason}"
        for reason, count in sorted(skipped.items())
    )
    return f"all steps done ({total} skipped: {why})"


def _end(
    rule_set: RuleSet,
    enrollment: NurtureEnrollment,
    lead: Lead,
    now: datetime,
    status: str,
    reason: str,
    writes: BatchWrites,
) -> None:
    changes = writes.enrollment_changes.setdefault(enrollment.id or 0, {})
    changes.update(status=status, exit_reason=reason, exited_at=now, next_step_at=None)
    writes.audit.append(
        audit_row(
            at=now,
            source="nurture",
            action=f"nurture_{status}",
            lead_id=lead.id,
            rule_id=enrollment.rule_id,
            rule_version=rule_set.version,
            params={"stream": changes.get("stream", enrollment.stream), "reason": reason},
        )
    )
