"""Activities: their columns, a content-derived id, and the leads' and deals' last activity."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Connection, Table, or_, select, update

from leadflow.errors import ImportRowError
from leadflow.ingest.kind_writer import (
    CLOCK_SKEW,
    Convert,
    KindWriter,
    Record,
    external_id_of,
    in_the_future,
    keep,
    referenced,
    required,
)
from leadflow.ingest.names import quoted
from leadflow.ingest.references import ids_by_external_id, rows_of_keys
from leadflow.ingest.writers import Prepared, Written
from leadflow.store.id_ranges import chunks
from leadflow.store.tables import ACTIVITIES, DEALS, LEADS


class ActivityWriter(KindWriter):
    kind = "activities"
    table = ACTIVITIES
    columns: ClassVar[Mapping[str, str]] = {
        "lead": "lead_id",
        "deal": "deal_id",
        "type": "type",
        "actor": "actor_id",
        "occurred_at": "occurred_at",
        "properties": "properties",
    }
    _leads: Mapping[str, int] = {}
    _deals: Mapping[str, int] = {}
    _deal_leads: Mapping[str, str] = {}
    """The lead of each deal the batch names beside a lead (deal -> lead, external ids)."""

    def defaults(self) -> dict[str, Any]:
        return {"created_at": self.now, "properties": {}}

    key_fields = frozenset({"external_id"})

    def cells_key(self, cells: Sequence[object]) -> str:
        # An activity with its id is known by that cell; one without by its content, the
        # whole row: a file of ids is not read whole to find its repeats.
        record = self._key_plan.read(cells)
        if record.get("external_id") is None:
            record = self.plan.read(cells)
        return self.key(record)

    def key(self, record: Record) -> str:
        """The file's id, else one derived from the content: the same activity, the same id."""
        if record.get("external_id") is not None:
            return external_id_of(record["external_id"])
        content = {f: record.get(f) for f in self.fields if f != "occurred_at"}
        when = record.get("occurred_at")
        content["occurred_at"] = when.isoformat() if isinstance(when, datetime) else when
        digest = hashlib.blake2b(
            json.dumps(content, sort_keys=True, default=str).encode(), digest_size=12
        ).hexdigest()
        return f"auto-{digest}"

    def convert(self, field: str) -> Convert:
        if field == "actor":
            return self.owner("actor")
        if field == "lead":
            return lambda value: referenced("lead", value, self._leads)
        if field == "deal":
            return lambda value: referenced("deal", value, self._deals)
        if field in {"type", "occurred_at"}:
            return required(field)
        if field == "properties":
            return lambda value: value or {}
        return keep

    def values(self, record: Record) -> tuple[Any, ...]:
        problems = self._event_problems(record)
        if problems:
            raise self.every_problem(problems, record)
        return super().values(record)

    def _event_problems(self, record: Record) -> list[ImportRowError]:
        problems = []
        lead, deal = record.get("lead"), record.get("deal")
        if lead is None and deal is None:
            problems.append(ImportRowError("lead", "missing; an activity needs a lead or a deal"))
        owning = self._deal_leads.get(deal) if lead is not None and deal is not None else None
        if owning is not None and owning != lead:
            # Whose SLA would the call meet, whose days_since_activity would it move?
            reason = (
                f"deal {quoted(deal)} belongs to lead {quoted(owning)}, not {quoted(lead)}; "
                f"name the deal's lead, or leave lead or deal empty"
            )
            problems.append(ImportRowError("deal", reason))
        occurred = record.get("occurred_at")
        if isinstance(occurred, datetime) and occurred > self.now + CLOCK_SKEW:
            # It would become the lead's last activity until that date (a year 2999 typo kept
            # last_activity_at there for good) and wait in the scoring passes' next change.
            problems.append(
                in_the_future(
                    "occurred_at",
                    occurred,
                    "received at",
                    self.now,
                    "an activity cannot have happened yet",
                )
            )
        return problems

    def lookups(self, connection: Connection, records: list[Record]) -> None:
        if "lead" in self.fields:
            wanted = {r["lead"] for r in records if r.get("lead") is not None}
            self._leads = ids_by_external_id(connection, LEADS, wanted)
        if "deal" in self.fields:
            wanted = {r["deal"] for r in records if r.get("deal") is not None}
            self._deals = ids_by_external_id(connection, DEALS, wanted)
        if "lead" in self.fields and "deal" in self.fields:
            both = {r["deal"] for r in records if r.get("deal") is not None and r.get("lead")}
            self._deal_leads = deal_leads(connection, both)

    def after_write(self, connection: Connection, rows: list[Prepared], written: Written) -> None:
        """Bump the leads' and deals' ``last_activity_at`` to their newest activity, in SQL."""
        for field, target in (("lead", LEADS), ("deal", DEALS)):
            if field not in self.fields:
                continue
            position = self.fields.index(field)
            ids = {row.values[position] for row in rows} - {None}
            if ids:
                bump_last_activity(connection, target, f"{field}_id", ids)


def deal_leads(connection: Connection, deals: Iterable[str]) -> dict[str, str]:
    """Deal -> its lead (external ids) for those of ``deals`` stored with a lead."""
    joined = (
        "SELECT deals.external_id, leads.external_id FROM deals "
        "JOIN leads ON leads.id = deals.lead_id"
    )
    return dict(rows_of_keys(connection, joined, set(deals), key="deals.external_id"))


def bump_last_activity(
    connection: Connection, target: Table, column: str, ids: Iterable[int]
) -> None:
    """Move ``target``'s ``last_activity_at`` (leads or deals, by their id in ``column`` of the
    activities) up to the newest activity, never back; imports and tracked email share it."""
    activities = ACTIVITIES
    latest = (
        select(activities.c.occurred_at)
        .where(activities.c[column] == target.c.id)
        .order_by(activities.c.occurred_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    for chunk in chunks(sorted(ids), 5000):
        connection.execute(
            update(target)
            .where(
                target.c.id.in_(chunk),
                or_(target.c.last_activity_at.is_(None), target.c.last_activity_at < latest),
            )
            .values(last_activity_at=latest)
        )
