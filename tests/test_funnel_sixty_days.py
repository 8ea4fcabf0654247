"""Sixty days of the funnel on generated data: the four behaviours together, hour by hour.

The shipped ``rules/`` folder runs on SQLite and PostgreSQL against generated reps (three
pools, capacities, an inactive and an out-of-office rep, managers), 300 leads whose scores rise
on generated days, 160 closed deals over the year before and 44 open ones, CRM stage changes,
unsubscribes and the reps' own calls. The clock moves one hour at a time (the shortest ``every``
that matters: recycling runs hourly; MQL and nurture are due at every tick); each tick applies
what the CRM reported, then one ``run_tick`` (the due rules, SLA escalations, nurture steps),
as ``leadflow run --once`` does. No sender runs, so marketing email still pending when a lead
becomes an MQL is suppressed, as it is in production for mail not yet sent.

The expected facts come from ``sixty_days_expected``, a plain-Python re-statement of the rules
over the generated lists; every fact is compared exactly with the store's audit, outbox,
sla_timers, nurture_enrollments, deals and leads tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sixty_days_data import DAYS, HOLIDAY, HOUR, T0, Event, Funnel, LeadSpec, generate
from sixty_days_expected import Outcome, expected
from sqlalchemy import Connection, Engine, insert, select, update

from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.sla import run_sla_escalations
from leadflow.engine.tick import run_due_rules, run_tick
from leadflow.store.tables import ACTIVITIES, AUDIT, DEALS, LEADS, NURTURE, OUTBOX, REPS, SLA_TIMERS
from tests.conftest import coverage_paused

REPO = Path(__file__).resolve().parent.parent
FUNNEL = generate()
EXPECTED = expected(FUNNEL)

Change = Callable[[Connection], object]


@dataclass(frozen=True)
class Store:
    """What the run left in the store, read once."""

    audit: list[Any]
    outbox: list[Any]
    timers: list[Any]
    enrollments: list[Any]
    deals: list[Any]
    leads: list[Any]

    def audited(self, action: str) -> Iterator[Any]:
        return (row for row in self.audit if row.action == action)


def settings_for(make_settings: Any) -> Any:
    return make_settings(
        **{
            "paths.rules": str(REPO / "rules"),
            "paths.templates": str(REPO / "templates"),
            "calendar.timezone": "UTC",
            "calendar.holidays": [HOLIDAY.isoformat()],
            "attributes.leads": {"region": "string"},
        }
    )


def lead_row(lead: LeadSpec) -> dict[str, Any]:
    return {
        "id": lead.id,
        "external_id": lead.external_id,
        "email": lead.email,
        "name": f"Lead {lead.id}",
        "attributes": {"region": lead.region} if lead.region else {},
        "score": lead.score,
        "stage": lead.stage,
        "stage_entered_at": lead.created_at,
        "owner_id": lead.owner_id,
        "created_at": lead.created_at,
        "updated_at": lead.created_at,
        "unsubscribed": False,
        "do_not_email": False,
        "hard_bounced": False,
    }


def seed(engine: Engine, funnel: Funnel) -> None:
    """The reps, the leads known at T0 and every deal, as an import would leave them."""
    old = T0 - timedelta(days=400)
    with engine.begin() as connection:
        connection.execute(
            insert(REPS),
            [
                {
                    "id": rep.id,
                    "external_id": rep.external_id,
                    "name": rep.name,
                    "email": rep.email,
                    "manager_id": rep.manager_id,
                    "pools": list(rep.pools),
                    "capacity": rep.capacity,
                    "active": rep.active,
                    "out_of_office_until": rep.out_of_office_until,
                    "timezone": "UTC",
                    "created_at": old,
                    "updated_at": old,
                }
                for rep in funnel.reps
            ],
        )
        known = [lead_row(lead) for lead in funnel.leads if lead.created_at <= T0]
        if known:
            connection.execute(insert(LEADS), known)
        if not funnel.deals:
            return
        connection.execute(
            insert(DEALS),
            [
                {
                    **{name: getattr(deal, name) for name in vars(deal)},
                    "attributes": {},
                    "created_at": old,
                    "updated_at": old,
                }
                for deal in funnel.deals
            ],
        )


def changes(funnel: Funnel, outcome: Outcome) -> list[tuple[datetime, Change]]:
    """What the CRM reports during the run, in time order: new leads, events, reps' calls."""
    found: list[tuple[datetime, Change]] = [
        (lead.created_at, _insert(LEADS, lead_row(lead)))
        for lead in funnel.leads
        if lead.created_at > T0
    ]
    found += [(event.at, _event(event)) for event in funnel.events]
    for number, (lead, rep, at, kind) in enumerate(outcome.calls, start=1):
        activity = {
            "external_id": f"A{number}",
            "lead_id": lead,
            "actor_id": rep,
            "type": kind,
            "occurred_at": at,
            "properties": {},
            "created_at": at,
        }
        found.append((at, _insert(ACTIVITIES, activity)))
    return sorted(found, key=lambda change: change[0])


