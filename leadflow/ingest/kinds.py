"""Per kind: a record's key, its database values, and what happens after a batch is written.

A record is what :meth:`ColumnPlan.read` made of a row. Each kind turns it into the values of
the columns the file sets (references resolved to ids), a key (the external id), and a hash of
those values: the hash is what decides "unchanged" on the next import.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    SmallInteger,
    Table,
    bindparam,
    case,
    func,
    null,
    or_,
    select,
    update,
)

from leadflow.errors import ImportRowError
from leadflow.ingest.column_plan import ColumnPlan
from leadflow.ingest.field_parsers import OUTCOMES, stage_outcomes
from leadflow.ingest.names import quoted
from leadflow.ingest.references import RepDirectory, ids_by_external_id
from leadflow.ingest.values import identifier_problem, range_reason
from leadflow.ingest.writers import Counts, Derived, Prepared, Shape, Written, row_hasher
from leadflow.settings import ImportKind, ImportMapping, Settings
from leadflow.store.attributes import MergedAttributes
from leadflow.store.id_ranges import chunks
from leadflow.store.models import AMOUNT_LIMIT, MAX_AMOUNT, source_at_creation
from leadflow.store.nurture_exits import end_flagged_nurture
from leadflow.store.stage_history import record_written
from leadflow.store.tables import ACTIVITIES, DEALS, LEADS
from leadflow.suggestions import did_you_mean

Record = dict[str, Any]
Rejection = tuple[int, ImportRowError]
Checked = tuple[int, str, tuple[Any, ...]]
"""A row's line, key and checked column values."""
Convert = Callable[[Any], Any]
KEY_LENGTH = 200
"""The external ids' column length (the same in every table)."""


_INTEGER_RANGES = ((BigInteger, 64), (SmallInteger, 16), (Integer, 32))
"""Integer column types, most specific first, and their width in bits on PostgreSQL."""


def external_id_of(value: object) -> str:
    """A record's ``external_id`` as stored, or :class:`ImportRowError`: the one rule for an id,
    whether a file's row or an HTTP API's record (which upserts through these writers)."""
    key = _within_limit("external_id", str(value), KEY_LENGTH)
    problem = identifier_problem(key)
    if problem is not None:
        raise ImportRowError("external_id", problem)
    return key


def _within_limit(field: str, value: str, length: int) -> str:
    if len(value) > length:
        reason = f"longer than {length} characters ({len(value)}); shorten it"
        raise ImportRowError(field, reason)
    return value


def _longest_text(column: list[Any]) -> int:
    """The length of the longest text in ``column`` (0 for none)."""
    try:  # a text column holds texts and None (the empty cells)
        return max(map(len, filter(None, column)), default=0)
    except TypeError:  # and here some other value: only the texts have a length to check
        return max((len(value) for value in column if value.__class__ is str), default=0)


def _checked_keys(keys: list[Any] | None) -> list[str] | None:
    """``keys`` (a part's ``external_id`` values, text) if every one is an id
    :func:`external_id_of` takes as it is; else None."""
    if not keys or None in keys or max(map(len, keys)) > KEY_LENGTH:
        return None
    # One search of the part's ids run together finds a control character in any of them.
    return keys if identifier_problem("".join(keys)) is None else None


def _integer_range(column_type: object) -> tuple[int, int] | None:
    """The values an integer column holds on every store (SQLite's are wider than PostgreSQL's)."""
    for integer_type, bits in _INTEGER_RANGES:
        if isinstance(column_type, integer_type):
            return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return None


def hashed(rows: Iterable[Checked], hash_key: tuple[Any, ...]) -> list[Prepared]:
    """Checked rows with the hash of their values: ready to write."""
    row_hash = row_hasher(hash_key)
    return [Prepared(line, key, row_hash(values), values) for line, key, values in rows]


def _keep(value: Any) -> Any:
    return value


