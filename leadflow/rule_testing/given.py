"""The state a rule test starts from, and changes at a step: reps, leads, deals, activities.

Records are written inline in the test file (validated here, typed, with positions) or come
from a CSV/JSONL file through the importer (``from: leads.csv``), exactly as
``leadflow import`` would read it. Reps, leads and deals are upserted by external id: a record
whose id already exists changes only the fields it gives (a score change at a step is
``- {external_id: L2, score: 75}``); activities are added.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo
from sqlalchemy import Connection, Engine, Table, insert, select, update

from leadflow.clock import SettableClock, as_utc
from leadflow.durations import parse_duration
from leadflow.errors import Problem, ProblemsError
from leadflow.ingest.runner import import_file
from leadflow.rule_language.model import Located
from leadflow.setting_types import TimezoneName
from leadflow.settings import ImportKind, Settings
from leadflow.store.database import transaction
from leadflow.store.tables import ACTIVITIES, DEALS, LEADS, REPS

KIND_ORDER: tuple[ImportKind, ...] = ("reps", "leads", "deals", "activities")


def read_instant(value: object, anchor: datetime, zone: ZoneInfo) -> datetime:
    """A time in a test file: ISO 8601 (no offset: the calendar's zone) or ``+2h``/``-25d``."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value.strip()[:1] in {"+", "-"}:
        text = value.strip()
        offset = parse_duration(text[1:]) if text[1:].strip("0smhdw ") else timedelta(0)
        return anchor + offset if text[0] == "+" else anchor - offset
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            msg = f"{value!r} is not a time; write e.g. 2026-03-02T09:00 (calendar's timezone), 2026-03-02T09:00:00Z, +2h or -25d"
            raise ValueError(msg) from None
    else:
        msg = f"{value!r} is not a time; write e.g. 2026-03-02T09:00, +2h or -25d"
        raise ValueError(msg)
    return as_utc(moment if moment.tzinfo is not None else moment.replace(tzinfo=zone))


def _instant(value: object, info: ValidationInfo) -> datetime:
    context = info.context or {}
    return read_instant(value, context["anchor"], context["zone"])


Instant = Annotated[datetime, BeforeValidator(_instant)]


class GivenRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    external_id: str = Field(min_length=1)


class GivenRep(GivenRecord):
    name: str | None = None
    email: str | None = Field(default=None, min_length=3)
    """Required for a new rep; a step changing a rep gives only what changes."""
    manager: str | None = None
    pools: list[str] = []
    capacity: int | None = Field(default=None, ge=0)
    active: bool = True
    timezone: TimezoneName = "UTC"
    out_of_office_until: Instant | None = None


class GivenLead(GivenRecord):
    email: str | None = None
    name: str | None = None
    company: str | None = None
    score: int = 0
    stage: str | None = None
    owner: str | None = None
    previous_owner: str | None = None
    attributes: dict[str, Any] = {}
    timezone: TimezoneName | None = None
    unsubscribed: bool = False
    do_not_email: bool = False
    hard_bounced: bool = False
    stage_entered_at: Instant | None = None
    last_activity_at: Instant | None = None


class GivenDeal(GivenRecord):
    lead: str | None = None
    account: str | None = None
    product: str | None = None
    owner: str | None = None
    stage: str = "open"
    outcome: Literal["won", "lost", "recycled"] | None = None
    amount: float | None = None
    engaged_at: Instant | None = None
    closed_at: Instant | None = None
    last_activity_at: Instant | None = None
    attributes: dict[str, Any] = {}


class GivenActivity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    external_id: str | None = None
    lead: str | None = None
    deal: str | None = None
    type: str = Field(min_length=1)
    actor: str | None = None
    occurred_at: Instant | None = None
    properties: dict[str, Any] = {}
    machine: bool = False
    """A mail privacy proxy's open or a link scanner's click: recorded, worth no points."""


MODELS: Mapping[ImportKind, type[BaseModel]] = {
    "reps": GivenRep,
    "leads": GivenLead,
    "deals": GivenDeal,
    "activities": GivenActivity,
}


@dataclass(frozen=True)
class InlineRecord:
    """One validated record and where its fields stand in the test file."""

    record: BaseModel
    where: Located
    fields: Mapping[str, Located]

    def at(self, name: str) -> Located:
        return self.fields.get(name, self.where)


@dataclass(frozen=True)
class GivenBatch:
    """The records of one kind given together: inline, or a file for the importer."""

    kind: ImportKind
    records: tuple[InlineRecord, ...] = ()
    source: Path | None = None


def apply_given(
    engine: Engine, settings: Settings, batches: tuple[GivenBatch, ...], now: datetime
) -> None:
    """Write ``batches`` in the order reps, leads, deals, activities; positioned problems raise."""
    ordered = sorted(batches, key=lambda batch: KIND_ORDER.index(batch.kind))
    for batch in ordered:
        if batch.source is not None:
            report = import_file(
                engine, settings, batch.kind, batch.source, strict=True, clock=SettableClock(now)
            )
            if report.rejected:
                raise ProblemsError(report.problems)
            continue
        with transaction(engine) as session:
            _Writer(session.connection(), settings, now).write(batch)


class _Writer:
    def __init__(self, connection: Connection, settings: Settings, now: datetime) -> None:
        self.connection = connection
        self.settings = settings
        self.now = now

    def write(self, batch: GivenBatch) -> None:
        if batch.kind == "reps":
            for item in batch.records:
                self._upsert(REPS, item, self._rep_values(item, link=False))
            for item in batch.records:  # managers may be listed after the reps they manage
                if "manager" in item.record.model_fields_set:
                    self._upsert(REPS, item, self._rep_values(item, link=True))
        for item in batch.records:
            if batch.kind == "leads":
                self._upsert(LEADS, item, self._lead_values(item))
            elif batch.kind == "deals":
                self._upsert(DEALS, item, self._deal_values(item))
            elif batch.kind == "activities":
                self._activity(item)

    def _id(
        self, table: Table, item: InlineRecord, field: str, external_id: str | None
    ) -> int | None:
        if external_id is None:
            return None
        found = self.connection.execute(
            select(table.c.id).where(table.c.external_id == external_id)
        ).scalar_one_or_none()
        if found is None:
            what = {"reps": "rep", "leads": "lead", "deals": "deal"}[table.name]
            where = item.at(field)
            message = f"{field}: no {what} with external id {external_id!r}; give it under given: {table.name}"
            raise ProblemsError([Problem(where.file, where.line, where.column, message)])
        return int(found)

    def _given(self, item: InlineRecord, columns: Mapping[str, str]) -> dict[str, Any]:
        """The record's explicitly given fields, renamed to their columns."""
        values = item.record.model_dump()
        return {columns.get(name, name): values[name] for name in item.record.model_fields_set}

    def _rep_values(
        self, item: InlineRecord, *, link: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        rep = item.record
        assert isinstance(rep, GivenRep)
        if link:
            manager = self._id(REPS, item, "manager", rep.manager)
            return {}, {"manager_id": manager}
        given = self._given(item, {})
        given.pop("manager", None)
        defaults = {**rep.model_dump(exclude={"manager"}), "name": rep.name or rep.external_id}
        return {**defaults, "created_at": self.now}, given

    def _lead_values(self, item: InlineRecord) -> tuple[dict[str, Any], dict[str, Any]]:
        lead = item.record
        assert isinstance(lead, GivenLead)
        self._check_stage(item, lead.stage)
        refs = {
            "owner_id": self._id(REPS, item, "owner", lead.owner),
            "previous_owner_id": self._id(REPS, item, "previous_owner", lead.previous_owner),
        }
        given = self._given(item, {"owner": "owner_id", "previous_owner": "previous_owner_id"})
        given.update({key: refs[key] for key in refs if key in given})
        if "stage" in given and "stage_entered_at" not in given:
            existing = self.connection.execute(
                select(LEADS.c.stage).where(LEADS.c.external_id == lead.external_id)
            ).scalar_one_or_none()
            if existing != lead.stage:
                given["stage_entered_at"] = self.now
        fresh = {
            **lead.model_dump(exclude={"owner", "previous_owner"}),
            **refs,
            "stage": lead.stage or self.settings.stages.initial,
            "stage_entered_at": lead.stage_entered_at or self.now,
            "created_at": self.now,
        }
        return fresh, given

    def _deal_values(self, item: InlineRecord) -> tuple[dict[str, Any], dict[str, Any]]:
        deal = item.record
        assert isinstance(deal, GivenDeal)
        refs = {
            "lead_id": self._id(LEADS, item, "lead", deal.lead),
            "owner_id": self._id(REPS, item, "owner", deal.owner),
        }
        given = self._given(item, {"lead": "lead_id", "owner": "owner_id"})
        given.update({key: refs[key] for key in refs if key in given})
        fresh = {**deal.model_dump(exclude={"lead", "owner"}), **refs, "created_at": self.now}
        return fresh, given

    def _check_stage(self, item: InlineRecord, stage: str | None) -> None:
        stages = self.settings.stages.all()
        if stage is not None and stage not in stages:
            where = item.at("stage")
            message = f"stage: unknown stage {stage!r}; stages are {', '.join(stages)}"
            raise ProblemsError([Problem(where.file, where.line, where.column, message)])

    def _upsert(
        self, table: Table, item: InlineRecord, values: tuple[dict[str, Any], dict[str, Any]]
    ) -> None:
        fresh, given = values
        external_id = getattr(item.record, "external_id", None)
        existing = self.connection.execute(
            select(table.c.id).where(table.c.external_id == external_id)
        ).scalar_one_or_none()
        if existing is None:
            if table is REPS and not fresh.get("email"):
                where = item.where
                message = f"rep {external_id!r} is new and needs an email:"
                raise ProblemsError([Problem(where.file, where.line, where.column, message)])
            self.connection.execute(insert(table).values(**fresh, updated_at=self.now))
        elif given:
            self.connection.execute(
                update(table).where(table.c.id == existing).values(**given, updated_at=self.now)
            )

    def _activity(self, item: InlineRecord) -> None:
        activity = item.record
        assert isinstance(activity, GivenActivity)
        lead_id = self._id(LEADS, item, "lead", activity.lead)
        deal_id = self._id(DEALS, item, "deal", activity.deal)
        if lead_id is None and deal_id is None:
            where = item.where
            message = "an activity needs a lead or a deal (lead: L1)"
            raise ProblemsError([Problem(where.file, where.line, where.column, message)])
        occurred = activity.occurred_at or self.now
        count = self.connection.execute(select(ACTIVITIES.c.id)).all()
        self.connection.execute(
            insert(ACTIVITIES).values(
                external_id=activity.external_id or f"test-activity-{len(count) + 1}",
                lead_id=lead_id,
                deal_id=deal_id,
                type=activity.type,
                actor_id=self._id(REPS, item, "actor", activity.actor),
                occurred_at=occurred,
                properties=activity.properties,
                machine=activity.machine,
                created_at=self.now,
            )
        )
        for table, row_id in ((LEADS, lead_id), (DEALS, deal_id)):
            if row_id is None:
                continue
            current = self.connection.execute(
                select(table.c.last_activity_at).where(table.c.id == row_id)
            ).scalar_one_or_none()
            if current is None or current < occurred:
                self.connection.execute(
                    update(table).where(table.c.id == row_id).values(last_activity_at=occurred)
                )