def _insert(table: Any, row: dict[str, Any]) -> Change:
    return lambda connection: connection.execute(insert(table).values(**row))


def _event(event: Event) -> Change:
    if event.kind == "deal_activity":
        values: dict[str, Any] = {"last_activity_at": event.at, "updated_at": event.at}
        return lambda c: c.execute(
            update(DEALS).where(DEALS.c.id == event.subject_id).values(**values)
        )
    lead = LEADS.c.id == event.subject_id
    if event.kind == "score":
        values = {"score": LEADS.c.score + event.value}
    elif event.kind == "unsubscribe":
        values = {"unsubscribed": True}
    else:
        values = {"stage": event.value, "stage_entered_at": event.at}
    return lambda c: c.execute(update(LEADS).where(lead).values(updated_at=event.at, **values))


def drive(runtime: Runtime, pending: list[tuple[datetime, Change]]) -> None:
    """Hour by hour through the sixty days, as ``leadflow run --once`` would each hour."""
    rule_set = runtime.load_rules()
    for hour in range(DAYS * 24):
        now = T0 + hour * HOUR
        due = 0
        while due < len(pending) and pending[due][0] <= now:
            due += 1
        if due:
            with runtime.engine.begin() as connection:
                for _at, change in pending[:due]:
                    change(connection)
            del pending[:due]
        run_tick(runtime, rule_set, now)


def read_store(engine: Engine) -> Store:
    with engine.connect() as connection:

        def rows(table: Any) -> list[Any]:
            return list(connection.execute(select(table).order_by(table.c.id)))

        return Store(
            rows(AUDIT), rows(OUTBOX), rows(SLA_TIMERS), rows(NURTURE), rows(DEALS), rows(LEADS)
        )


@pytest.fixture
def store(engine: Engine, make_settings: Any, request: pytest.FixtureRequest) -> Store:
    runtime = Runtime.build(engine, settings_for(make_settings), SettableClock(T0))
    seed(engine, FUNNEL)
    # 1,440 ticks of the same code: untraced by coverage, which doubled their time.
    with coverage_paused(request):
        drive(runtime, changes(FUNNEL, EXPECTED))
    return read_store(engine)


def _rep_number(external_id: str) -> int:
    return int(external_id.removeprefix("R"))


def _what(key: str) -> str:
    """The email's kind from its idempotency key: a template, an SLA level or a stream step."""
    parts = key.split(":")
    if key.startswith("sla:"):
        return f"sla-{parts[2]}"
    if key.startswith("nurture:"):
        return f"{parts[2]}:{parts[4]}"
    return parts[-1]


