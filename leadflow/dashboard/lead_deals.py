"""The deals of one lead, for its page: what a rep opening a lead in a CRM sees beside it.

Read by ``ix_deals_lead_id``, newest first (open deals have no close: they sort by when they
were engaged or stored), at most :data:`SHOWN` of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from leadflow.store.tables import DEALS, REPS

SHOWN = 50


@dataclass(frozen=True)
class DealLine:
    external_id: str
    product: str | None
    stage: str
    outcome: str | None
    amount: float | None
    owner: str | None
    engaged_at: datetime | None
    closed_at: datetime | None
    last_activity_at: datetime | None


def lead_deals(engine: Engine, lead_id: int) -> tuple[list[DealLine], bool]:
    """The lead's deals, the open and latest first; and whether it has more than shown."""
    t = DEALS
    latest = func.coalesce(t.c.closed_at, t.c.engaged_at, t.c.created_at)
    query = (
        select(t, REPS.c.name.label("owner"))
        .outerjoin(REPS, REPS.c.id == t.c.owner_id)
        .where(t.c.lead_id == lead_id)
        .order_by(t.c.closed_at.is_not(None), latest.desc(), t.c.id.desc())
        .limit(SHOWN + 1)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    lines = [
        DealLine(
            row.external_id,
            row.product,
            row.stage,
            row.outcome,
            row.amount,
            row.owner,
            row.engaged_at,
            row.closed_at,
            row.last_activity_at,
        )
        for row in rows[:SHOWN]
    ]
    return lines, len(rows) > SHOWN
