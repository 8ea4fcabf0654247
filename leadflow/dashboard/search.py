"""Finding leads by external id, or by the start of their email or company name.

Each lookup is a range on a unique or plain B-tree index (``leads.external_id``,
``ix_leads_email``, ``ix_leads_company``), bounded by a page: ``email >= q`` and ``email < q``
followed by the highest code point, with the exact prefix checked besides, so a collation
that sorts differently can only miss a row, never show a wrong one. Matching is
case-sensitive, as stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Engine, Select, func, select, union_all

from leadflow.store.tables import LEADS, REPS

LIMIT = 50
_TOP = chr(0x10FFFF)


@dataclass(frozen=True)
class Found:
    external_id: str
    name: str | None
    email: str | None
    company: str | None
    stage: str
    score: int
    owner: str | None


def search_leads(engine: Engine, text: str) -> list[Found]:
    """Leads whose external id is ``text`` or whose email or company starts with it; by
    external id, at most :data:`LIMIT`."""
    query_text = text.strip()
    if not query_text:
        return []
    ids = union_all(
        select(LEADS.c.id).where(LEADS.c.external_id == query_text),
        _prefix(LEADS.c.email, query_text),
        _prefix(LEADS.c.company, query_text),
    ).subquery()
    query = (
        select(LEADS, REPS.c.name.label("owner"))
        .outerjoin(REPS, REPS.c.id == LEADS.c.owner_id)
        .where(LEADS.c.id.in_(select(ids.c.id)))
        .order_by(LEADS.c.external_id)
        .limit(LIMIT)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        Found(r.external_id, r.name, r.email, r.company, r.stage, r.score, r.owner) for r in rows
    ]


def _prefix(column: Column[str], start: str) -> Select[tuple[int]]:
    # Wrapped: SQLite takes no ORDER BY or LIMIT on a member of a UNION.
    inner = (
        select(LEADS.c.id)
        .where(
            column >= start,
            column < start + _TOP,
            func.substr(column, 1, len(start)) == start,
        )
        .order_by(column)
        .limit(LIMIT)
        .subquery()
    )
    return select(inner.c.id)