@pytest.mark.slow
@pytest.mark.timeout(900)  # 60 simulated days on each store: a minute quiet, minutes under load
class TestSixtyDays:
    """The store says exactly what the hand-worked expectation says, fact by fact."""

    def test_the_whole_run(self, store: Store) -> None:
        self._assignment(store)
        self._sla(store)
        self._recycling(store)
        self._nurture(store)
        self._outbox_and_leads(store)

    def _assignment(self, store: Store) -> None:
        mqls = {
            (r.lead_id, r.at) for r in store.audited("stage_changed") if r.params["to"] == "mql"
        }
        assert mqls == EXPECTED.mqls
        assigned = {
            (r.lead_id, r.at, _rep_number(r.params["rep"]["external_id"]), r.params["how"])
            for r in store.audited("assigned")
        }
        assert assigned == EXPECTED.assigned
        assert {(r.lead_id, r.at) for r in store.audited("assignment_queued")} == EXPECTED.queued

    def _sla(self, store: Store) -> None:
        escalations = {
            (r.lead_id, r.params["level"], r.params["to"], r.at)
            for r in store.audited("sla_escalated")
        }
        assert escalations == EXPECTED.escalations
        reassigned = {
            (r.lead_id, r.at, r.params["from_rep_id"], _rep_number(r.params["to"]))
            for r in store.audited("reassigned")
        }
        assert reassigned == EXPECTED.reassigned
        timers = [
            (
                t.id,
                t.lead_id,
                t.owner_id,
                t.started_at,
                t.due_at,
                t.level,
                t.status,
                t.closed_at,
                t.next_escalation_at,
            )
            for t in store.timers
        ]
        assert timers == [
            (t.id, t.lead, t.owner, t.started, t.due, t.level, t.status, t.closed, t.next_at)
            for t in EXPECTED.timers
        ]

    def _recycling(self, store: Store) -> None:
        evidence = {r.deal_id: r.evidence for r in store.audited("deal_recycled")}
        recycled = {
            (
                d.id,
                d.closed_at,
                round(evidence[d.id]["average_cycle_days"], 9),
                evidence[d.id]["average_cycle_deals"],
            )
            for d in store.deals
            if d.outcome == "recycled"
        }
        assert recycled == EXPECTED.recycled

    def _nurture(self, store: Store) -> None:
        steps = {
            (r.lead_id, r.params["stream"], r.params["step"], r.params["template"], r.at)
            for r in store.audited("nurture_step")
        }
        assert steps == EXPECTED.steps
        enrollments = [
            (
                e.id,
                e.lead_id,
                e.stream,
                e.enrolled_at,
                e.next_step,
                e.next_step_at,
                e.status,
                e.exit_reason,
                e.exited_at,
            )
            for e in store.enrollments
        ]
        assert enrollments == [
            (e.id, e.lead, e.stream, e.enrolled, e.step, e.next_at, e.status, e.reason, e.exited)
            for e in EXPECTED.enrollments
        ]

    def _outbox_and_leads(self, store: Store) -> None:
        outbox = sorted(
            (
                m.lead_id or 0,
                m.recipient,
                _what(m.idempotency_key),
                m.created_at,
                m.category,
                m.status,
                m.next_attempt_at,
            )
            for m in store.outbox
        )
        assert outbox == sorted(
            (m.lead or 0, m.to, m.what, m.created, m.category, m.status, m.due)
            for m in EXPECTED.mail
        )
        leads = {(r.id, r.stage, r.owner_id, r.previous_owner_id, r.score) for r in store.leads}
        assert leads == {
            (x.id, x.stage, x.owner, x.previous, x.score) for x in EXPECTED.leads.values()
        }


class TestReminderAtClosingTime:
    """An SLA due exactly at closing time reminds the owner then, not at the next opening.

    Regression: the first level (``after: 0h``) of a rule-started SLA was scheduled at the next
    opening (Tuesday 09:00) while a fresh SLA after a reassignment used the due time itself.
    """

    def test_first_level_fires_at_the_due_time(self, engine: Engine, make_settings: Any) -> None:
        monday_13 = datetime(2026, 3, 2, 13, tzinfo=UTC)
        runtime = Runtime.build(engine, settings_for(make_settings), SettableClock(monday_13))
        manager, rep = (next(rep for rep in FUNNEL.reps if rep.id == n) for n in (1, 4))
        seed(engine, Funnel((manager, rep), (), (), ()))
        lead = LeadSpec(1, "L1", "l1@example.org", "East", 70, "lead", monday_13)
        with engine.begin() as connection:
            connection.execute(insert(LEADS).values(**lead_row(lead)))
        rule_set = runtime.load_rules()
        run_due_rules(runtime, rule_set, monday_13, only=["mql-assignment"])
        run_sla_escalations(runtime, rule_set, monday_13.replace(hour=17))
        store = read_store(engine)
        assert [(t.due_at, t.level, t.next_escalation_at) for t in store.timers] == [
            (monday_13.replace(hour=17), 1, datetime(2026, 3, 3, 11, tzinfo=UTC))
        ]
        assert [
            (r.params["level"], r.params["to"], r.at) for r in store.audited("sla_escalated")
        ] == [(1, "ada.lovel@example.com", monday_13.replace(hour=17))]
