"""Generated funnel data for the 60-day scenario: reps, leads, deals and what happens to them.

Everything is drawn from one seeded ``random.Random``, so a run is reproducible. The data is
plain dataclasses; the scenario test writes it into the store and, separately, works out the
expected outcome from the same lists (``sixty_days_expected``) without calling leadflow.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

T0 = datetime(2026, 3, 2, tzinfo=UTC)
"""Monday 00:00 UTC: the first tick."""
DAYS = 60
HOLIDAY = date(2026, 4, 3)
"""Good Friday: no business hours (the test's calendar is UTC 09:00-17:00, Monday-Friday)."""
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class RepSpec:
    id: int
    external_id: str
    name: str
    email: str
    manager_id: int | None
    pools: tuple[str, ...]
    capacity: int | None = None
    active: bool = True
    out_of_office_until: datetime | None = None
    reply_after: tuple[int | None, ...] = ()
    """Hours after getting a lead that the rep calls it, cycled by lead id (None: never)."""


@dataclass(frozen=True)
class LeadSpec:
    id: int
    external_id: str
    email: str | None
    region: str | None
    score: int
    stage: str
    created_at: datetime
    """Also when it entered its stage; leads created after T0 arrive during the run."""
    owner_id: int | None = None


@dataclass(frozen=True)
class DealSpec:
    id: int
    external_id: str
    lead_id: int | None
    owner_id: int
    product: str
    stage: str
    outcome: str | None
    engaged_at: datetime | None
    closed_at: datetime | None = None
    last_activity_at: datetime | None = None


@dataclass(frozen=True)
class Event:
    """Something the CRM tells leadflow at ``at``: applied at the first tick at or after it.

    ``kind``: ``score`` (lead's score + value), ``stage`` (lead moved to value by the CRM),
    ``unsubscribe`` (lead), ``deal_activity`` (deal's last activity is ``at``).
    """

    at: datetime
    kind: str
    subject_id: int
    value: int | str | None = None


@dataclass(frozen=True)
class Funnel:
    reps: tuple[RepSpec, ...]
    leads: tuple[LeadSpec, ...]
    deals: tuple[DealSpec, ...]
    events: tuple[Event, ...]


POOL_OF_REGION = {"East": "east", "West": "west"}
"""As rules/mql.yaml routes (Central has no reps here); anything else goes to ``inbound``."""
PRODUCTS = {"Core": (80, 20, 40), "Plus": (48, 35, 65), "Edge": (22, 60, 90)}
"""Won deals per product and the range of their cycle in days."""


def reps(rng: random.Random) -> tuple[RepSpec, ...]:
    """Three managers (no pool) and ten reps in the east, west and inbound pools."""

    def rep(
        number: int,
        name: str,
        manager: int | None,
        pools: tuple[str, ...],
        *,
        capacity: int | None = None,
        active: bool = True,
        away_until: datetime | None = None,
    ) -> RepSpec:
        first, last = name.lower().split()
        replies = tuple(rng.choice([1, 2, 3, 5, 7, 11, None]) for _ in range(3))
        email = f"{first}.{last}@example.com"
        return RepSpec(
            number, f"R{number}", name, email, manager, pools, capacity, active, away_until, replies
        )

    return (
        rep(1, "Mara East", None, ()),
        rep(2, "Walt West", None, ()),
        rep(3, "Ines Inbound", None, ()),
        rep(4, "Ada Lovel", 1, ("east",)),
        rep(5, "Ben Capp", 1, ("east",), capacity=3),
        rep(6, "Cleo Gone", 1, ("east",), active=False),
        rep(7, "Dov Both", 1, ("east", "inbound")),
        rep(8, "Eve Ward", 2, ("west",), capacity=2),
        rep(9, "Finn Away", 2, ("west",), away_until=T0 + 20 * DAY + 7 * HOUR),
        rep(10, "Gus Small", 2, ("west",), capacity=1),
        rep(11, "Hana Ito", 3, ("inbound",), capacity=4),
        rep(12, "Ivo Solo", None, ("inbound",)),
        rep(13, "Jan Tide", 3, ("inbound",), capacity=3),
    )


def _minutes(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A random instant between two instants, on a whole minute."""
    span = int((end - start).total_seconds() // 60)
    return start + timedelta(minutes=rng.randrange(span))


def _region(rng: random.Random) -> str | None:
    return rng.choices(["East", "West", "APAC", None], weights=[40, 35, 10, 15])[0]


def leads_and_deals(
    rng: random.Random, team: tuple[RepSpec, ...]
) -> tuple[list[LeadSpec], list[DealSpec]]:
    """300 leads (42 of them behind an open deal), 150 won and 10 lost deals, 42 open deals."""
    end = T0 + DAYS * DAY
    deal_leads = set(rng.sample(range(1, 301), 42))
    leads, deals = [], []
    for number in range(1, 301):
        region = _region(rng)
        email = None if number % 61 == 0 else f"lead{number}@example.org"
        if number in deal_leads:
            pool = POOL_OF_REGION.get(region or "", "inbound")
            owner = rng.choice([rep for rep in team if pool in rep.pools])
            engaged = _minutes(rng, T0 - 170 * DAY, T0 - 15 * DAY)
            leads.append(
                LeadSpec(
                    number,
                    f"L{number}",
                    email,
                    region,
                    rng.randrange(60, 101),
                    "opportunity",
                    engaged,
                    owner.id,
                )
            )
            active = None if rng.random() < 0.5 else _minutes(rng, engaged, T0 - DAY)
            product = rng.choice(list(PRODUCTS))
            deals.append(
                DealSpec(0, "", number, owner.id, product, "Engaging", None, engaged, None, active)
            )
            continue
        arrives_later = rng.random() < 0.2
        created = (
            _minutes(rng, T0, end - 5 * DAY) if arrives_later else _minutes(rng, T0 - 45 * DAY, T0)
        )
        score = rng.randrange(60, 80) if rng.random() < 0.04 else rng.randrange(0, 56)
        stage = rng.choice(["lead", "lead", "subscriber"])
        leads.append(LeadSpec(number, f"L{number}", email, region, score, stage, created))
    deals += _closed_deals(rng, team)
    deals += [
        DealSpec(0, "", None, rng.randrange(4, 14), "Core", "Prospecting", None, None)
        for _ in range(2)
    ]
    rng.shuffle(deals)
    numbered = [
        DealSpec(index, f"D{index}", *(getattr(deal, name) for name in _DEAL_FIELDS))
        for index, deal in enumerate(deals, start=1)
    ]
    return leads, numbered


_DEAL_FIELDS = (
    "lead_id",
    "owner_id",
    "product",
    "stage",
    "outcome",
    "engaged_at",
    "closed_at",
    "last_activity_at",
)


def _closed_deals(rng: random.Random, team: tuple[RepSpec, ...]) -> list[DealSpec]:
    """Won deals over the year before T0 (three Edge deals leave the window on days 5, 20
    and 40, so Edge drops below 20 and falls back to the overall average), and lost ones."""
    sellers = [rep.id for rep in team if rep.pools]
    deals = []
    for product, (count, shortest, longest) in PRODUCTS.items():
        for index in range(count):
            if product == "Edge" and index < 3:
                closed = (
                    T0
                    - 365 * DAY
                    + (5, 20, 40)[index] * DAY
                    + timedelta(minutes=rng.randrange(1, 600))
                )
            else:
                closed = _minutes(rng, T0 - 364 * DAY, T0 - DAY)
            cycle = timedelta(seconds=rng.randrange(shortest * 86400, longest * 86400))
            deals.append(
                DealSpec(
                    0, "", None, rng.choice(sellers), product, "Won", "won", closed - cycle, closed
                )
            )
    for _ in range(10):  # lost deals never count in the average
        closed = _minutes(rng, T0 - 300 * DAY, T0 - DAY)
        deals.append(
            DealSpec(
                0, "", None, rng.choice(sellers), "Core", "Lost", "lost", closed - 3 * DAY, closed
            )
        )
    return deals


def events(rng: random.Random, leads: list[LeadSpec], deals: list[DealSpec]) -> list[Event]:
    """Score rises, CRM stage changes (to sql, or disqualified), unsubscribes, deal activity."""
    end = T0 + (DAYS - 2) * DAY
    found: list[Event] = []
    for lead in leads:
        start = max(T0, lead.created_at)
        rises = rng.choices([0, 1, 2, 3], weights=[30, 35, 25, 10])[0]
        found.extend(
            Event(_minutes(rng, start, end), "score", lead.id, rng.randrange(5, 36))
            for _ in range(rises)
        )
    crossing = _crossings(leads, found)
    converted = rng.sample(sorted(crossing), 16)
    for lead_id in converted[:10]:
        later = crossing[lead_id] + timedelta(hours=rng.randrange(2, 40), minutes=rng.randrange(60))
        found.append(Event(later, "stage", lead_id, "sql"))
    for lead_id in converted[10:]:
        later = crossing[lead_id] + timedelta(hours=rng.randrange(2, 40), minutes=rng.randrange(60))
        found.append(Event(later, "stage", lead_id, "disqualified"))
    quiet = [lead for lead in leads if lead.id not in crossing and lead.owner_id is None]
    for lead in rng.sample(quiet, 12):
        moment = _minutes(rng, max(T0, lead.created_at), end)
        found.append(
            Event(moment, "unsubscribe" if lead.id % 2 else "stage", lead.id, "disqualified")
        )
    open_deals = [deal for deal in deals if deal.outcome is None and deal.engaged_at is not None]
    found.extend(
        Event(_minutes(rng, T0, T0 + 20 * DAY), "deal_activity", deal.id)
        for deal in rng.sample(open_deals, 6)
    )
    return sorted(found, key=lambda event: (event.at, event.kind, event.subject_id))


def _crossings(leads: list[LeadSpec], found: list[Event]) -> dict[int, datetime]:
    """When each lead not behind a deal first reaches 60 by its score events alone."""
    scores = {lead.id: lead.score for lead in leads if lead.owner_id is None}
    crossing = {
        lead_id: lead.created_at
        for lead in leads
        if (lead_id := lead.id) in scores and lead.score >= 60
    }
    for event in sorted(found, key=lambda e: e.at):
        if event.subject_id in scores and isinstance(event.value, int):
            scores[event.subject_id] += event.value
            if scores[event.subject_id] >= 60:
                crossing.setdefault(event.subject_id, max(event.at, T0))
    return crossing


def generate(seed: int = 20260302) -> Funnel:
    rng = random.Random(seed)
    team = reps(rng)
    leads, deals = leads_and_deals(rng, team)
    return Funnel(team, tuple(leads), tuple(deals), tuple(events(rng, leads, deals)))
