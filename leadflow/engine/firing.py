"""One rule firing on one lead or deal: its actions applied, audited, emails queued.

A firing reads from its evaluation batch (:class:`~leadflow.engine.firing_batch.FiringBatch`)
and stages its writes there; the batch writes the firings that succeeded together, in one
transaction, so a firing is applied entirely or not at all, with its audit rows and outbox
messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from leadflow.crm.updates import crm_update_row
from leadflow.engine.assignment import choose_rep
from leadflow.engine.batch_writes import EMAIL_QUEUED, QueuedAudit
from leadflow.engine.firing_batch import Enrollment, FiringBatch
from leadflow.engine.nurture import exit_reason
from leadflow.engine.runtime import Runtime
from leadflow.engine.sla_timers import NewSlaTimer, new_sla_timer
from leadflow.mail.context import email_context
from leadflow.mail.enqueue import counts_for_cap, email_row
from leadflow.rule_language.actions import (
    Action,
    AdjustScore,
    Assign,
    CloseDeal,
    Enroll,
    Notify,
    SetScore,
    SetStage,
    StartSla,
    action_name,
)
from leadflow.rule_language.fields import Subject
from leadflow.rule_language.model import Rule, RuleSet
from leadflow.store.audit_trail import audit_row, audit_value
from leadflow.store.email_addresses import is_recipient
from leadflow.store.models import Deal, Lead, Rep
from leadflow.store.stage_history import change_row

log = structlog.get_logger("leadflow.engine")


@dataclass
class Firing:
    """The context of one rule acting on one subject."""

    runtime: Runtime
    batch: FiringBatch
    rule_set: RuleSet
    rule: Rule
    now: datetime
    lead: Lead | None
    deal: Deal | None
    evidence: Mapping[str, Any]
    occasion: str
    """What makes this firing distinct from another of the same rule on the same subject."""
    entered_stage: bool = False
    """This firing moved the lead to a new stage (set by the set_stage action)."""
    sla_timers: dict[str, NewSlaTimer] = field(default_factory=dict)
    """The SLA timers of this firing by name, made once: a notify before ``start_sla`` tells
    the rep the same due time the timer gets."""
    _audited_evidence: Any = None
    _entry: dict[str, Any] | None = None
    """The ``stage_changes`` row of this firing's entry into a stage, once noted."""

    @property
    def subject_key(self) -> str:
        if self.rule.subject is Subject.DEAL and self.deal is not None:
            return f"deal:{self.deal.external_id}"
        assert self.lead is not None
        return f"lead:{self.lead.external_id}"

    def audit(self, action: str, params: Mapping[str, Any]) -> None:
        """Note an audit row; the batch writes a firing's rows together, in order."""
        self.batch.staged.audit.append(self.audit_row(action, params))

    def audit_row(self, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The firing's audit row: ``params`` converted once, into the dict the row keeps (a
        firing writes four, a batch thousands)."""
        row = audit_row(
            at=self.now,
            source="rule",
            action=action,
            lead_id=self.lead.id if self.lead is not None else None,
            deal_id=self.deal.id if self.deal is not None else None,
            rule_id=self.rule.id,
            rule_version=self.rule_set.version,
            params=params,
        )
        row["params"]["rule_digest"] = self.rule.digest  # a new dict: audit_value copies
        # The firing's rows share its evidence, converted once: the batch's write then
        # serialises it once for all of them (bulk_rows.bound_values).
        row["evidence"] = self.audited_evidence
        return row

    @property
    def audited_evidence(self) -> Any:
        """The evidence as the audit stores it, converted once for the firing's audit rows."""
        if self._audited_evidence is None:
            self._audited_evidence = audit_value(self.evidence)
        return self._audited_evidence

    def history(
        self,
        *,
        from_stage: str,
        to_stage: str,
        owners: tuple[int | None, int | None],
        lead_id: int | None = None,
        deal_id: int | None = None,
    ) -> None:
        """Note a ``stage_changes`` row (an entry into ``to_stage``, or an owner change when the
        stage stays), written with the firing's other rows.

        An owner this firing gives after its own entry into a stage (the MQL rule's
        ``set_stage: mql``, then ``assign``) is the owner on that entry, not a change of its
        own: the report's ``--by rep`` counts an MQL for the rep it went to."""
        entry = self._entry
        if (
            from_stage == to_stage
            and entry is not None
            and (entry["lead_id"], entry["deal_id"]) == (lead_id, deal_id)
        ):
            entry["to_owner_id"] = owners[1]
            return
        row = change_row(
            at=self.now,
            lead_id=lead_id,
            deal_id=deal_id,
            from_stage=from_stage,
            to_stage=to_stage,
            from_owner_id=owners[0],
            to_owner_id=owners[1],
            cause="rule",
            rule_id=self.rule.id,
            source=self.rule_set.version,
        )
        if from_stage != to_stage:
            self._entry = row
        self.batch.staged.stage_changes.append(row)

    def rep(self, rep_id: int | None) -> Rep | None:
        return self.batch.rep(rep_id)

    @property
    def retrying_wait(self) -> bool:
        """The lead was already an MQL waiting for a rep before this firing (offered again):
        what could not be done for lack of an owner was audited when it started waiting."""
        lead = self.lead
        return (
            lead is not None
            and lead.owner_id is None
            and lead.stage == self.runtime.settings.stages.mql
            and not self.entered_stage
        )

    def sla_timer(self, action: StartSla) -> NewSlaTimer:
        """The timer ``action`` starts in this firing (not yet added to the session)."""
        timer = self.sla_timers.get(action.name)
        if timer is None:
            lead = self.lead
            assert lead is not None
            timer = new_sla_timer(
                self.runtime.settings,
                action,
                lead_id=lead.id or 0,
                owner_id=lead.owner_id,
                rule_id=self.rule.id,
                rule_version=self.rule_set.version,
                now=self.now,
                stage_entered_at=lead.stage_entered_at,
            )
            self.sla_timers[action.name] = timer
        return timer

    def planned_sla(self) -> NewSlaTimer | None:
        """The SLA this firing starts (its rule's first ``start_sla``), if it can start one."""
        start = next((a for a in self.rule.actions if isinstance(a, StartSla)), None)
        if start is None or self.lead is None or self.lead.owner_id is None:
            return None
        return self.sla_timer(start)

    @property
    def owner(self) -> Rep | None:
        owner_id = self.deal.owner_id if self.deal is not None else None
        if owner_id is None and self.lead is not None:
            owner_id = self.lead.owner_id
        return self.rep(owner_id)