class KindWriter:
    """What the runner needs from each kind; subclasses fill in the columns and lookups."""

    kind: ClassVar[ImportKind]
    table: ClassVar[Table]
    columns: ClassVar[Mapping[str, str]]
    """File field -> database column."""

    cause: str = "api"
    """The cause the stage history gives the stage changes this writer makes: the HTTP API
    builds writers with this default; an import sets ``import`` and its file (``source``)."""
    source: str | None = None
    bulk_tables: ClassVar[tuple[str, ...]] = ()
    """The tables whose secondary indexes a bulk import of this kind builds after its rows
    (:mod:`leadflow.ingest.index_builds`); each is judged on its own rows."""
    prepares_alone: ClassVar[bool] = False
    """Whether :meth:`lookups` reads nothing (the reps are loaded before the file): then a
    large file's rows are read and prepared in a process of their own (``feeder``)."""

    problems_to_name: int | None = None
    """How many more problems :meth:`every_problem` looks for every bad field of a rejected
    row for (None: no end, as the HTTP API answers every one); once spent, a rejected row is
    named by its first problem. An import sets the problems its report keeps."""

    key_fields: ClassVar[frozenset[str] | None] = frozenset({"external_id"})
    """The fields :meth:`key` reads (None: the whole record): a file's repeated ids are found
    by reading these alone (:mod:`leadflow.ingest.repeats`)."""

    def __init__(self, plan: ColumnPlan, settings: Settings, now: datetime, reps: RepDirectory):
        self.plan = plan
        self.settings = settings
        self.mapping = settings.imports.mappings.get(self.kind, ImportMapping())
        self.now = now
        self.reps = reps
        self.fields = tuple(sorted(f for f in plan.fields if f in self.columns))
        self.attribute_columns = tuple(
            sorted(t.name for t in plan.targets if t.group == "attributes")
        )
        """The declared attributes the file has a column for."""
        self.hash_key: tuple[Any, ...] = (self.fields, self.attribute_columns)
        """The file's fields and attribute columns: a row's hash says where its values go."""
        self._converts = self._conversions()
        self._limits = self._lengths()
        self._ranges = self._integer_ranges()

    def shape(self) -> Shape:
        written = tuple(self.columns[field] for field in self.fields)
        defaults = {k: v for k, v in self.defaults().items() if k not in written}
        extras: dict[str, Any] = {}
        if "attributes" in self.fields:
            # A stored row keeps the attributes the file has no column for (docs/import.md).
            given = bindparam("v_attributes", type_=self.table.c.attributes.type)
            extras["attributes"] = MergedAttributes(
                self.table.c.attributes, self.attribute_columns, given
            )
        return Shape(self.table, written, defaults, extras, hash_key=self.hash_key)

    def defaults(self) -> dict[str, Any]:
        """Columns a new row gets when the file does not set them."""
        return {"created_at": self.now, "updated_at": self.now}

    def convert(self, field: str) -> Convert:
        """How a record's value of ``field`` becomes the column's value."""
        return _keep

    def key(self, record: Record) -> str:
        key = record.get("external_id")
        if key is None:
            raise ImportRowError("external_id", "missing; every row needs its CRM id")
        return external_id_of(key)

    @cached_property
    def _key_plan(self) -> ColumnPlan:
        """The plan reading what :meth:`key` needs of a row, and no more."""
        return self.plan if self.key_fields is None else self.plan.only(self.key_fields)

    def cells_key(self, cells: Sequence[object]) -> str:
        """The key of a row's cells, read from the cells of :attr:`key_fields` alone."""
        return self.key(self._key_plan.read(cells))

    def cells_keys(self, rows: Sequence[Sequence[str]]) -> list[str] | None:
        """:meth:`cells_key` of each row of a CSV file's part, read column by column
        (:meth:`ColumnPlan.read_columns`); None when a row's key does not read or a kind
        makes its keys otherwise: the caller asks :meth:`cells_key` row by row."""
        if not self._keys_by_column:
            return None
        columns = self._key_plan.read_columns(rows)
        return None if columns is None else _checked_keys(columns.get("external_id"))

    def checked_columns(
        self, lines: Sequence[int], rows: Sequence[Sequence[str]]
    ) -> list[Checked] | None:
        """What :meth:`checked` makes of a CSV file's part (lines and text cells) whose every
        row reads and passes, made column by column; None when one does not (or the kind checks
        its records otherwise): the caller reads and checks the part row by row, which names
        every bad field of each rejected row."""
        if not self._checks_by_column:
            return None
        columns = self.plan.read_columns(rows)
        if columns is None:
            return None
        keys = _checked_keys(columns.get("external_id"))
        if keys is None:
            return None
        absent = [None] * len(rows)
        values = [columns.get(field, absent) for field in self.fields]
        try:
            for index, convert in self._converts:
                values[index] = list(map(convert, values[index]))
        except ImportRowError:
            return None
        for index, _field, length in self._limits:
            if _longest_text(values[index]) > length:
                return None
        for index, _field, low, high in self._ranges:
            if any(isinstance(value, int) and not low <= value <= high for value in values[index]):
                return None
        return list(zip(lines, keys, zip(*values, strict=True), strict=True))

    @cached_property
    def _keys_by_column(self) -> bool:
        """Whether a row's key is its ``external_id`` cell as :meth:`KindWriter.key` reads it."""
        kind = type(self)
        return (
            kind.key is KindWriter.key
            and kind.cells_key is KindWriter.cells_key
            and self.key_fields == frozenset({"external_id"})
        )

    @cached_property
    def _checks_by_column(self) -> bool:
        """Whether :meth:`checked` is :meth:`values` of KindWriter: converts, lengths, ranges."""
        kind = type(self)
        return (
            self._keys_by_column
            and kind.values is KindWriter.values
            and kind.checked is KindWriter.checked
        )

    def lookups(self, connection: Connection, records: list[Record]) -> None:
        """Load what :meth:`convert` needs for this batch (e.g. lead ids by external id)."""

    def _conversions(self) -> tuple[tuple[int, Convert], ...]:
        converts = ((index, self.convert(field)) for index, field in enumerate(self.fields))
        return tuple((index, convert) for index, convert in converts if convert is not _keep)

    def _lengths(self) -> tuple[tuple[int, str, int], ...]:
        """(position, field, limit) of each written text column with a length limit."""
        limits = []
        for index, field in enumerate(self.fields):
            length = getattr(self.table.c[self.columns[field]].type, "length", None)
            if isinstance(length, int):
                limits.append((index, field, length))
        return tuple(limits)

    def _integer_ranges(self) -> tuple[tuple[int, str, int, int], ...]:
        """(position, field, lowest, highest) of each written integer column."""
        ranges = []
        for index, field in enumerate(self.fields):
            bounds = _integer_range(self.table.c[self.columns[field]].type)
            if bounds is not None:
                ranges.append((index, field, *bounds))
        return tuple(ranges)

    def values(self, record: Record) -> tuple[Any, ...]:
        """The record's column values, or an :class:`ImportRowError` naming every bad field."""
        try:
            return self._values(record)
        except ImportRowError as exc:
            raise self.every_problem([exc], record) from None

    def every_problem(self, found: Sequence[ImportRowError], record: Record) -> ImportRowError:
        """One error naming ``found`` and every other bad field of ``record``, in the file's
        column order: a row with an unknown stage and an unknown owner named the first only,
        and took a round of fixing per field. Only a rejected row is checked again, slowly, and
        only while :attr:`problems_to_name` lasts."""
        left = self.problems_to_name
        if left is not None and left <= 0:
            return ImportRowError.of(found)
        named = {error.field for error in found}
        errors = [*found, *(e for e in self._field_problems(record) if e.field not in named)]
        columns = self._column_order
        errors.sort(key=lambda error: columns.get(error.field, len(columns)))
        if left is not None:
            self.problems_to_name = left - len(errors)
        return ImportRowError.of(errors)

    @cached_property
    def _column_order(self) -> dict[str, int]:
        order: dict[str, int] = {}
        for target in sorted(self.plan.targets, key=lambda t: t.index, reverse=True):
            order[target.group or target.field] = target.index
        return order

    def _field_problems(self, record: Record) -> list[ImportRowError]:
        """The checks of :meth:`_values`, each field on its own."""
        problems: list[ImportRowError] = []
        for index, field in enumerate(self.fields):
            try:
                self._field_value(index, field, record.get(field))
            except ImportRowError as exc:
                problems += exc.each()
        return problems

    def _field_value(self, index: int, field: str, value: Any) -> Any:
        for at, convert in self._converts:
            if at == index:
                value = convert(value)
        for at, _field, length in self._limits:
            if at == index and value.__class__ is str:
                _within_limit(field, value, length)
        for at, _field, low, high in self._ranges:
            if at == index and isinstance(value, int) and not low <= value <= high:
                raise ImportRowError(field, range_reason(low, high))
        return value

    def _values(self, record: Record) -> tuple[Any, ...]:
        values = [record.get(field) for field in self.fields]
        for index, convert in self._converts:
            values[index] = convert(values[index])
        # Checked here, not left to the database: PostgreSQL would fail the whole batch on one
        # overlong cell or too large a number, and SQLite would store the cell whole or raise
        # OverflowError; either way, one located rejection.
        for index, field, length in self._limits:
            value = values[index]
            if value.__class__ is str and len(value) > length:
                _within_limit(field, value, length)
        for index, field, low, high in self._ranges:
            value = values[index]
            if isinstance(value, int) and not low <= value <= high:
                raise ImportRowError(field, range_reason(low, high))
        return tuple(values)

    def prepare(
        self, connection: Connection, batch: list[tuple[int, str, Record]]
    ) -> tuple[list[Prepared], list[Rejection]]:
        self.lookups(connection, [record for _line, _key, record in batch])
        return self.prepared(batch)

    def accepted(
        self, connection: Connection, batch: list[tuple[int, str, Record]]
    ) -> list[tuple[int, str]]:
        """The line and key of each row of ``batch`` that :meth:`prepare` accepts; nothing of
        the batch is kept for a write."""
        # Which rows pass is all that is asked: their problems are named when written.
        to_name, self.problems_to_name = self.problems_to_name, 0
        try:
            prepared, _rejected = self.prepare(connection, batch)
        finally:
            self.problems_to_name = to_name
        return [(row.line, row.key) for row in prepared]

    def prepared(
        self, batch: list[tuple[int, str, Record]]
    ) -> tuple[list[Prepared], list[Rejection]]:
        """:meth:`prepare` once the batch's lookups are loaded."""
        checked, rejected = self.checked(batch)
        return hashed(checked, self.hash_key), rejected

    def checked(
        self, batch: list[tuple[int, str, Record]]
    ) -> tuple[list[Checked], list[Rejection]]:
        """The batch's column values, each row checked, not yet hashed (a writer with no
        lookups, :attr:`prepares_alone`, needs no connection: a reading process calls this)."""
        checked: list[Checked] = []
        rejected: list[Rejection] = []
        for line, key, record in batch:
            try:
                checked.append((line, key, self.values(record)))
            except ImportRowError as exc:
                rejected.append((line, exc))
        return checked, rejected

    def after_write(self, connection: Connection, rows: list[Prepared], written: Written) -> None:
        """Work that follows a written batch, in its transaction."""

    def after_fed_write(self, connection: Connection, written: Written) -> None:
        """:meth:`after_write` of a batch a reading process made (see :attr:`prepares_alone`),
        whose rows reach this process in the driver's form: only what the write did is known."""
        msg = f"{self.kind} are not read in a process of their own"
        raise NotImplementedError(msg)

    def finish(self, connection: Connection) -> tuple[Counts, list[Rejection]]:
        """Work after the last batch (linking managers); returns extra counts and rejections."""
        return Counts(), []

    def owner(self, field: str) -> Convert:
        return lambda value: self.reps.resolve(field, value)


