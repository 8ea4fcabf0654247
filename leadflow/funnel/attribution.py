"""Attribution of conversions (MQLs, won deals, won amount) to sources and campaigns.

A conversion is an entry of a lead into the MQL stage in the period (from the stage history),
or a deal won in the period (its lead's; a deal with no lead has no touches). A touch is an
activity of the lead whose ``properties`` name a ``campaign`` (else a ``source``).

- **first touch**: all the credit to the lead's source at creation, ``leads.first_source``
  (the ``source`` attribute it had when leadflow stored it: a later import that changes the
  attribute does not change it);
- **last touch**: all the credit to the last touch at or before the conversion;
- **linear**: equal shares to each touch at or before the conversion.

A conversion with no source or no touch is credited to ``(none)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    select,
    union_all,
)

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
    amount: float | None
    """Won revenue credited; None for MQLs, which have no amount (a 0.00 read as no revenue)."""


def attribution(connection: Connection, period: Period, mql: str) -> list[Attribution]:
    """The three models from one read of the period's conversions and their touches."""
    events = _conversions(period, mql)
    touch = _touch(ACTIVITIES)
    order = (ACTIVITIES.c.occurred_at.desc(), ACTIVITIES.c.id.desc())
    partition = (events.c.kind, events.c.event_id)
    # One row per touch at or before each conversion, numbered from the last; both windows
    # share one sort. The first row of each conversion carries its last touch, and all its rows
    # the linear shares: before, the conversions were read three times, with a probe into the
    # activities for each last touch.
    touched = select(
        events.c.kind,
        events.c.lead_id,
        events.c.amount,
        touch.label("grp"),
        func.row_number().over(partition_by=partition, order_by=order).label("nth"),
        func.count()
        .over(partition_by=partition, order_by=order, rows=(None, None))
        .label("touches"),
    ).select_from(events.join(ACTIVITIES, and_(*_touches_of(events))))
    # A conversion with no touch is one row, its own last, a whole share for (none): the row
    # the window gave it from an outer join, without the window's sort, which ordered every
    # conversion by its id (at a million leads, most of attribution's time when few
    # conversions have touches).
    untouched = select(
        events.c.kind,
        events.c.lead_id,
        events.c.amount,
        literal(NO_GROUP).label("grp"),
        literal(1).label("nth"),
        literal(1).label("touches"),
    ).where(~exists().where(*_touches_of(events)))
    touches = union_all(touched, untouched).subquery("touches")
    rows = touches.c
    last = rows.nth == 1
    # The lead's source at creation by a join, not a probe per conversion: PostgreSQL hashes
    # the leads. A plain column, no JSON read per conversion.
    source = func.coalesce(LEADS.c.first_source, NO_GROUP)
    # One grouping of the touches sums what every model needs, by (kind, touch, the source on
    # a conversion's last row, its touches, its amount); the three models then group these few
    # rows. Grouping the touches once per model sorted them three times.
    first = case((last, source)).label("source")
    sums = (
        select(
            rows.kind,
            rows.grp,
            first,
            rows.touches,
            rows.amount,
            func.count().label("rows"),
            func.sum(case((last, 1), else_=0)).label("lasts"),
        )
        .select_from(touches.outerjoin(LEADS, and_(last, LEADS.c.id == rows.lead_id)))
        .group_by(rows.kind, rows.grp, first, rows.touches, rows.amount)
        .cte("sums")
    )
    each = sums.c
    whole = literal(1).label("touches")
    models = [
        select(literal(0).label("model"), each.kind, each.source, whole, each.amount)
        .add_columns(func.sum(each.lasts))
        .where(each.source.is_not(None))
        .group_by(each.kind, each.source, each.amount),
        select(literal(1), each.kind, each.grp, whole, each.amount, func.sum(each.lasts))
        .group_by(each.kind, each.grp, each.amount)
        .having(func.sum(each.lasts) > 0),
        select(
            literal(2), each.kind, each.grp, each.touches, each.amount, func.sum(each.rows)
        ).group_by(each.kind, each.grp, each.touches, each.amount),
    ]
    combined = union_all(*models).subquery("models")
    query = select(*combined.c).order_by(*combined.c[:3])
    return _credited(connection.execute(query))


def _credited(rows: Any) -> list[Attribution]:
    """The lines of ``(model, kind, group, touches, amount, conversions)`` rows, in their order:
    each group's conversions and amount summed exactly (fractions), so a figure does not depend
    on the order the database adds the rows in (the shares of three touches, 1/3 each, added as
    floats in one order or another differed in the last digit)."""
    found: list[Attribution] = []
    line: tuple[int, str, str] | None = None
    conversions = amount = Fraction(0)
    for model, kind, group, touches, each, count in rows:
        if (model, kind, group) != line:
            if line is not None:
                found.append(_line(line, conversions, amount))
            line, conversions, amount = (model, kind, group), Fraction(0), Fraction(0)
        share = Fraction(int(count), int(touches))
        conversions += share
        if each is not None:
            amount += share * Fraction(float(each))
    if line is not None:
        found.append(_line(line, conversions, amount))
    return found


def _line(line: tuple[int, str, str], conversions: Fraction, amount: Fraction) -> Attribution:
    kind = line[1]
    credited = None if kind == "mql" else float(amount)
    return Attribution(MODELS[line[0]], kind, line[2], float(conversions), credited)


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
    """``kind``, ``event_id``, ``lead_id``, ``at``, ``amount`` of each conversion in the
    period, up to its as-of instant (nothing after now is counted)."""
    start, end = instant(period.start), instant(period.cutoff)
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
