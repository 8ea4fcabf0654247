"""A realistic sample funnel and a fast simulated clock: what ``leadflow demo`` shows.

The sample is generated deterministically (reps with managers in three regional pools, leads
with the attributes the scoring model reads and 60 days of activities, a year of won deals and
some open ones, which the CRM closes won or lost as their cycle ends), written to a store of
its own under ``state/demo/`` so the demo never touches real data, and the shipped rules then
run two hours a step on a simulated clock, with email delivered into the demo's maildir. The rules folder's scoring model runs turned on (in this
store only, the folder is not edited): scores rise as leads engage and fade as they do not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, update

from leadflow.cli.demo_engagement import (
    Crossing,
    FollowedLead,
    engage,
    followed,
    history,
    insert_activities,
    lead_profile,
)
from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.simulation import DayReport, tick_over_range
from leadflow.mail.transports import transport_for
from leadflow.outbox.delivery import drain
from leadflow.rule_language.model import RuleSet
from leadflow.settings import Settings
from leadflow.store.database import create_store_engine, migrate
from leadflow.store.stage_history import record_written
from leadflow.store.tables import ACTIVITIES, DEALS, LEADS, OUTBOX, REPS

START = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # a Monday morning
REGIONS = ("Central", "East", "West")
PRODUCTS = ("GTX Basic", "GTX Pro", "MG Special")
OPEN_STAGE = "Engaging"
"""The sample deals' pipeline stage while open (the default ``stages.deal_open``)."""


def demo_settings(settings: Settings, folder: Path) -> Settings:
    """The user's settings, with the store and the maildir moved under ``folder``."""
    updated = settings.model_copy(
        update={
            "database": settings.database.model_copy(
                update={"url": f"sqlite:///{folder / 'leadflow.db'}"}
            ),
            "mail": settings.mail.model_copy(
                update={"transport": "maildir", "maildir": folder / "maildir"}
            ),
        }
    )
    attributes = dict(settings.attributes.leads)
    attributes.setdefault("region", "string")
    attributes.setdefault("source", "string")
    return updated.model_copy(
        update={"attributes": settings.attributes.model_copy(update={"leads": attributes})}
    )


LEADS_IN_DEMO = 1200


@dataclass(frozen=True)
class Closing:
    """An open deal of the sample that the CRM closes at ``at``, during the simulated days or
    after them."""

    at: datetime
    deal_id: int
    external_id: str
    outcome: str


