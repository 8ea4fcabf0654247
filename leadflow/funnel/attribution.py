"""Attribution of conversions (MQLs, won deals, won amount) to sources and campaigns.

A conversion is an entry of a lead into the MQL stage in the period (from the stage history),
or a deal won in the period (its lead's; a deal with no lead has no touches). A touch is an
activity of the lead whose ``properties`` name a ``campaign`` (else a ``source``).

- **first touch**: all the credit to the lead's source: ``attributes.source`` (declare it; an
  import or the HTTP API sets it when the lead is created);
- **last touch**: all the credit to the last touch at or before the conversion;
- **linear**: equal shares to each touch at or before the conversion.

A conversion with no source or no touch is credited to ``(none)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Float, and_, cast, func, literal, select, union_all

from leadflow.funnel.history import is_entry
from leadflow.funnel.period import NO_GROUP, Period
from leadflow.funnel.sql import instant
from leadflow.store.attributes import AttributeValue
from leadflow.store.tables import ACTIVITIES, DEALS, LEADS, STAGE_CHANGES

MODELS = ("first_touch", "last_touch", "linear")


@dataclass(frozen=True)
class Attribution:
    """The credit ``model`` gives ``group`` for conversions of ``kind`` (``mql``, ``won``)."""

    model: str
    kind: str
    group: str
    conversions: float
    amount: float


def attribution(connection: Connection, period: Period, mql: str) -> list[Attribution]:
    events = _conversions(period, mql)
    touch = _touch(ACTIVITIES)
    found: list[Attribution] = []
    # The lead's source by a join, not a probe per conversion: PostgreSQL hashes the leads.
    first = func.coalesce(AttributeValue(LEADS.c.attributes, "source", "string"), NO_GROUP)
    last = func.coalesce(
        select(touch)
        .where(*_touches_of(events))
        .order_by(ACTIVITIES.c.occurred_at.desc(), ACTIVITIES.c.id.desc())
        .limit(1)
        .scalar_subquery(),
        NO_GROUP,
    )
    with_lead = events.outerjoin(LEADS, LEADS.c.id == events.c.lead_id)
    for model, group, rows in (("first_touch", first, with_lead), ("last_touch", last, events)):
        grp = group.label("grp")
        query = (
            select(events.c.kind, grp, func.count(), func.sum(events.c.amount))
            .select_from(rows)
            .group_by(events.c.kind, grp)
            .order_by(events.c.kind, grp)
        )
        found += [
            Attribution(model, row[0], row[1], float(row[2]), float(row[3] or 0))
            for row in connection.execute(query)
        ]
    return found + _linear(connection, events)


def _linear(connection: Connection, events: Any) -> list[Attribution]:
    touch = _touch(ACTIVITIES)
    joined = events.outerjoin(ACTIVITIES, and_(*_touches_of(events)))
    shares = (
        select(
            events.c.kind,
            func.coalesce(touch, NO_GROUP).label("grp"),
            events.c.amount,
            func.count().over(partition_by=(events.c.kind, events.c.event_id)).label("touches"),
        )
        .select_from(joined)
        .subquery("shares")
    )
    credit = 1.0 / cast(shares.c.touches, Float)
    query = (
        select(
            shares.c.kind,
            shares.c.grp,
            func.sum(credit),
            func.sum(shares.c.amount * credit),
        )
        .group_by(shares.c.kind, shares.c.grp)
        .order_by(shares.c.kind, shares.c.grp)
    )
    return [
        Attribution("linear", row[0], row[1], float(row[2]), float(row[3] or 0))
        for row in connection.execute(query)
    ]


def _touch(activities: Any) -> Any:
    properties = activities.c.properties
    return func.coalesce(
        AttributeValue(properties, "campaign", "string"),
        AttributeValue(properties, "source", "string"),
    )


def _touches_of(events: Any) -> list[Any]:
    return [
        ACTIVITIES.c.lead_id == events.c.lead_id,
        ACTIVITIES.c.occurred_at <= events.c.at,
        _touch(ACTIVITIES).is_not(None),
    ]


def _conversions(period: Period, mql: str) -> Any:
    """``kind``, ``event_id``, ``lead_id``, ``at``, ``amount`` of each conversion."""
    start, end = instant(period.start), instant(period.end)
    changes = STAGE_CHANGES.c
    mqls = select(
        literal("mql").label("kind"),
        changes.id.label("event_id"),
        changes.lead_id,
        changes.at,
        cast(literal(None), Float).label("amount"),
    ).where(
        changes.lead_id.is_not(None),
        changes.to_stage == mql,
        is_entry(),
        changes.at >= start,
        changes.at < end,
    )
    won = select(
        literal("won").label("kind"),
        DEALS.c.id,
        DEALS.c.lead_id,
        DEALS.c.closed_at,
        cast(DEALS.c.amount, Float),
    ).where(DEALS.c.outcome == "won", DEALS.c.closed_at >= start, DEALS.c.closed_at < end)
    return union_all(mqls, won).subquery("conversions")
