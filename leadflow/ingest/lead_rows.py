"""Leads: their columns, their stage and its entry time, first source, flagged nurture, and
an opt-out that a CRM's ``unsubscribed: false`` does not undo."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any, ClassVar

from sqlalchemy import Connection, bindparam, case, func, or_, select

from leadflow.errors import ImportRowError
from leadflow.ingest.kind_writer import Convert, keep
from leadflow.ingest.names import quoted
from leadflow.ingest.references import rows_of_keys
from leadflow.ingest.stage_entries import RecordsStageEntries
from leadflow.ingest.writers import Derived, DriverRow, Prepared, Shape, Written
from leadflow.store.id_ranges import among, chunks
from leadflow.store.models import source_at_creation
from leadflow.store.nurture_exits import end_flagged_nurture
from leadflow.store.tables import AUDIT, LEADS


class LeadWriter(RecordsStageEntries):
    kind = "leads"
    table = LEADS
    bulk_tables = ("leads", "stage_changes")
    prepares_alone = True
    columns: ClassVar[Mapping[str, str]] = {
        "email": "email",
        "name": "name",
        "company": "company",
        "score": "score",
        "stage": "stage",
        "owner": "owner_id",
        "timezone": "timezone",
        "unsubscribed": "unsubscribed",
        "do_not_email": "do_not_email",
        "last_activity_at": "last_activity_at",
        "stage_entered_at": "stage_entered_at",
        "attributes": "attributes",
    }

    def after_write(self, connection: Connection, rows: list[Prepared], written: Written) -> None:
        super().after_write(connection, rows, written)
        if "unsubscribed" in self.fields:
            at = self.fields.index("unsubscribed")
            said_no = [(row.line, row.key) for row in rows if not row.values[at]]
            self._note_kept_unsubscribed(connection, said_no)

    def after_fed_write(self, connection: Connection, written: Written) -> None:
        super().after_fed_write(connection, written)
        if written.changed and {"unsubscribed", "do_not_email"} & set(self.fields):
            end_flagged_nurture(connection, written.changed, self.now)

    def after_fed_rows(
        self, connection: Connection, lines: Sequence[int], rows: Sequence[DriverRow]
    ) -> None:
        if "unsubscribed" in self.fields:
            at, key = self.fields.index("unsubscribed"), len(self.fields)
            said_no = [
                (line, row[key]) for line, row in zip(lines, rows, strict=True) if not row[at]
            ]
            self._note_kept_unsubscribed(connection, said_no)

    def _note_kept_unsubscribed(
        self, connection: Connection, said_no: Sequence[tuple[int, str]]
    ) -> None:
        """A note for each row saying ``unsubscribed: false`` of a lead that stays unsubscribed
        (the write keeps the flag: :meth:`shape`), naming the opt-out leadflow recorded."""
        if not said_no:
            return
        kept = _unsubscribed_leads(connection, [key for _line, key in said_no])
        if not kept:
            return
        opt_outs = _recorded_opt_outs(connection, sorted(set(kept.values())))
        for line, key in said_no:
            lead_id = kept.get(key)
            if lead_id is not None:
                self.notes.append((line, "unsubscribed", _kept_note(key, opt_outs.get(lead_id))))

    def shape(self) -> Shape:
        base = super().shape()
        extras: dict[str, Any] = dict(base.update_extras)
        derived: tuple[Derived, ...] = ()
        if "attributes" in self.fields:
            # The source at creation (first touch): a new lead's source; an update keeps the
            # stored one and gives one only to a lead that had none (docs/report.md says why).
            derived = (Derived("first_source", "attributes", source_at_creation),)
            given = bindparam("v_first_source", type_=self.table.c.first_source.type)
            extras["first_source"] = func.coalesce(self.table.c.first_source, given)
        if "stage" in self.fields or "stage_entered_at" in self.fields:
            extras["stage_entered_at"] = self._entered_on_update()
        if "unsubscribed" in self.fields:
            # An opt-out sticks: a stored lead's flag is set, never cleared, by a file or a
            # post (a CRM's stale copy saying false); re-subscribing is `leadflow resubscribe`.
            given = bindparam("v_unsubscribed", type_=self.table.c.unsubscribed.type)
            extras["unsubscribed"] = or_(self.table.c.unsubscribed, given)
        return Shape(base.table, base.columns, base.defaults, extras, derived, base.hash_key)

    def _entered_on_update(self) -> Any:
        # A lead whose CRM stage changed entered that stage now; an unchanged stage keeps its time.
        # A stage_entered_at the file gives (an empty cell reads as now) is taken as it is.
        table = self.table
        whens: list[tuple[Any, Any]] = []
        if "stage_entered_at" in self.fields:
            given = bindparam("v_stage_entered_at", type_=table.c.stage_entered_at.type)
            whens.append((given != self.now, given))
        if "stage" in self.fields:
            whens.append((table.c.stage == self.update_stage_param(), table.c.stage_entered_at))
            return case(*whens, else_=self.now)
        return case(*whens, else_=table.c.stage_entered_at)

    @staticmethod
    def update_stage_param() -> Any:
        return bindparam("v_stage")

    def defaults(self) -> dict[str, Any]:
        return {
            **super().defaults(),
            "stage": self.settings.stages.initial,
            "stage_entered_at": self.now,
            "score": 0,
            "attributes": {},
            "unsubscribed": False,
            "do_not_email": False,
            "hard_bounced": False,
        }

    def convert(self, field: str) -> Convert:
        if field == "owner":
            return self.owner("owner")
        if field == "stage":
            return self._stage_reader()
        if field == "score":
            return lambda value: value or 0
        if field in {"unsubscribed", "do_not_email"}:
            return bool
        if field == "attributes":
            return lambda value: value or {}
        if field == "stage_entered_at":
            return self._stage_entered_at()
        if field == "last_activity_at":
            return self.not_after_now(field, "a lead cannot have been active yet")
        return keep

    def _stage_entered_at(self) -> Convert:
        """When the lead entered its stage in the CRM; empty is "now", the future (past the
        CRM's clock being a little ahead of ours) is refused."""
        checked = self.not_after_now("stage_entered_at", "a lead cannot have entered its stage yet")
        return lambda value: self.now if value is None else checked(value)

    def _stage_reader(self) -> Convert:
        """A stage by name; empty is the initial stage. The stages are a set made once, not
        a tuple made and scanned for each row."""
        stages = self.settings.stages
        known = frozenset(stages.all())

        def stage(value: str | None) -> str:
            if value is None:
                return stages.initial
            if value not in known:
                choices = ", ".join(stages.all())
                reason = f"unknown stage {quoted(value)}; expected one of {choices} (or map it under import.mappings.leads.values.stage)"
                raise ImportRowError("stage", reason)
            return value

        return stage


def _unsubscribed_leads(connection: Connection, keys: Sequence[str]) -> dict[str, int]:
    """``external_id -> id`` of those of ``keys`` whose lead is stored unsubscribed."""
    rows = rows_of_keys(connection, "SELECT external_id, id FROM leads", set(keys), "unsubscribed")
    return dict(rows)


def _recorded_opt_outs(connection: Connection, lead_ids: Sequence[int]) -> dict[int, str]:
    """Lead id -> how and when its last opt-out through leadflow (the ``unsubscribed`` audit
    row of its unsubscribe page or one-click) came, for the leads that have one."""
    found: dict[int, str] = {}
    for chunk in chunks(lead_ids):
        rows = connection.execute(
            select(AUDIT.c.lead_id, AUDIT.c.at, AUDIT.c.params)
            .where(AUDIT.c.action == "unsubscribed", among(AUDIT.c.lead_id, chunk))
            .order_by(AUDIT.c.id)
        )
        for lead_id, at, params in rows:
            via = (params or {}).get("via", "unsubscribe")
            found[lead_id] = f"{via} at {at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    return found


def _kept_note(key: str, opt_out: str | None) -> str:
    how = (
        f"unsubscribed through leadflow ({opt_out})"
        if opt_out is not None
        else "was unsubscribed by an earlier import or post"
    )
    return (
        f"false ignored: lead {quoted(key)} {how} and stays unsubscribed (an opt-out sticks); "
        f"mark it unsubscribed in the CRM, or if the person asked to be mailed again run "
        f"`leadflow resubscribe {key}`"
    )