def seed(engine: Engine, rng: random.Random, leads: int = LEADS_IN_DEMO) -> list[Closing]:
    """Reps (3 managers, 12 reps), ``leads`` leads, 400 deals, activities; all deterministic.

    Returns the open deals' closings, soonest first: a deal whose cycle ends after the start
    is won (the first 300) or lost (the others) when it ends."""
    old = START - timedelta(days=400)
    reps: list[dict[str, Any]] = []
    for index, region in enumerate(REGIONS, start=1):
        reps.append(
            {
                "id": index,
                "external_id": f"mgr-{region.lower()}",
                "name": f"{region} Manager",
                "email": f"manager.{region.lower()}@example.com",
                "manager_id": None,
                "pools": [],
                "capacity": None,
                "active": True,
            }
        )
    for index in range(12):
        region = REGIONS[index % 3]
        reps.append(
            {
                "id": 10 + index,
                "external_id": f"rep-{index + 1:02d}",
                "name": f"Rep {index + 1:02d}",
                "email": f"rep{index + 1:02d}@example.com",
                "manager_id": 1 + index % 3,
                # inbound: the shipped rule's default pool, for a lead of no known region
                "pools": [region.lower(), "inbound"],
                "capacity": 25,
                "active": index != 11,
            }
        )
    lead_rows = []
    for index in range(leads):
        score = int(rng.triangular(0, 75, 30))  # the CRM's; the scoring model replaces it
        email, attributes = lead_profile(rng, index + 1, rng.choice(REGIONS))
        lead_rows.append(
            {
                "id": index + 1,
                "external_id": f"L{index + 1:05d}",
                "email": email,
                "name": f"Lead {index + 1}",
                "company": f"Customer {index % 400 + 1}",
                "score": score,
                "stage": "lead" if score < 60 else "subscriber",
                "stage_entered_at": START - timedelta(days=rng.randint(0, 40)),
                "attributes": attributes,
                "unsubscribed": rng.random() < 0.03,
                "do_not_email": False,
                "hard_bounced": False,
            }
        )
    deal_rows = []
    closings = []
    for index in range(400):
        engaged = START - timedelta(days=rng.randint(20, 360))
        won = index < 300
        cycle = timedelta(days=rng.randint(20, 60))
        # A deal still open at the start is in a pipeline stage: "Won" comes with the close
        # (_crm_closes), or the report would show open deals in a "Won" stage.
        closed_won = won and engaged + cycle < START
        deal_rows.append(
            {
                "external_id": f"D{index + 1:04d}",
                "lead_id": index + 1,
                "account": f"Customer {index % 400 + 1}",
                "product": rng.choice(PRODUCTS),
                "owner_id": 10 + index % 11,
                "stage": "Won" if closed_won else OPEN_STAGE,
                "outcome": "won" if closed_won else None,
                "amount": float(rng.randint(500, 5000)),
                "engaged_at": engaged,
                "closed_at": engaged + cycle if closed_won else None,
                "last_activity_at": engaged + timedelta(days=rng.randint(0, 10)),
                "attributes": {},
            }
        )
        if engaged + cycle >= START:
            outcome = "won" if won else "lost"
            closings.append(Closing(engaged + cycle, index + 1, f"D{index + 1:04d}", outcome))
    with engine.begin() as connection:
        connection.execute(
            insert(REPS),
            [{**rep, "timezone": "UTC", "created_at": old, "updated_at": old} for rep in reps],
        )
        connection.execute(
            insert(LEADS), [{**lead, "created_at": old, "updated_at": old} for lead in lead_rows]
        )
        # Each lead enters its first stage in the history at stage_entered_at, as an import
        # records the leads it creates: without it the report's lead -> mql had no base.
        created = range(1, leads + 1)
        record_written(connection, "leads", created, [], cause="import", source="demo", now=old)
        connection.execute(
            insert(DEALS),
            [
                {**deal, "id": number, "created_at": old, "updated_at": old}
                for number, deal in enumerate(deal_rows, start=1)
            ],
        )
        # Each deal enters its pipeline stage at its engage date, and a deal won before the
        # start its outcome at the close, as an import records the deals it creates: without
        # them the report's deal sections saw only the closes of the simulated days (from no
        # stage) and measured no deal's time in the pipeline.
        created_deals = range(1, len(deal_rows) + 1)
        record_written(
            connection,
            "deals",
            created_deals,
            [],
            cause="import",
            source="demo",
            now=old,
            deal_open_stage=OPEN_STAGE,
        )
    insert_activities(engine, history(rng, leads, START))
    return sorted(closings, key=lambda closing: (closing.at, closing.deal_id))


@dataclass(frozen=True)
class DemoRun:
    reports: list[DayReport]
    scoring: str | None
    """The scoring model's file; None when the rules have none."""
    turned_on: bool
    """The model is ``enabled: false`` in the rules folder and ran turned on for the demo."""
    followed: list[FollowedLead]
    crossing: Crossing | None
    pending: tuple[datetime, ...] = ()
    """When each email still in the outbox at the end is due (after the last step's delivery)."""


def with_scoring_on(rule_set: RuleSet) -> RuleSet:
    """The rule set with its scoring model enabled, for the demo's own store only."""
    model = rule_set.scoring
    if model is None or model.enabled:
        return rule_set
    return dataclasses.replace(rule_set, scoring=dataclasses.replace(model, enabled=True))