def fire(firing: Firing) -> None:
    """Apply every action of the rule, in order, and remember the firing for re-entry."""
    subject_id = firing.deal.id if firing.rule.subject is Subject.DEAL and firing.deal else None
    if subject_id is None and firing.lead is not None:
        subject_id = firing.lead.id
    if firing.rule.reentry.mode != "every_time":  # only once/once_per ever read them back
        firing.batch.staged.rule_firings.append(
            {
                "rule_id": firing.rule.id,
                "rule_version": firing.rule_set.version,
                "subject_kind": firing.rule.subject.value,
                "subject_id": subject_id,
                "fired_at": firing.now,
            }
        )
    for index, action in enumerate(firing.rule.actions):
        _APPLY[type(action)](firing, action, index)


def _queue_crm_update(firing: Firing, event: str, change: Mapping[str, Any]) -> None:
    row = crm_update_row(firing, event, change, firing.batch.rep_external_id)
    if row is not None:
        firing.batch.staged.outbox.append(row)


def _set_stage(firing: Firing, action: Action, _index: int) -> None:
    assert isinstance(action, SetStage)
    lead = firing.lead
    if lead is None:
        deal = firing.deal
        skipped = (
            "the deal has no lead"
            if deal is None or deal.lead_id is None
            else "its lead entered its current stage after the rule's instant"
        )
        row = firing.audit_row("set_stage_skipped", {"reason": skipped})
        if deal is not None and deal.lead_id is not None:
            # The row is about that lead: `leadflow audit --lead` finds it.
            row["lead_id"] = deal.lead_id
        firing.batch.staged.audit.append(row)
        return
    if lead.stage == action.stage:
        return
    settings = firing.runtime.settings
    before = lead.stage
    lead.stage = action.stage
    lead.stage_entered_at = firing.now
    firing.entered_stage = True
    params: dict[str, Any] = {"from": before, "to": action.stage}
    owner_before = lead.owner_id
    if lead.owner_id is not None and releases_owner(action.stage, settings.stages):
        # A lead going back to marketing leaves its rep; the rep is remembered so that the
        # lead can return to them if it qualifies again (prefer_previous_owner).
        params["released_owner"] = _rep_ref(firing.rep(lead.owner_id))
        lead.previous_owner_id = lead.owner_id
        lead.owner_id = None
    firing.audit("stage_changed", params)
    firing.history(
        lead_id=lead.id,
        from_stage=before,
        to_stage=action.stage,
        owners=(owner_before, lead.owner_id),
    )
    _queue_crm_update(firing, "lead.stage_changed", params)
    reason = exit_reason(lead, settings.stages)
    if reason is not None:
        firing.batch.staged.left_nurture.append((lead.id or 0, reason))
        firing.batch.stage_enrollments(lead.id or 0, [])


