"""What ``--by`` groups a lead or a deal by, as SQL expressions over the lead or deal row.

``source`` and ``segment`` are the lead attributes of those names (``attributes.source``,
``attributes.segment``: declare them as strings); a deal takes its lead's. ``rep`` is the
owner's name: a lead's is given by each metric (the owner on the entry), a deal's is its owner
as of the report, from its history (:func:`deal_owner_name`). ``product`` is the deal's product
(its current one: the store keeps no history of it). ``week`` is the Monday of the event's week
(given by each metric: the entry, the close, the SLA start). ``pool`` is the pool of the lead's
latest assignment (the ``assigned``/``reassigned`` audit row) before the report's
:attr:`~leadflow.funnel.period.Period.cutoff`: an assignment at now itself counts, as every
other event at now does; one at the end of a period that ends before now does not.

Every ``end`` below is that cutoff (an exclusive bound).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, literal, select

from leadflow.funnel.period import ALL, NO_GROUP, Grouping
from leadflow.funnel.sql import week_of
from leadflow.store.attributes import AttributeValue
from leadflow.store.tables import AUDIT, DEALS, LEADS, REPS, STAGE_CHANGES


def labelled(expression: ColumnElement[Any] | None) -> ColumnElement[Any]:
    """The group column ``grp``: nulls shown as :data:`NO_GROUP`, every row in :data:`ALL`
    when the metric is not grouped."""
    if expression is None:
        return literal(ALL).label("grp")
    return func.coalesce(expression, literal(NO_GROUP)).label("grp")


def lead_group(
    by: Grouping, lead_id: Any, owner_id: Any, event_at: Any, dialect: str, end: Any
) -> ColumnElement[Any] | None:
    """The group of the lead ``lead_id`` (owner ``owner_id``) for an event at ``event_at``."""
    if by in (Grouping.source, Grouping.segment):
        return _lead_attribute(lead_id, by.value)
    if by is Grouping.rep:
        return _rep_name(owner_id)
    if by is Grouping.week:
        return week_of(dialect, event_at)
    if by is Grouping.pool:
        return pool_of(lead_id, end)
    return None


def deal_group(
    by: Grouping, deals: Any, event_at: Any, dialect: str, end: Any
) -> ColumnElement[Any] | None:
    """The group of a deal of ``deals`` for an event at ``event_at`` (its close, its end)."""
    if by in (Grouping.source, Grouping.segment):
        return _lead_attribute(deals.c.lead_id, by.value)
    if by is Grouping.rep:
        return deal_owner_name(deals, end)
    if by is Grouping.product:
        product: ColumnElement[Any] = deals.c.product
        return product
    if by is Grouping.week:
        return week_of(dialect, event_at)
    if by is Grouping.pool:
        return pool_of(deals.c.lead_id, end)
    return None


def deal_group_of(
    by: Grouping, deal_id: Any, event_at: Any, dialect: str, end: Any
) -> ColumnElement[Any] | None:
    """:func:`deal_group` of the deal ``deal_id`` (a history row's, a stay's), looked up in
    ``deals``; by week the event's own week, with no lookup."""
    if by is Grouping.week:
        return week_of(dialect, event_at)
    deal = DEALS.alias("grouped_deal")
    found = deal_group(by, deal, event_at, dialect, end)
    return None if found is None else select(found).where(deal.c.id == deal_id).scalar_subquery()


def deal_owner_name(deals: Any, end: Any) -> ColumnElement[Any]:
    """The name of the owner a deal of ``deals`` had as of the report: the owner on the last row
    of its history before ``end`` (an entry into a stage, or an owner change: every path that
    changes a deal's owner records it), none when that row has none; the deal's owner now when
    its history holds nothing before ``end`` (a deal stored before the history was kept).

    One look-up in the deal's history index, which holds the owner (read from the index alone,
    no sort): "no owner" is read as 0 there (rep ids are positive), so that a row without an
    owner is told from no row by the one look-up. Its rep's name then, as by the owner now."""
    history = STAGE_CHANGES.alias("owner_change")
    then = (
        select(func.coalesce(history.c.to_owner_id, literal(0)))
        .where(history.c.deal_id == deals.c.id, history.c.at < end)
        .order_by(history.c.at.desc(), history.c.id.desc())
        .limit(1)
        .correlate(deals)
        .scalar_subquery()
    )
    return _rep_name(func.nullif(func.coalesce(then, deals.c.owner_id), literal(0)))


def _lead_attribute(lead_id: Any, key: str) -> ColumnElement[Any]:
    value = AttributeValue(LEADS.c.attributes, key, "string")
    return select(value).where(LEADS.c.id == lead_id).scalar_subquery()


def _rep_name(owner_id: Any) -> ColumnElement[Any]:
    return select(REPS.c.name).where(REPS.c.id == owner_id).scalar_subquery()


def pool_of(lead_id: Any, until: Any, *, since: Any = None) -> ColumnElement[Any]:
    """The pool named by the lead's latest assignment audit row before ``until`` (with
    ``since``: its first at or after ``since``, the assignment an SLA timer started with)."""
    pool = AttributeValue(AUDIT.c.params, "pool", "string")
    query = select(pool).where(
        AUDIT.c.lead_id == lead_id, AUDIT.c.action.in_(["assigned", "reassigned"])
    )
    if since is not None:
        query = query.where(AUDIT.c.at >= since).order_by(AUDIT.c.at, AUDIT.c.id)
    else:
        query = query.where(AUDIT.c.at < until).order_by(AUDIT.c.at.desc(), AUDIT.c.id.desc())
    return query.limit(1).scalar_subquery()