def required(field: str, reason: str = "missing") -> Convert:
    def check(value: Any) -> Any:
        if value is None:
            raise ImportRowError(field, reason)
        return value

    return check


class _RecordsStageEntries(KindWriter):
    """A writer of records with a stage (leads, deals): each batch's entries into a stage
    become ``stage_changes`` rows, in the batch's transaction."""

    def after_write(self, connection: Connection, rows: list[Prepared], written: Written) -> None:
        """Record the stage entries the batch made (new rows, changed stages), in SQL; rows
        it left unchanged made none."""
        self.after_fed_write(connection, written)

    def after_fed_write(self, connection: Connection, written: Written) -> None:
        record_written(
            connection,
            self.kind,
            written.created,
            written.changed,
            cause=self.cause,
            source=self.source,
            now=self.now,
            deal_open_stage=self.settings.stages.deal_open,
        )


class LeadWriter(_RecordsStageEntries):
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

    def after_fed_write(self, connection: Connection, written: Written) -> None:
        super().after_fed_write(connection, written)
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
            return self._stage_entered_at
        return _keep

    def _stage_entered_at(self, value: datetime | None) -> datetime:
        """When the lead entered its stage in the CRM; empty is "now", the future is refused."""
        if value is None:
            return self.now
        if value > self.now:
            raise in_the_future(
                "stage_entered_at",
                value,
                "the import runs at",
                self.now,
                "a lead cannot have entered its stage yet",
            )
        return value

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


