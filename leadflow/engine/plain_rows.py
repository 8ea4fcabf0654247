"""The leads and reps of a batch of firings as plain objects: their columns read by Core.

A firing reads a dozen of its lead's columns and changes a few, and reads its rep's; as ORM
objects (identity map, instrumented attributes, change events) loading and touching a batch's
1,000 leads cost a tenth of a firing's time, and the batch never let the session write them
anyway (its writes are :mod:`leadflow.engine.batch_writes`'). A :class:`LeadRow` holds the same
values under the same names as a :class:`~leadflow.store.models.Lead` (each column through its
type's result processing, as the ORM reads it), a :class:`RepRow` those of a
:class:`~leadflow.store.models.Rep`, so every reader (assignment, the email's context, the CRM
payload, nurture's exit reasons) takes them as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import ColumnElement, Result, Select, and_, literal, or_, select
from sqlalchemy.orm import Session

from leadflow.engine.row_record import RowRecord
from leadflow.store.id_ranges import among, chunks
from leadflow.store.models import Lead, Rep
from leadflow.store.tables import LEADS, REPS
from leadflow.store.types import UTCDateTime

Model = TypeVar("Model")


class PlainRow:
    """A stored row's columns as plain attributes (``lead.stage``, ``rep.email``...)."""


class LeadRow(PlainRow):
    """A lead; ``vars(row)`` is the lead as the mapping of column names a rule field reads."""


class RepRow(PlainRow):
    """A rep."""


def lead_select(where: ColumnElement[bool]) -> Select[Any]:
    """Every column of the leads ``where`` selects, as :func:`as_leads` takes them."""
    return select(*LEADS.c).where(where)


def as_leads(result: Result[Any]) -> list[Lead]:
    """The rows of a :func:`lead_select` as leads (typed as the model they stand in for)."""
    return _as(result, LeadRow, Lead)


def leads_by_id(
    session: Session, ids: Iterable[int], *, in_stage_at: datetime | None = None
) -> list[Lead]:
    """The leads with these ids (in chunks the store's parameter limit allows); with
    ``in_stage_at``, only those already in their current stage then (:func:`in_stage_by`)."""
    dialect = session.get_bind().dialect.name
    found: list[Lead] = []
    for chunk in chunks(sorted(ids)):
        where = among(LEADS.c.id, chunk, dialect)
        if in_stage_at is not None:
            where = and_(where, in_stage_by(LEADS.c.stage_entered_at, in_stage_at))
        found += as_leads(session.execute(lead_select(where)))
    return found


def in_stage_by(entered: ColumnElement[Any], now: datetime) -> ColumnElement[bool]:
    """Leave out a lead that entered its current stage after ``now``: evaluated as of a past
    instant (``run --once --now``, ``simulate``), a lead imported or moved since was not in the
    state its row holds, and its ages would be negative (``days_in_stage``). Live, ``now`` is
    never before a stage entry the daemon wrote; a CRM's clock ahead of the daemon's only
    delays the lead until that instant. A deal rule's lead is left out the same way: its lead
    actions are skipped (:class:`~leadflow.engine.firing_batch.FiringBatch`)."""
    return or_(entered.is_(None), entered <= literal(now, UTCDateTime()))


def all_reps(session: Session) -> list[Rep]:
    """Every rep, in id order (typed as the model they stand in for)."""
    return _as(session.execute(select(*REPS.c).order_by(REPS.c.id)), RepRow, Rep)


def record_of(lead: Lead) -> Mapping[str, Any]:
    """The lead as the mapping of its columns that rule fields read: a :class:`LeadRow`'s own
    attributes, an ORM lead's columns read lazily."""
    if isinstance(lead, LeadRow):  # what the type says is a Lead may be its stand-in
        return cast(Mapping[str, Any], vars(lead))
    return RowRecord(lead)


def _as(result: Result[Any], kind: type[PlainRow], model: type[Model]) -> list[Model]:
    names = tuple(result.keys())
    made = []
    for row in result:
        plain = kind.__new__(kind)
        plain.__dict__.update(zip(names, row, strict=True))
        made.append(cast(Model, plain))
    return made