def run_demo_funnel(
    settings: Settings,
    folder: Path,
    *,
    days: int = 5,
    step: timedelta = timedelta(hours=2),
    progress: Callable[[int, int], None] | None = None,
) -> DemoRun:
    """Seed a fresh demo store under ``folder`` and run the funnel over ``days``."""
    from leadflow.service.channels import channels_for  # the service package loads on use

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "leadflow.db").unlink(missing_ok=True)
    shutil.rmtree(folder / "maildir", ignore_errors=True)  # a fresh demo starts with no mail
    settings = demo_settings(settings, folder)
    engine = create_store_engine(f"sqlite:///{folder / 'leadflow.db'}")
    migrate(engine)
    rng = random.Random(7)  # noqa: S311 (sample data, not secrets)
    closings = seed(engine, rng)
    clock = SettableClock(START)
    runtime = Runtime.build(engine, settings, clock)
    transport = transport_for(settings)
    total = int(timedelta(days=days) / step)
    done = 0

    def after_step(now: datetime) -> None:
        nonlocal done
        insert_activities(engine, engage(rng, LEADS_IN_DEMO, START, now + step))
        _owners_follow_up(engine, rng, now, step)
        _crm_closes(engine, [c for c in closings if now <= c.at < now + step], now + step)
        channels = channels_for(settings, transport)
        asyncio.run(drain(engine, settings, clock, channels, once=True))
        done += 1
        if progress is not None:
            progress(done, total)

    loaded = runtime.load_rules()
    rule_set = with_scoring_on(loaded)
    end = START + timedelta(days=days)
    reports = tick_over_range(runtime, rule_set, START, end, step, on_step=after_step)
    # Each step delivers what is due at its start: mail queued in the last one, due by the end
    # of the simulated days, goes out now rather than waiting in the outbox unmentioned.
    asyncio.run(drain(engine, settings, clock, channels_for(settings, transport), once=True))
    model = rule_set.scoring
    run = DemoRun(reports, None, False, [], None)
    if model is not None:
        day_ends = [
            min(START.replace(hour=0) + timedelta(days=day + 1), end) - step
            for day in range(len(reports))
        ]
        leads, crossing = followed(engine, model, day_ends)
        turned_on = loaded.scoring is not None and not loaded.scoring.enabled
        run = DemoRun(reports, model.location.file, turned_on, leads, crossing)
    run = dataclasses.replace(run, pending=_still_pending(engine))
    engine.dispose()
    return run


def _still_pending(engine: Engine) -> tuple[datetime, ...]:
    """When each email left pending in the outbox is due, earliest first."""
    query = (
        select(OUTBOX.c.next_attempt_at)
        .where(OUTBOX.c.status == "pending")
        .order_by(OUTBOX.c.next_attempt_at)
    )
    with engine.connect() as connection:
        return tuple(at.replace(tzinfo=UTC) for at in connection.execute(query).scalars())


def _owners_follow_up(engine: Engine, rng: random.Random, now: datetime, step: timedelta) -> None:
    """Reps call about half of their new MQLs within hours: each call 10-90 % into the step
    (a call at the assignment's own instant would be a first touch in no time at all)."""
    with engine.begin() as connection:
        fresh = connection.execute(
            select(LEADS.c.id, LEADS.c.owner_id).where(
                LEADS.c.stage == "mql",
                LEADS.c.owner_id.is_not(None),
                LEADS.c.stage_entered_at > now - timedelta(hours=1),
            )
        ).all()
        calls = [
            {
                "external_id": f"call-{row.id}-{now:%Y%m%d%H}",
                "lead_id": row.id,
                "actor_id": row.owner_id,
                "type": "call",
                # Some minutes into the step, from the lead's id: drawn from ``rng`` it would
                # shift every later draw of the sample.
                "occurred_at": now + step * (10 + row.id * 37 % 80) / 100,
                "properties": {},
                "created_at": now,
            }
            for row in fresh
            if rng.random() < 0.5
        ]
        if calls:
            connection.execute(insert(ACTIVITIES), calls)


def _crm_closes(engine: Engine, closing: list[Closing], now: datetime) -> None:
    """The CRM closes the deals whose cycle ended in the step, as an import would record it:
    the outcome and close time on the deal, its entry into the outcome in the stage history."""
    if not closing:
        return
    with engine.begin() as connection:
        closed = []
        for deal in closing:
            result = connection.execute(
                update(DEALS)
                .where(DEALS.c.id == deal.deal_id, DEALS.c.outcome.is_(None))  # not recycled
                .values(
                    outcome=deal.outcome,
                    stage="Won" if deal.outcome == "won" else "Lost",
                    closed_at=deal.at,
                    last_activity_at=deal.at,
                    updated_at=now,
                )
            )
            if result.rowcount:
                closed.append(deal.deal_id)
        record_written(connection, "deals", [], closed, cause="import", source="demo", now=now)