class DealWriter(_RecordsStageEntries):
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
            return lambda value: _referenced("lead", value, self._leads)
        if field == "stage":
            return required("stage")
        if field == "attributes":
            return lambda value: value or {}
        if field == "closed_at":
            return self._not_after_now("closed_at", "a deal cannot have closed yet")
        if field == "engaged_at":
            return self._not_after_now("engaged_at", "a deal cannot have been engaged yet")
        if field == "amount":
            return _amount
        return _keep

    def _not_after_now(self, field: str, cannot: str) -> Convert:
        """A close (or engage) date in the future is refused: the deal would count as closed
        (won, its amount in the pipeline's figures) or engaged, its cycle measured, before it
        is. A CRM's clock a little ahead of ours (a deal posted the moment it closes) is not an
        error, as for activities."""

        def checked(value: datetime | None) -> datetime | None:
            if value is not None and value > self.now + CLOCK_SKEW:
                raise in_the_future(field, value, "the import runs at", self.now, cannot)
            return value

        return checked

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


def in_the_future(
    field: str, value: datetime, clock_is: str, now: datetime, cannot: str
) -> ImportRowError:
    """The rejection of a time after the import's clock, in one wording for every field."""
    reason = f"{value.isoformat()} is in the future ({clock_is} {now.isoformat()}); {cannot}"
    return ImportRowError(field, reason)


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