def releases_owner(stage: str, stages: Any) -> bool:
    """Whether entering ``stage`` hands the lead back to marketing (before MQL, or a side stage)."""
    if stage in stages.side:
        return True
    order = list(stages.progression)
    return stage in order and stages.mql in order and order.index(stage) < order.index(stages.mql)


def _score(firing: Firing, action: Action, _index: int) -> None:
    lead = firing.lead
    if lead is None:
        return
    before = lead.score
    lead.score = before + action.by if isinstance(action, AdjustScore) else _target(action)
    if lead.score != before:
        # Kept apart from fit and engagement, so a scoring model's next pass keeps it.
        lead.score_adjustment = (lead.score_adjustment or 0) + lead.score - before
        firing.audit("score_changed", {"from": before, "to": lead.score})
        firing.batch.staged.score_changes.append(
            {
                "lead_id": lead.id,
                "at": firing.now,
                "old_score": before,
                "new_score": lead.score,
                "old_fit": lead.score_fit,
                "new_fit": lead.score_fit,
                "old_engagement": lead.score_engagement,
                "new_engagement": lead.score_engagement,
                "cause": "rule",
                "detail": f"rule {firing.rule.id}: {'adjust_score' if isinstance(action, AdjustScore) else 'set_score'}",
                "model_version": None,
            }
        )


def _target(action: Action) -> int:
    assert isinstance(action, SetScore)
    return action.to


def _assign(firing: Firing, action: Action, _index: int) -> None:
    assert isinstance(action, Assign)
    lead = firing.lead
    assert lead is not None
    choice = choose_rep(firing.batch.roster, lead, action, firing.runtime.settings, firing.now)
    if choice.rep is None:
        # A waiting MQL is offered again at every evaluation; only its first wait (the
        # evaluation that made it an MQL) is audited and logged, not every retry.
        if not firing.retrying_wait:
            log.warning(
                "lead_waiting_for_rep",
                rule_id=firing.rule.id,
                lead_id=lead.external_id,
                pool=choice.pool,
                reason=choice.how,
            )
            firing.audit("assignment_queued", {"pool": choice.pool, "reason": choice.how})
        return
    previous = lead.owner_id
    lead.owner_id = choice.rep.id
    if previous != lead.owner_id:
        firing.history(
            lead_id=lead.id,
            from_stage=lead.stage,
            to_stage=lead.stage,
            owners=(previous, lead.owner_id),
        )
    firing.audit(
        "assigned",
        {
            "rep": _rep_ref(choice.rep),
            "pool": choice.pool,
            "how": choice.how,
            "previous_owner": _rep_ref(firing.rep(previous)),
        },
    )
    _queue_crm_update(firing, "lead.owner_changed", {"to": choice.rep.external_id})


def _notify(firing: Firing, action: Action, index: int) -> None:
    assert isinstance(action, Notify)
    owner = firing.owner
    manager = firing.rep(owner.manager_id) if owner is not None else None
    rep: Rep | None = None
    if action.to == "owner":
        rep = owner
    elif action.to == "manager":
        rep = manager
    elif action.to.startswith("rep:"):
        rep = firing.batch.rep_named(action.to.removeprefix("rep:"))
    lead = firing.lead
    to = (
        (lead.email if lead is not None else None)
        if action.to == "lead"
        else (rep.email if rep else None)
    )
    if not is_recipient(to):
        if firing.retrying_wait:
            return
        firing.audit(
            "email_skipped",
            {
                "to": action.to,
                "template": action.template,
                "reason": f"no {action.to} with an email address",
            },
        )
        return
    assert to is not None  # is_email_address said so
    context = email_context(
        firing.runtime.settings,
        lead=lead,
        rep=rep,
        owner=owner,
        manager=manager,
        deal=firing.deal,
        rule_id=firing.rule.id,
        rule_description=firing.rule.description,
        sla=firing.planned_sla(),
    )
    queue_email(
        firing,
        key=f"notify{index}:{action.to}:{action.template}",
        template=action.template,
        context=context,
        to=to,
        marketing=action.to == "lead",
    )


