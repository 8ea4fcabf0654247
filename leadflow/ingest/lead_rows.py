"""Leads: their columns, their stage and its entry time, first source, flagged nurture, and
an opt-out that a CRM's ``unsubscribed: false`` does not undo (:mod:`leadflow.ingest.opt_outs`:
what a batch does to the stored opt-outs, noted and audited)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from sqlalchemy import Connection, bindparam, case, func, or_

from leadflow.errors import ImportRowError
from leadflow.ingest.kind_writer import Convert, keep
from leadflow.ingest.names import quoted
from leadflow.ingest.opt_outs import BatchOptOuts, Said, kept_notes, record_opt_outs, survey
from leadflow.ingest.stage_entries import RecordsStageEntries
from leadflow.ingest.writers import (
    Derived,
    DriverForm,
    DriverRow,
    Prepared,
    Shape,
    Written,
    row_hasher,
)
from leadflow.store.models import source_at_creation
from leadflow.store.nurture_exits import end_flagged_nurture
from leadflow.store.tables import LEADS


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._opt_outs = BatchOptOuts()
        """What the batch being written does to opt-outs (:meth:`before_write`)."""

    def before_write(self, connection: Connection, rows: list[Prepared]) -> list[Prepared]:
        if "unsubscribed" not in self.fields:
            return rows
        at = self.fields.index("unsubscribed")
        said = [Said(row.line, row.key, row.values[at], row.source_hash) for row in rows]
        unchanged = self._survey(connection, said, lambda index: rows[index].values)
        return [
            row._replace(source_hash=unchanged[index]) if index in unchanged else row
            for index, row in enumerate(rows)
        ]

    def before_fed_write(
        self,
        connection: Connection,
        lines: Sequence[int],
        rows: list[DriverRow],
        form: DriverForm,
    ) -> list[DriverRow]:
        if "unsubscribed" not in self.fields:
            return rows
        at, key = self.fields.index("unsubscribed"), form.width
        said = [
            Said(line, row[key], row[at], row[key + 1])
            for line, row in zip(lines, rows, strict=True)
        ]
        unchanged = self._survey(connection, said, lambda index: form.values(rows[index]))
        return [
            (*row[: key + 1], unchanged[index], *row[key + 2 :]) if index in unchanged else row
            for index, row in enumerate(rows)
        ]

    def _survey(
        self,
        connection: Connection,
        said: Sequence[Said],
        values: Callable[[int], tuple[Any, ...]],
    ) -> dict[int, str]:
        """Survey the batch's opt-outs (:func:`survey`), note its kept ones; the rows that
        change nothing, by position, with the stored hash to write them with."""
        at = self.fields.index("unsubscribed")
        row_hash = row_hasher(self.hash_key)

        def flipped_hash(row: tuple[Any, ...]) -> str:
            return row_hash((*row[:at], not row[at], *row[at + 1 :]))

        self._opt_outs = survey(connection, said, values, flipped_hash)
        for line, reason in kept_notes(connection, self._opt_outs.kept):
            self.notes.append((line, "unsubscribed", reason))
        return self._opt_outs.unchanged

    def after_fed_write(self, connection: Connection, written: Written) -> None:
        super().after_fed_write(connection, written)
        if self._opt_outs.opting_out:
            # Before the nurture exits they cause, as leadflow's own unsubscribe writes them.
            record_opt_outs(
                connection,
                self._opt_outs.opting_out,
                written.changed,
                cause=self.cause,
                source=self.source,
                now=self.now,
            )
        self._opt_outs = BatchOptOuts()
        if written.changed and {"unsubscribed", "do_not_email"} & set(self.fields):
            end_flagged_nurture(connection, written.changed, self.now)

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
