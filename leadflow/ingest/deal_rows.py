"""Deals: their columns, their amount, and how outcome, stage and close date agree."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

from sqlalchemy import Connection, bindparam, case, null, select

from leadflow.errors import ImportRowError
from leadflow.ingest.field_parsers import OUTCOMES, stage_outcomes
from leadflow.ingest.kind_writer import (
    Convert,
    Record,
    keep,
    referenced,
    required,
)
from leadflow.ingest.references import ids_by_external_id
from leadflow.ingest.stage_entries import RecordsStageEntries
from leadflow.ingest.writers import Shape
from leadflow.store.id_ranges import chunks
from leadflow.store.models import AMOUNT_LIMIT, MAX_AMOUNT
from leadflow.store.tables import DEALS, LEADS
from leadflow.suggestions import did_you_mean


class DealWriter(RecordsStageEntries):
    kind = "deals"
    table = DEALS
    columns: ClassVar[Mapping[str, str]] = {
        "lead": "lead_id",
        "account": "account",
        "product": "product",
        "owner": "owner_id",
        "stage": "stage",
        "outcome": "outcome",
        "amount": "amount",
        "engaged_at": "engaged_at",
        "closed_at": "closed_at",
        "last_activity_at": "last_activity_at",
        "attributes": "attributes",
    }
    _leads: Mapping[str, int] = {}

    def defaults(self) -> dict[str, Any]:
        return {**super().defaults(), "attributes": {}}

    def convert(self, field: str) -> Convert:
        if field == "owner":
            return self.owner("owner")
        if field == "lead":
            return lambda value: referenced("lead", value, self._leads)
        if field == "stage":
            return required("stage")
        if field == "attributes":
            return lambda value: value or {}
        if field == "closed_at":
            return self.not_after_now("closed_at", "a deal cannot have closed yet")
        if field == "engaged_at":
            return self.not_after_now("engaged_at", "a deal cannot have been engaged yet")
        if field == "amount":
            return _amount
        if field == "last_activity_at":
            return self.not_after_now(field, "a deal cannot have been active yet")
        return keep

    def shape(self) -> Shape:
        base = super().shape()
        if "outcome" not in self.fields or "closed_at" in self.fields:
            return base
        # A file with the stage but not the close date (a CRM sync sending what changed)
        # keeps a closed deal's stored date, and clears it on a deal the file reopens: an open
        # deal with a close date would count as closed in the report and open in status.
        outcome = bindparam("v_outcome", type_=self.table.c.outcome.type)
        extras = {
            **base.update_extras,
            "closed_at": case((outcome.is_(None), null()), else_=self.table.c.closed_at),
        }
        return Shape(base.table, base.columns, base.defaults, extras, base.derived, base.hash_key)

    _stored_close_dates: Mapping[str, datetime | None] = {}
    """The batch's stored deals' close dates, for rows with a stage but no ``closed_at``."""

    @cached_property
    def _stage_outcomes(self) -> dict[str, str]:
        """Stage (stripped, case folded) -> outcome, as the plan derives a missing outcome."""
        return stage_outcomes(self.mapping)

    def _meant_outcome_stage(self, stage: object) -> str:
        """``did you mean 'Won'?`` for an open stage a typo away from one that closes a deal
        (``Wonn``): its close date is refused as an open deal's, which the typo is not."""
        if not isinstance(stage, str) or not stage.strip():
            return ""
        written = {name.strip().casefold(): name for name in OUTCOME_STAGES}
        written |= {key.strip().casefold(): key for key in self.mapping.values.get("outcome", {})}
        known = {written.get(key, key) for key in self._stage_outcomes}
        return did_you_mean(stage.strip(), sorted(known), ignore_case=True)

    def values(self, record: Record) -> tuple[Any, ...]:
        stage = record.get("stage")
        # An empty outcome cell (a CRM's IsWon left blank) says no more than a file without
        # the column: the stage tells, so "Closed Won" is not stored open.
        if (
            "outcome" in self.fields
            and record.get("outcome") is None
            and isinstance(stage, str)
            and (derived := self._stage_outcomes.get(stage.strip().casefold())) in OUTCOMES
        ):
            record = {**record, "outcome": derived}
        try:
            self._check_dates(record)
        except ImportRowError as exc:
            raise self.every_problem([exc], record) from None
        return super().values(record)

    def _check_dates(self, record: Record) -> None:
        engaged, closed = record.get("engaged_at"), record.get("closed_at")
        outcome = record.get("outcome")
        if "closed_at" in self.fields:
            _check_closed(outcome, closed, self._meant_outcome_stage(record.get("stage")))
        elif (
            outcome is not None
            and self._stored_close_dates.get(str(record.get("external_id"))) is None
        ):
            # A partial row (a sync sending what changed) keeps a stored close date; a deal
            # with none stored, new or not, closes only with one.
            _check_closed(outcome, None)
        if isinstance(engaged, datetime) and isinstance(closed, datetime) and closed < engaged:
            # A negative sales cycle would enter the report's average won cycle and the
            # recycling rule's average (and so every open deal's idle threshold).
            reason = (
                f"{closed.isoformat()} is before engaged_at {engaged.isoformat()}; "
                "a deal cannot close before it was engaged"
            )
            raise ImportRowError("closed_at", reason)

    def lookups(self, connection: Connection, records: list[Record]) -> None:
        if "lead" in self.fields:
            wanted = {r["lead"] for r in records if r.get("lead") is not None}
            self._leads = ids_by_external_id(connection, LEADS, wanted)
        if "outcome" in self.fields and "closed_at" not in self.fields:
            keys = [str(r["external_id"]) for r in records if r.get("external_id") is not None]
            self._stored_close_dates = {
                key: closed
                for part in chunks(keys)
                for key, closed in connection.execute(
                    select(DEALS.c.external_id, DEALS.c.closed_at).where(
                        DEALS.c.external_id.in_(part)
                    )
                )
            }


def _amount(value: float | None) -> float | None:
    """A deal's amount is what it is worth: a negative one (a refund, a typo) would lower the
    won amount, the open value and the sales velocity of the report; an absurd one (1e308, a
    typo or a test value) made their sums too large for a number and crashed the report. Files
    and the HTTP API read their records through this one check."""
    if value is not None and value < 0:
        reason = f"{value:g} is negative; a deal's amount is 0 or more"
        raise ImportRowError("amount", reason)
    if value is not None and value > MAX_AMOUNT:
        reason = f"{value:.16g} is more than {AMOUNT_LIMIT}, the most a deal's amount may be"
        raise ImportRowError("amount", reason)
    return value


def _check_closed(outcome: str | None, closed: datetime | None, meant: str = "") -> None:
    """A closed deal has its close date and an open one has none, as a CRM keeps them (a
    Salesforce opportunity never closes without one).

    The report tells an open deal by its missing close date (open at the period's end),
    ``leadflow status`` by its outcome: a won deal without a date was counted open in one and
    won in the other, and an open deal with one the other way round.
    """
    if outcome is not None and closed is None:
        reason = f"a {outcome} deal needs its close date; give the date it was {outcome}"
        raise ImportRowError("closed_at", reason)
    if outcome is None and closed is not None:
        hint = f" ({meant})" if meant else ""
        reason = (
            f"{closed.isoformat()} closes a deal whose stage is open{hint}; leave it empty until "
            "the deal is won or lost, or give its outcome (won or lost)"
        )
        raise ImportRowError("closed_at", reason)


OUTCOME_STAGES = ("Won", "Closed Won", "Lost", "Closed Lost")
"""The stages that close a deal without ``values.outcome``, as CRMs spell them."""