def queue_email(
    firing: Firing, *, key: str, template: str, context: Mapping[str, Any], to: str, marketing: bool
) -> None:
    """Queue one email with the firing's writes, keyed so a re-run never sends it twice."""
    lead = firing.lead
    batch = firing.batch
    full_key = f"rule:{firing.rule.id}/{firing.subject_key}/{firing.occasion}/{key}"
    row = email_row(
        key=full_key,
        template=template,
        context=context,
        to=to,
        category="marketing" if marketing else "operational",
        now=firing.now,
        catalog=firing.runtime.templates_for(firing.rule_set),
        settings=firing.runtime.settings,
        lead=lead,
        recent_marketing=lambda: batch.recent_marketing(lead.id or 0) if lead is not None else 0,
        lead_id=lead.id if lead is not None else None,
        deal_id=firing.deal.id if firing.deal is not None else None,
        rule_id=firing.rule.id,
        rule_version=firing.rule_set.version,
        recipient_timezone=lead.timezone if lead is not None and marketing else None,
    )
    batch.staged.outbox.append(row)
    if lead is not None and counts_for_cap(row):
        batch.count_marketing(lead.id or 0)
    # What became of the row (its id, new or there before) is known once the batch writes it.
    params = {"to": to, "template": template, "outbox_id": None, "status": None, "reason": None}
    batch.staged.audit.append(
        QueuedAudit(
            firing.audit_row("email_queued", {**params, "new": None}), full_key, EMAIL_QUEUED
        )
    )


def _start_sla(firing: Firing, action: Action, _index: int) -> None:
    assert isinstance(action, StartSla)
    lead = firing.lead
    assert lead is not None
    if lead.owner_id is None:
        if firing.retrying_wait:
            return
        firing.audit("sla_not_started", {"sla": action.name, "reason": "the lead has no owner"})
        return
    firing.batch.staged.cancelled_slas.append((lead.id or 0, action.name, "restarted"))
    timer = firing.sla_timer(action)
    timer.owner_id = lead.owner_id
    firing.batch.staged.sla_timers.append(timer.row())
    params: dict[str, Any] = {
        "sla": action.name,
        "due_at": timer.due_at,
        "calendar": action.calendar,
        "within": action.within,
    }
    if timer.started_at != firing.now:
        params["started_at"] = timer.started_at
    firing.audit("sla_started", params)


def _enroll(firing: Firing, action: Action, _index: int) -> None:
    assert isinstance(action, Enroll)
    lead = firing.lead
    if lead is None:
        return
    stream = firing.rule_set.streams[action.stream]
    active = firing.batch.active_enrollments(lead.id or 0)
    if any(firing.rule_set.stream_for(enrollment.stream) is stream for enrollment in active):
        return
    if not stream.allow_parallel:
        reason = f"moved to stream {stream.id}"
        firing.batch.staged.moved_enrollments += [(enrollment.id, reason) for enrollment in active]
        active = []
    first_step = firing.now + (stream.steps[0].after if stream.steps else timedelta(0))
    firing.batch.staged.enrollments.append(
        {
            "lead_id": lead.id,
            "stream": stream.id,
            "rule_id": firing.rule.id,
            "enrolled_at": firing.now,
            "next_step": 0,
            "next_step_at": first_step,
            "status": "active",
        }
    )
    # Enrolled twice in one batch is not possible: a rule fires once per lead per batch.
    firing.batch.stage_enrollments(lead.id or 0, [*active, Enrollment(0, stream.id)])
    firing.audit("enrolled", {"stream": stream.id, "first_step_at": first_step})


def _close_deal(firing: Firing, action: Action, _index: int) -> None:
    assert isinstance(action, CloseDeal)
    deal = firing.deal
    assert deal is not None
    firing.history(
        deal_id=deal.id,
        from_stage=deal.outcome or deal.stage,
        to_stage=action.outcome,
        owners=(deal.owner_id, deal.owner_id),
    )
    deal.outcome = action.outcome
    deal.closed_at = firing.now
    deal.recycle_reason = action.reason
    deal.updated_at = firing.now
    firing.audit(f"deal_{action.outcome}", {"reason": action.reason, "stage": deal.stage})
    _queue_crm_update(firing, f"deal.{action.outcome}", {"reason": action.reason})


def _rep_ref(rep: Rep | None) -> dict[str, Any] | None:
    return None if rep is None else {"external_id": rep.external_id, "name": rep.name}


_APPLY = {
    SetStage: _set_stage,
    AdjustScore: _score,
    SetScore: _score,
    Assign: _assign,
    Notify: _notify,
    StartSla: _start_sla,
    Enroll: _enroll,
    CloseDeal: _close_deal,
}


def describe_action(action: Action) -> str:
    """A short human line for a planned action (dry runs and plans)."""
    name = action_name(action)
    # As the rule file spells them (within=4h, from=...), not timedelta(seconds=14400).
    options = audit_value(action.model_dump(exclude_defaults=True, by_alias=True))
    shown = ", ".join(f"{key}={value}" for key, value in options.items())
    return f"{name}({shown})"