CLOCK_SKEW = timedelta(minutes=5)
"""How far after leadflow's clock an activity's time may be: a sender's clock a little ahead
(a website's, a webhook's) is not an error."""


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
            return lambda value: _referenced("lead", value, self._leads)
        if field == "deal":
            return lambda value: _referenced("deal", value, self._deals)
        if field in {"type", "occurred_at"}:
            return required(field)
        if field == "properties":
            return lambda value: value or {}
        return _keep

    def values(self, record: Record) -> tuple[Any, ...]:
        problems = self._event_problems(record)
        if problems:
            raise self.every_problem(problems, record)
        return super().values(record)

    def _event_problems(self, record: Record) -> list[ImportRowError]:
        problems = []
        if record.get("lead") is None and record.get("deal") is None:
            problems.append(ImportRowError("lead", "missing; an activity needs a lead or a deal"))
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

    def after_write(self, connection: Connection, rows: list[Prepared], written: Written) -> None:
        """Bump the leads' and deals' ``last_activity_at`` to their newest activity, in SQL."""
        for field, target in (("lead", LEADS), ("deal", DEALS)):
            if field not in self.fields:
                continue
            position = self.fields.index(field)
            ids = {row.values[position] for row in rows} - {None}
            if ids:
                bump_last_activity(connection, target, f"{field}_id", ids)


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


def _referenced(field: str, value: str | None, known: Mapping[str, int]) -> int | None:
    if value is None:
        return None
    found = known.get(value)
    if found is None:
        raise ImportRowError(
            field, f"no {field} with external id {quoted(value)}; import the {field}s first"
        )
    return found
