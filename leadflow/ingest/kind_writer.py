"""What every kind's writer shares: a record's key, its checked column values, their hash.

A record is what :meth:`ColumnPlan.read` made of a row. Each kind turns it into the values of
the columns the file sets (references resolved to ids), a key (the external id), and a hash of
those values: the hash is what decides "unchanged" on the next import. :class:`KindWriter` is
that machinery; each kind's own columns, lookups and checks are in ``lead_rows``,
``deal_rows``, ``activity_rows`` (and ``reps``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

from sqlalchemy import BigInteger, Connection, Integer, SmallInteger, Table, bindparam

from leadflow.errors import ImportRowError
from leadflow.ingest.column_plan import ColumnPlan
from leadflow.ingest.json_values import identifier_problem
from leadflow.ingest.names import quoted
from leadflow.ingest.number_cells import range_reason
from leadflow.ingest.references import RepDirectory
from leadflow.ingest.values import longer_than
from leadflow.ingest.writers import (
    Counts,
    DriverForm,
    DriverRow,
    Prepared,
    Shape,
    Written,
    row_hasher,
)
from leadflow.settings import ImportKind, ImportMapping, Settings
from leadflow.store.attributes import MergedAttributes

Record = dict[str, Any]
Rejection = tuple[int, ImportRowError]
Note = tuple[int, str, str]
"""A row written otherwise than it says: its line (a body's index), the field, the reason."""
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
    reason = longer_than(length, value)
    if reason is not None:
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


def keep(value: Any) -> Any:
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
        self.notes: list[Note] = []
        """What the writes so far did otherwise than their rows say (a lead kept
        unsubscribed), for the caller to report and clear."""
        self._converts = self._conversions()
        self._limits = self._lengths()
        self._ranges = self._integer_ranges()

    def not_after_now(self, field: str, cannot: str) -> Convert:
        """A time in the future is refused: a deal would count as closed (won, its amount in
        the pipeline's figures) or engaged, its cycle measured, before it is; a lead or deal
        active in 9999 would never be idle to a rule's ``days_since_activity``. A CRM's clock a
        little ahead of ours (a deal posted the moment it closes) is not an error, as for
        activities."""

        def checked(value: datetime | None) -> datetime | None:
            if value is not None and value > self.now + CLOCK_SKEW:
                raise in_the_future(field, value, "the import runs at", self.now, cannot)
            return value

        return checked

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
        return keep

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
        return tuple((index, convert) for index, convert in converts if convert is not keep)

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

    def before_write(self, connection: Connection, rows: list[Prepared]) -> list[Prepared]:
        """Work before a batch is written, in its transaction: the rows to write (a row found
        to change nothing may be given the stored hash, which the write counts unchanged)."""
        return rows

    def before_fed_write(
        self,
        connection: Connection,
        lines: Sequence[int],
        rows: list[DriverRow],
        form: DriverForm,
    ) -> list[DriverRow]:
        """:meth:`before_write` of a batch a reading process made: its rows in the driver's
        form (``form``'s), each at its line."""
        return rows

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


def in_the_future(
    field: str, value: datetime, clock_is: str, now: datetime, cannot: str
) -> ImportRowError:
    """The rejection of a time after the import's clock, in one wording for every field."""
    reason = f"{value.isoformat()} is in the future ({clock_is} {now.isoformat()}); {cannot}"
    return ImportRowError(field, reason)


CLOCK_SKEW = timedelta(minutes=5)
"""How far after leadflow's clock an activity's time may be: a sender's clock a little ahead
(a website's, a webhook's) is not an error."""


def referenced(field: str, value: str | None, known: Mapping[str, int]) -> int | None:
    if value is None:
        return None
    found = known.get(value)
    if found is None:
        raise ImportRowError(
            field, f"no {field} with external id {quoted(value)}; import the {field}s first"
        )
    return found
