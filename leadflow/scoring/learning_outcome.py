"""What a lead's outcome is, for learning points from it: a lead field read as yes/no, or deals.

``--outcome FIELD`` names a lead field (``attributes.converted``, ``stage``, ``unsubscribed``):
its value, as text and ignoring case, is positive when it is one of ``--positive`` and negative
when it is one of ``--negative``; without them the usual spellings (``true/yes/1/won/
converted`` against ``false/no/0/lost``). Any other value, or none, is an unknown outcome: the
lead is left out and counted.

``--outcome deals`` reads the lead's closed deals: a lead with a won deal is positive, a lead
whose closed deals were all lost is negative, a lead without a closed deal is unknown. With
``unit="deal"`` every closed deal of a lead is one example (won or lost) carrying its lead's
criteria: for accounts with many deals each, where nearly every account has won once.

Both are read in one query each; the labels are decided per row in Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, case, func, select

from leadflow.errors import UserInputError
from leadflow.settings import Settings
from leadflow.store.tables import DEALS, LEADS

POSITIVE_WORDS = ("true", "yes", "y", "1", "won", "converted", "customer")
NEGATIVE_WORDS = ("false", "no", "n", "0", "lost", "not converted", "disqualified")
DEALS_OUTCOME = "deals"
Unit = Literal["lead", "deal"]


@dataclass(frozen=True)
class OutcomeSpec:
    """The ``--outcome`` choice, validated against the declared fields."""

    field: str
    positive: frozenset[str]
    negative: frozenset[str]
    unit: Unit = "lead"

    @property
    def from_deals(self) -> bool:
        return self.field == DEALS_OUTCOME

    def describe(self) -> str:
        if self.from_deals:
            if self.unit == "deal":
                return "each closed deal: won (positive) or lost (negative)"
            return "deals: a won deal (positive), only lost deals (negative)"
        return (
            f"{self.field}: {', '.join(sorted(self.positive))} (positive) vs "
            f"{', '.join(sorted(self.negative))} (negative)"
        )


@dataclass(frozen=True)
class Examples:
    """The labelled examples: one per lead, or one per closed deal (``unit="deal"``)."""

    lead_ids: list[int]
    """The lead of each example (repeated for a lead's several deals)."""
    labels: list[int]
    """1 positive, 0 negative, in the order of ``lead_ids``."""
    unknown: int
    """Leads (or deals) left out: no known outcome."""


def outcome_spec(
    field: str, positive: str | None, negative: str | None, unit: Unit, settings: Settings
) -> OutcomeSpec:
    """Validate the ``--outcome`` options; a mistake is one :class:`UserInputError` line."""
    if unit == "deal" and field != DEALS_OUTCOME:
        raise UserInputError("--unit deal: only with --outcome deals (one example per closed deal)")
    if field == DEALS_OUTCOME:
        if positive is not None or negative is not None:
            msg = "--positive/--negative: not with --outcome deals (deals are won or lost)"
            raise UserInputError(msg)
        return OutcomeSpec(field, frozenset({"won"}), frozenset({"lost"}), unit)
    name = field.removeprefix("attributes.")
    if field.startswith("attributes."):
        if name not in settings.attributes.leads:
            declared = ", ".join(sorted(settings.attributes.leads)) or "none"
            msg = f"--outcome {field}: {name!r} is not declared under attributes.leads (declared: {declared})"
            raise UserInputError(msg)
    elif field not in LEADS.c or field in {"id", "attributes"}:
        msg = f"--outcome {field}: not a lead field; use attributes.NAME, stage, a lead column, or deals"
        raise UserInputError(msg)
    if (positive is None) != (negative is None):
        msg = f"--outcome {field}: give both --positive and --negative, or neither (then true/yes/1/won/converted vs false/no/0/lost)"
        raise UserInputError(msg)
    if positive is None or negative is None:
        if field == "stage":
            msg = "--outcome stage: say which stages are which, e.g. --positive customer --negative disqualified,recycled"
            raise UserInputError(msg)
        return OutcomeSpec(field, frozenset(POSITIVE_WORDS), frozenset(NEGATIVE_WORDS))
    yes, no = _values(positive, "--positive"), _values(negative, "--negative")
    both = sorted(yes & no)
    if both:
        raise UserInputError(f"--positive and --negative both list {', '.join(both)}")
    if field == "stage":
        known = set(settings.stages.all())
        unknown = sorted((yes | no) - {stage.lower() for stage in known})
        if unknown:
            msg = f"--outcome stage: unknown stage {', '.join(unknown)}; stages are {', '.join(settings.stages.all())}"
            raise UserInputError(msg)
    return OutcomeSpec(field, yes, no)


def _values(text: str, option: str) -> frozenset[str]:
    values = frozenset(as_text(part) or "" for part in text.split(",") if part.strip())
    if not values:
        raise UserInputError(f"{option}: expected comma-separated values, e.g. won,customer")
    return values


def as_text(value: Any) -> str | None:
    """A stored value as the text the outcome words are compared with (case ignored)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip().lower()
    # A number kept as text reads as the number does: "1.0" (a spreadsheet's export of 1) is
    # "1", as a stored 1.0 is; "-1", "2" and "n/a" stay themselves (and unknown by default).
    whole = _WHOLE_DECIMAL.fullmatch(text)
    return str(int(whole.group(1))) if whole else text


_WHOLE_DECIMAL = re.compile(r"([-+]?[0-9]+)\.0*")
"""A whole number written with a decimal point and only zeros after it: ``1.0``, ``0.00``."""


def read_examples(connection: Connection, spec: OutcomeSpec) -> Examples:
    """The labelled examples, ordered by lead id (then deal id)."""
    if spec.from_deals:
        return _deal_examples(connection, spec.unit)
    column = LEADS.c.attributes if spec.field.startswith("attributes.") else LEADS.c[spec.field]
    name = spec.field.removeprefix("attributes.")
    ids, labels, unknown = [], [], 0
    for lead_id, stored in connection.execute(select(LEADS.c.id, column).order_by(LEADS.c.id)):
        value = stored
        if spec.field.startswith("attributes."):
            value = stored.get(name) if isinstance(stored, dict) else None
        text = as_text(value)
        if text in spec.positive:
            ids.append(lead_id)
            labels.append(1)
        elif text in spec.negative:
            ids.append(lead_id)
            labels.append(0)
        else:
            unknown += 1
    return Examples(ids, labels, unknown)


def _deal_examples(connection: Connection, unit: Unit) -> Examples:
    if unit == "deal":
        query = select(DEALS.c.lead_id, DEALS.c.outcome).order_by(DEALS.c.lead_id, DEALS.c.id)
        ids, labels, unknown = [], [], 0
        for lead_id, outcome in connection.execute(query):
            if lead_id is None or outcome not in {"won", "lost"}:
                unknown += 1
                continue
            ids.append(lead_id)
            labels.append(1 if outcome == "won" else 0)
        return Examples(ids, labels, unknown)
    won = func.sum(case((DEALS.c.outcome == "won", 1), else_=0))
    lost = func.sum(case((DEALS.c.outcome == "lost", 1), else_=0))
    per_lead = (
        select(DEALS.c.lead_id.label("lead_id"), won.label("won"), lost.label("lost"))
        .where(DEALS.c.lead_id.is_not(None))
        .group_by(DEALS.c.lead_id)
        .subquery()
    )
    query = (
        select(LEADS.c.id, per_lead.c.won, per_lead.c.lost)
        .select_from(LEADS.outerjoin(per_lead, per_lead.c.lead_id == LEADS.c.id))
        .order_by(LEADS.c.id)
    )
    ids, labels, unknown = [], [], 0
    for row in connection.execute(query):
        lead_id, won_deals, lost_deals = row.id, row.won, row.lost
        if won_deals:
            ids.append(lead_id)
            labels.append(1)
        elif lost_deals:
            ids.append(lead_id)
            labels.append(0)
        else:
            unknown += 1
    return Examples(ids, labels, unknown)
