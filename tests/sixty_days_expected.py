"""What the shipped rules should do to the generated funnel, worked out in plain Python.

Nothing here calls leadflow: this is the funnel's behaviour written again from docs/rules.md and
rules/*.yaml, as a sales-ops analyst would check it by hand, over the generated lists:

- each hour the MQL rule (leads in id order), then the nurture rule, then the recycling rule
  (deals in id order), then the SLA timers that are due (oldest first), then the nurture steps
  that are due (oldest enrollment first);
- round robin per pool in rep id order after the pool's last pick, skipping inactive, out of
  office and full reps (capacity counts the rep's leads in ``mql``), the previous owner first
  for a returning lead;
- business hours 09:00-17:00 UTC, Monday to Friday, minus one holiday, counted hour by hour;
- the average sales cycle over deals won in the 365 days before the tick, per product with at
  least 20 deals, else overall; a deal is recycled when its latest of engaged/last activity is
  more than twice that many days ago.

Also produced here: the reps' calls (each rep calls a lead it gets after its own delay), which
the test writes into the store as the CRM would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sixty_days_data import DAY, DAYS, HOLIDAY, HOUR, POOL_OF_REGION, T0, Event, Funnel, RepSpec

SIDE = ("nurture", "recycled", "disqualified")
AT_OR_AFTER_MQL = ("mql", "sql", "opportunity", "customer")
WINDOW = timedelta(days=365)
STREAMS = {
    "welcome": (("nurture_welcome", timedelta(0)), ("nurture_case_study", 5 * DAY)),
    "welcome-back": (("nurture_case_study", 2 * DAY),),
}
LADDER = (
    (0, "owner", "sla_reminder", False),
    (2, "manager", "sla_escalated", False),
    (4, "owner", "lead_reassigned", True),
)
"""(hours after due, who is told, template, reassign), as rules/mql.yaml says."""


def is_open(at: datetime) -> bool:
    return at.weekday() < 5 and at.date() != HOLIDAY and 9 <= at.hour < 17


def add_business_hours(start: datetime, hours: int) -> datetime:
    """Count whole open hours from a whole-hour start; the answer may be a closing time."""
    assert start.minute == start.second == start.microsecond == 0
    moment = start
    while hours:
        if is_open(moment):
            hours -= 1
        moment += HOUR
    return moment


def send_time(at: datetime) -> datetime:
    """Marketing email waits for 08:00-20:00 UTC (the leads have no timezone of their own)."""
    if 8 <= at.hour < 20:
        return at
    opening = at.replace(hour=8, minute=0, second=0, microsecond=0)
    return opening if opening > at else opening + DAY


@dataclass
class Lead:
    id: int
    email: str | None
    region: str | None
    score: int
    stage: str
    entered: datetime
    owner: int | None
    previous: int | None = None
    unsubscribed: bool = False
    nurtured: bool = False
    """The nurture rule (re-entry once) fired on it."""


@dataclass
class Timer:
    id: int
    lead: int
    owner: int
    started: datetime
    due: datetime
    next_at: datetime | None
    level: int = 0
    status: str = "running"
    closed: datetime | None = None


@dataclass
class Enrollment:
    id: int
    lead: int
    stream: str
    enrolled: datetime
    next_at: datetime | None
    step: int = 0
    status: str = "active"
    reason: str | None = None
    exited: datetime | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    """Steps gone through without an email queued, by reason."""


@dataclass
class Mail:
    lead: int | None
    to: str
    what: str
    created: datetime
    category: str
    due: datetime
    status: str = "pending"


@dataclass
class Outcome:
    """The expected facts, in the shapes the test reads from the store."""

    mqls: set[tuple[int, datetime]] = field(default_factory=set)
    assigned: set[tuple[int, datetime, int, str]] = field(default_factory=set)
    queued: set[tuple[int, datetime]] = field(default_factory=set)
    escalations: set[tuple[int, int, str | None, datetime]] = field(default_factory=set)
    reassigned: set[tuple[int, datetime, int, int]] = field(default_factory=set)
    recycled: set[tuple[int, datetime, float, int]] = field(default_factory=set)
    steps: set[tuple[int, str, int, str, datetime]] = field(default_factory=set)
    calls: list[tuple[int, int, datetime, str]] = field(default_factory=list)
    """(lead, rep, when, activity type): what the reps did, written into the store as input."""
    timers: list[Timer] = field(default_factory=list)
    enrollments: list[Enrollment] = field(default_factory=list)
    mail: list[Mail] = field(default_factory=list)
    leads: dict[int, Lead] = field(default_factory=dict)


class Funnel60:
    """The whole 60 days, tick by tick."""

    def __init__(self, funnel: Funnel) -> None:
        self.reps = {rep.id: rep for rep in funnel.reps}
        self.arrivals = sorted(funnel.leads, key=lambda lead: lead.created_at)
        self.events = list(funnel.events)
        self.deals = {deal.id: dict(vars(deal)) for deal in funnel.deals}
        self.rotation: dict[str, int] = {}
        self.out = Outcome()
        self.pending_calls: list[tuple[int, int, datetime, str]] = []

    def run(self) -> Outcome:
        for hour in range(DAYS * 24):
            now = T0 + hour * HOUR
            self.apply_events(now)
            self.mql_rule(now)
            self.nurture_rule(now)
            self.recycling_rule(now)
            for timer in [t for t in self.out.timers if t.status == "running"]:
                if timer.next_at is not None and timer.next_at <= now:
                    self.sla_level(timer, now)
            for enrollment in list(self.out.enrollments):
                if (
                    enrollment.status == "active"
                    and enrollment.next_at is not None
                    and enrollment.next_at <= now
                ):
                    self.nurture_step(enrollment, now)
        return self.out

    # -- input --------------------------------------------------------------------------------

    def apply_events(self, now: datetime) -> None:
        leads = self.out.leads
        while self.arrivals and self.arrivals[0].created_at <= now:
            spec = self.arrivals.pop(0)
            leads[spec.id] = Lead(
                spec.id,
                spec.email,
                spec.region,
                spec.score,
                spec.stage,
                spec.created_at,
                spec.owner_id,
            )
        while self.events and self.events[0].at <= now:
            self.apply(self.events.pop(0))

    def apply(self, event: Event) -> None:
        if event.kind == "deal_activity":
            self.deals[event.subject_id]["last_activity_at"] = event.at
            return
        lead = self.out.leads[event.subject_id]
        if event.kind == "score":
            assert isinstance(event.value, int)
            lead.score += event.value
        elif event.kind == "unsubscribe":
            lead.unsubscribed = True
        else:
            lead.stage, lead.entered = str(event.value), event.at

    def replies(self, lead: int, rep: RepSpec, at: datetime) -> None:
        """The rep calls after its own delay; some leads also get a note or a manager's email."""
        hours = rep.reply_after[lead % len(rep.reply_after)]
        if hours is not None:
            self.out.calls.append((lead, rep.id, at + hours * HOUR - timedelta(minutes=20), "call"))
        if lead % 11 == 0:  # a note is not a touch
            self.out.calls.append((lead, rep.id, at + timedelta(minutes=30), "note"))
        if lead % 7 == 0 and rep.manager_id is not None:  # the manager's email is not the owner's
            self.out.calls.append((lead, rep.manager_id, at + timedelta(minutes=50), "email"))

    # -- assignment ---------------------------------------------------------------------------

    def open_mqls(self, rep: int) -> int:
        return sum(
            1 for lead in self.out.leads.values() if lead.stage == "mql" and lead.owner == rep
        )

    def choose(
        self, lead: Lead, now: datetime, *, previous: bool, exclude: int | None = None
    ) -> tuple[str, RepSpec | None, str]:
        pool = POOL_OF_REGION.get(lead.region or "", "inbound")
        members = [rep for rep in self.reps.values() if pool in rep.pools and rep.id != exclude]
        available = [
            rep
            for rep in sorted(members, key=lambda r: r.id)
            if rep.active
            and not (rep.out_of_office_until is not None and rep.out_of_office_until > now)
            and (rep.capacity is None or self.open_mqls(rep.id) < rep.capacity)
        ]
        if not available:
            return pool, None, "full"
        if (
            previous
            and lead.previous is not None
            and lead.previous in [rep.id for rep in available]
        ):
            return pool, self.reps[lead.previous], "previous owner"
        last = self.rotation.get(pool, 0)
        chosen = next((rep for rep in available if rep.id > last), available[0])
        self.rotation[pool] = chosen.id
        return pool, chosen, "round robin"

    def mql_rule(self, now: datetime) -> None:
        for lead in sorted(self.out.leads.values(), key=lambda lead: lead.id):
            qualifies = lead.score >= 60 and lead.stage in (
                "subscriber",
                "lead",
                "nurture",
                "recycled",
            )
            waiting = lead.stage == "mql" and lead.owner is None
            if qualifies or waiting:
                self.make_mql(lead, now)

    def make_mql(self, lead: Lead, now: datetime) -> None:
        if lead.stage != "mql":
            lead.stage, lead.entered = "mql", now
            self.out.mqls.add((lead.id, now))
            self.leave_nurture(lead, "became mql", now)
        _pool, rep, how = self.choose(lead, now, previous=True)
        if rep is None:
            if lead.entered == now:  # the wait is audited once, when the lead became an MQL
                self.out.queued.add((lead.id, now))
            return
        lead.owner = rep.id
        self.out.assigned.add((lead.id, now, rep.id, how))
        self.mail(lead.id, rep.email, "mql_assigned", now)
        self.start_sla(lead, rep, now)

    def start_sla(self, lead: Lead, rep: RepSpec, now: datetime) -> None:
        for timer in self.out.timers:
            if timer.lead == lead.id and timer.status == "running":
                timer.status, timer.closed, timer.next_at = "cancelled", now, None
        due = add_business_hours(now, 4)
        self.out.timers.append(Timer(len(self.out.timers) + 1, lead.id, rep.id, now, due, due))
        self.replies(lead.id, rep, now)

    # -- SLA ------------------------------------------------------------------------------------

    def sla_level(self, timer: Timer, now: datetime) -> None:
        lead = self.out.leads[timer.lead]
        if lead.stage in SIDE:
            timer.status, timer.closed, timer.next_at = "cancelled", now, None
            return
        if lead.stage != "mql":
            timer.status, timer.closed, timer.next_at = "met", now, None
            return
        touches = [
            at
            for lead_id, rep, at, kind in self.out.calls
            if lead_id == lead.id
            and rep == timer.owner
            and kind in ("call", "email", "meeting")
            and timer.started <= at <= now
        ]
        if touches:
            late = min(touches) > timer.due  # acted, but after the reminder was due
            timer.status, timer.closed, timer.next_at = (
                ("met_late" if late else "met"),
                min(touches),
                None,
            )
            return
        _after, who, _template, reassign = LADDER[timer.level]
        timer.level += 1
        owner: RepSpec | None = self.reps[timer.owner]
        if reassign:
            owner = self.reassign(timer, lead, now) or owner
        target = (
            owner if who == "owner" else self.reps.get(owner.manager_id or 0) if owner else None
        )
        if target is not None:
            self.mail(lead.id, target.email, f"sla-level{timer.level}", now)
        self.out.escalations.add((lead.id, timer.level, target.email if target else None, now))
        if timer.status != "running":
            return
        if timer.level < len(LADDER):
            after = LADDER[timer.level][0]
            timer.next_at = add_business_hours(timer.due, after) if after else timer.due
        else:
            timer.status, timer.closed, timer.next_at = "breached", now, None

    def reassign(self, timer: Timer, lead: Lead, now: datetime) -> RepSpec | None:
        _pool, rep, _how = self.choose(lead, now, previous=False, exclude=timer.owner)
        if rep is None:
            return None
        old, lead.owner = lead.owner, rep.id
        timer.status, timer.closed, timer.next_at = "reassigned", now, None
        due = add_business_hours(now, 4)
        self.out.timers.append(Timer(len(self.out.timers) + 1, lead.id, rep.id, now, due, due))
        self.out.reassigned.add((lead.id, now, old or 0, rep.id))
        self.replies(lead.id, rep, now)
        return rep

    # -- recycling ------------------------------------------------------------------------------

    def averages(self, now: datetime) -> tuple[dict[str, tuple[float, int]], float, int]:
        cycles: dict[str, list[float]] = {}
        for deal in self.deals.values():
            if deal["outcome"] == "won" and now - WINDOW <= deal["closed_at"] <= now:
                days = (deal["closed_at"] - deal["engaged_at"]).total_seconds() / 86400
                cycles.setdefault(deal["product"], []).append(days)
        every = [days for values in cycles.values() for days in values]
        groups = {
            product: (sum(v) / len(v), len(v)) for product, v in cycles.items() if len(v) >= 20
        }
        return groups, sum(every) / len(every), len(every)

    def recycling_rule(self, now: datetime) -> None:
        groups, overall, total = self.averages(now)
        for deal_id in sorted(self.deals):
            deal = self.deals[deal_id]
            if deal["outcome"] is not None or deal["engaged_at"] is None:
                continue
            average, count = groups.get(deal["product"], (overall, total))
            latest = max(deal["engaged_at"], deal["last_activity_at"] or deal["engaged_at"])
            if latest < now - timedelta(days=2 * average):
                self.recycle(deal, now, average, count)

    def recycle(self, deal: dict[str, object], now: datetime, average: float, count: int) -> None:
        deal["outcome"] = "recycled"
        # The audit keeps the average at full precision (issue #11 item 19); 9 places absorb
        # only the difference between the database's AVG and this sum / len.
        self.out.recycled.add((int(str(deal["id"])), now, round(average, 9), count))
        owner = self.reps[int(str(deal["owner_id"]))]
        lead = (
            self.out.leads.get(int(str(deal["lead_id"]))) if deal["lead_id"] is not None else None
        )
        self.mail(lead.id if lead else None, owner.email, "deal_recycled", now)
        if lead is None:
            return
        if lead.stage != "recycled":
            lead.stage, lead.entered = "recycled", now
            if lead.owner is not None:
                lead.previous, lead.owner = lead.owner, None
            reason = exit_reason(lead)
            if reason is not None:
                self.leave_nurture(lead, reason, now)
        lead.score -= 30
        self.enroll(lead, "welcome-back", now)

    # -- nurture --------------------------------------------------------------------------------

    def nurture_rule(self, now: datetime) -> None:
        for lead in sorted(self.out.leads.values(), key=lambda lead: lead.id):
            fresh = lead.entered > now - 30 * DAY
            if (
                not lead.nurtured
                and lead.stage in ("subscriber", "lead")
                and lead.score < 60
                and fresh
            ):
                lead.nurtured = True
                self.enroll(lead, "welcome", now)

    def enroll(self, lead: Lead, stream: str, now: datetime) -> None:
        active = [e for e in self.out.enrollments if e.lead == lead.id and e.status == "active"]
        if any(e.stream == stream for e in active):
            return
        for other in active:
            other.status, other.reason, other.exited, other.next_at = (
                "exited",
                f"moved to stream {stream}",
                now,
                None,
            )
        first = now + STREAMS[stream][0][1]
        self.out.enrollments.append(
            Enrollment(len(self.out.enrollments) + 1, lead.id, stream, now, first)
        )

    def leave_nurture(self, lead: Lead, reason: str, now: datetime) -> None:
        for enrollment in self.out.enrollments:
            if enrollment.lead == lead.id and enrollment.status == "active":
                enrollment.status, enrollment.reason, enrollment.exited, enrollment.next_at = (
                    "exited",
                    reason,
                    now,
                    None,
                )
        for mail in self.out.mail:
            if mail.lead == lead.id and mail.category == "marketing" and mail.status == "pending":
                mail.status = "suppressed"

    def nurture_step(self, enrollment: Enrollment, now: datetime) -> None:
        lead = self.out.leads[enrollment.lead]
        reason = exit_reason(lead)
        if reason is not None:
            enrollment.status, enrollment.reason, enrollment.exited, enrollment.next_at = (
                "exited",
                reason,
                now,
                None,
            )
            return
        steps = STREAMS[enrollment.stream]
        template = steps[enrollment.step][0]
        skipped: str | None = "no email address"
        if lead.email:
            status = self.marketing(lead, f"{enrollment.stream}:step{enrollment.step}", now)
            skipped = "frequency cap" if status == "suppressed" else None
        if skipped is not None:
            enrollment.skipped[skipped] = enrollment.skipped.get(skipped, 0) + 1
        enrollment.step += 1
        self.out.steps.add((lead.id, enrollment.stream, enrollment.step, template, now))
        if enrollment.step >= len(steps):
            enrollment.status, enrollment.reason, enrollment.exited, enrollment.next_at = (
                "completed",
                completion_reason(enrollment.skipped),
                now,
                None,
            )
        else:
            enrollment.next_at = now + steps[enrollment.step][1]

    # -- the outbox -----------------------------------------------------------------------------

    def mail(self, lead: int | None, to: str, what: str, now: datetime) -> None:
        self.out.mail.append(Mail(lead, to, what, now, "operational", now))

    def marketing(self, lead: Lead, what: str, now: datetime) -> str:
        assert lead.email is not None
        recent = [
            m
            for m in self.out.mail
            if m.lead == lead.id
            and m.category == "marketing"
            and m.status == "pending"
            and m.created > now - 7 * DAY
        ]
        status = "suppressed" if len(recent) >= 3 else "pending"
        self.out.mail.append(
            Mail(lead.id, lead.email, what, now, "marketing", send_time(now), status)
        )
        return status


def completion_reason(skipped: dict[str, int]) -> str:
    """``all steps sent``, or ``all steps done (2 skipped: no email address)``."""
    if not skipped:
        return "all steps sent"
    if len(skipped) == 1:
        why = next(iter(skipped))
    else:
        why = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
    return f"all steps done ({sum(skipped.values())} skipped: {why})"


def exit_reason(lead: Lead) -> str | None:
    if lead.stage in AT_OR_AFTER_MQL:
        return f"became {lead.stage}"
    if lead.stage == "disqualified":
        return "disqualified"
    return "unsubscribed" if lead.unsubscribed else None


def expected(funnel: Funnel) -> Outcome:
    return Funnel60(funnel).run()
