"""Writing one batch of prepared rows: insert the new, update the changed, skip the unchanged.

On SQLite new rows go through the DBAPI's ``executemany`` with values already in the driver's
form (this is the hot path of a large import); changed rows, which are few, go through
SQLAlchemy Core. On PostgreSQL a batch of keys the table does not hold is copied (``COPY``)
straight into it; any other batch is copied into a temporary staging table and merged by one
``INSERT ... SELECT ... ON CONFLICT (external_id) DO UPDATE ... RETURNING``; both in the
caller's transaction. A row whose ``source_hash`` matches the stored one is not written
at all, so a re-import never reverts what leadflow itself changed since (a stage, an owner).
Either way the write tells which row ids it created and which it changed (:class:`Written`),
so that what follows a batch (the stage history) touches only those.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    MetaData,
    Table,
    bindparam,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from leadflow.ingest.references import existing_rows
from leadflow.store.id_ranges import text_array
from leadflow.store.types import UTCDateTime, sqlite_timestamp


def _json_encoder() -> Callable[[Any], str]:
    """``json.dumps`` without building a new C encoder per call (a third of its cost)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.dumps
    encode = make(
        None, None, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    return lambda value: "".join(encode(value, 0))


json_text = _json_encoder()
"""The same text ``json.dumps`` (and so SQLAlchemy's JSON type) writes, faster."""


def content_hash(values: object) -> str:
    """32 hex characters identifying the normalised values (fits ``source_hash``)."""
    return hashlib.blake2b(repr(values).encode(), digest_size=16).hexdigest()


def row_hasher(hash_key: tuple[Any, ...]) -> Callable[[object], str]:
    """How a row's ``source_hash`` is made: its values and which columns they came from.

    The values alone made ``external_id,name`` / ``L1,Acme`` and then ``external_id,company``
    / ``L1,Acme`` one hash: the second file was "unchanged" and the company never written. The
    columns are hashed once per batch and the state copied per row (rendering them again for
    every row cost 2.4 times the hash).
    """
    seeded = hashlib.blake2b(repr(hash_key).encode(), digest_size=16)

    def row_hash(values: object) -> str:
        state = seeded.copy()
        state.update(repr(values).encode())
        return state.hexdigest()

    return row_hash


Superseded = tuple[int, int, str]
"""A row not written because a later row of the file has its key: (its line, the later row's
line, the key)."""


def latest_per_key(rows: list[Any]) -> tuple[list[Any], list[Superseded]]:
    """Of rows (``(line, key, ...)``, in file order) sharing a key, the last one only, with
    the ones it supersedes: the later row wins, and the earlier is not written first (a
    re-import of the same file would update the key twice and call it changed)."""
    last = {row[1]: index for index, row in enumerate(rows)}
    if len(last) == len(rows):  # the usual batch: every key once
        return rows, []
    kept, superseded = [], []
    for index, row in enumerate(rows):
        latest = last[row[1]]
        if latest == index:
            kept.append(row)
        else:
            superseded.append((row[0], rows[latest][0], row[1]))
    return kept, superseded


class Prepared(NamedTuple):
    """A row ready to write: its values in the order of :attr:`Shape.columns`."""

    line: int
    key: str
    source_hash: str
    values: tuple[Any, ...]


@dataclass
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def add(self, other: Counts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged


class Written(NamedTuple):
    """What one batch's write did: its counts, the ids of the rows it created (a ``range`` on
    SQLite, whose new rows take the ids after the largest) and of those it changed."""

    counts: Counts
    created: Sequence[int]
    changed: Sequence[int]


@dataclass(frozen=True)
class Shape:
    """Which columns a file writes, and what a new row gets for the columns it does not."""

    table: Table
    columns: tuple[str, ...]
    defaults: Mapping[str, Any]
    update_extras: Mapping[str, ColumnElement[Any]] = field(default_factory=dict)
    """Extra SET expressions for updates, e.g. a new ``stage_entered_at`` when stage changes.
    A ``v_NAME`` parameter in one is the row's value of column NAME (written or derived)."""
    derived: tuple[Derived, ...] = ()
    """Columns whose value is read from a written column's, outside the row's hash (a lead's
    ``first_source`` from its attributes): a re-import of rows stored before such a column
    existed finds them unchanged. A new row gets the value; an update only through
    :attr:`update_extras`."""
    hash_key: tuple[Any, ...] = ()
    """What the file's columns are, hashed with each row's values (:func:`row_hash`)."""


class Derived(NamedTuple):
    """Column ``name`` holds ``read`` of the row's value of the written column ``of``."""

    name: str
    of: str
    read: Callable[[Any], Any]


DriverRow = tuple[Any, ...]
"""A row as a new row's INSERT (or COPY) takes it: the shape's columns in the driver's form,
``external_id``, ``source_hash``, the derived columns, then the defaults a new row gets
(:class:`DriverForm`)."""


class DriverForm:
    """The driver's form of one shape's rows on one store: times as SQLite's text (PostgreSQL's
    driver takes them as they are), JSON as its text. Needs no connection, so a reading process
    makes the rows that the writing one passes to the driver untouched."""

    def __init__(self, shape: Shape, dialect: str) -> None:
        self.hash_key = shape.hash_key
        self.width = len(shape.columns)
        """Where the key is in a :data:`DriverRow` (the hash follows it)."""
        sqlite = dialect == "sqlite"
        columns = shape.table.c
        self.converters = [
            (index, convert)
            for index, name in enumerate(shape.columns)
            if (convert := _converter(columns[name].type, sqlite)) is not None
        ]
        self.defaults = tuple(
            value if value is None or convert is None else convert(value)
            for name, value in shape.defaults.items()
            for convert in (_converter(columns[name].type, sqlite),)
        )
        self._readers = [
            (index, _reader(columns[shape.columns[index]].type)) for index, _ in self.converters
        ]
        self.derived = tuple((shape.columns.index(d.of), d.read) for d in shape.derived)
        """(position of the column read, how) of each derived column, in the shape's order."""

    def rows(self, rows: Sequence[Prepared]) -> list[DriverRow]:
        return driver_rows(rows, self.converters, self.defaults, self.derived)

    def hashed_rows(self, checked: Sequence[tuple[int, str, tuple[Any, ...]]]) -> list[DriverRow]:
        """:meth:`rows` of checked rows (line, key, values), each hashed here: a reading
        process's part, without a :class:`Prepared` per row in between."""
        values = [row[2] for row in checked]
        keys = [row[1] for row in checked]
        hashes = map(row_hasher(self.hash_key), values)
        return zipped_rows(values, keys, hashes, self.converters, self.defaults, self.derived)

    def values(self, row: DriverRow) -> tuple[Any, ...]:
        """The row's column values as :attr:`Prepared.values` has them (for an UPDATE, which
        SQLAlchemy converts itself): times and JSON read back from their text."""
        values = list(row[: self.width])
        for index, read in self._readers:
            if values[index] is not None:
                values[index] = read(values[index])
        return tuple(values)


def _converter(column_type: Any, sqlite: bool) -> Callable[[Any], Any] | None:
    if isinstance(column_type, UTCDateTime):
        return sqlite_timestamp if sqlite else None
    if isinstance(column_type, JSON):
        # COPY reads jsonb from its text on PostgreSQL, as SQLite stores the text itself.
        return json_text
    return None


def _reader(column_type: Any) -> Callable[[Any], Any]:
    if isinstance(column_type, UTCDateTime):
        return lambda text: datetime.fromisoformat(text).replace(tzinfo=UTC)
    return json.loads


class TableWriter:
    """Upserts batches into one table by ``external_id``."""

    def __init__(
        self, connection: Connection, shape: Shape, now: datetime, *, only_new: bool = False
    ) -> None:
        """``only_new``: the caller's transaction holds the table, which held no row when it
        took it, and writes each key once (a file's repeated ids are found before its rows
        are written): no key written is stored, and none is looked up. Should one be, the
        insert fails on the unique key (SQLite: the import rolls back) or the copy is merged
        (PostgreSQL), as a key stored since the lookup is."""
        self.shape = shape
        self.now = now
        self.only_new = only_new
        dialect = connection.dialect
        self.form = DriverForm(shape, dialect.name)
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        derived = tuple(d.name for d in shape.derived)
        names = (*shape.columns, "external_id", "source_hash", *derived, *shape.defaults)
        self._insert_sql = (
            f"INSERT INTO {shape.table.name} ({', '.join(names)}) "
            f"VALUES ({', '.join([mark] * len(names))})"
        )
        table = shape.table
        assignments: dict[str, Any] = {name: bindparam(f"v_{name}") for name in shape.columns}
        assignments["source_hash"] = bindparam("v_source_hash")
        if "updated_at" in table.c:
            assignments["updated_at"] = now
        assignments.update(shape.update_extras)
        self._update = update(table).where(table.c.id == bindparam("v_id")).values(assignments)
        self._last_id = f"SELECT max(id) FROM {table.name}"
        self._copy: _CopyMerge | None = None
        if dialect.name == "postgresql":
            self._copy = _CopyMerge(shape, now, self.form, only_new)

    def write(self, connection: Connection, rows: Sequence[Prepared]) -> Written:
        """Write ``rows`` (unique keys) in the caller's transaction."""
        return self.write_driver_rows(connection, self.form.rows(rows))

    def write_driver_rows(self, connection: Connection, rows: Sequence[DriverRow]) -> Written:
        """:meth:`write` of rows already in the driver's form (made by :attr:`form`)."""
        if self._copy is not None:
            return self._copy.write(connection, rows)
        at = self.form.width
        keys = () if self.only_new else [row[at] for row in rows]
        stored = existing_rows(connection, self.shape.table, keys)
        fresh: list[DriverRow] = []
        changed: list[dict[str, Any]] = []
        counts = Counts()
        for row in rows:
            found = stored.get(row[at])
            if found is None:
                fresh.append(row)
            elif found[1] == row[at + 1]:
                counts.unchanged += 1
            else:
                changed.append(self._update_values(row, found[0]))
        created: Sequence[int] = ()
        if fresh:
            # The writing transaction holds SQLite's write lock, so the rows after the largest
            # id before the insert are this batch's own.
            last = connection.exec_driver_sql(self._last_id).scalar() or 0
            connection.exec_driver_sql(self._insert_sql, fresh)
            created = range(last + 1, connection.exec_driver_sql(self._last_id).scalar_one() + 1)
        if changed:
            connection.execute(self._update, changed)
        counts.inserted = len(fresh)
        counts.updated = len(changed)
        return Written(counts, created, [params["v_id"] for params in changed])

    def _update_values(self, row: DriverRow, row_id: int) -> dict[str, Any]:
        values = self.form.values(row)
        params = {
            f"v_{name}": value for name, value in zip(self.shape.columns, values, strict=True)
        }
        params["v_source_hash"] = row[self.form.width + 1]
        for offset, derived in enumerate(self.shape.derived, start=self.form.width + 2):
            params[f"v_{derived.name}"] = row[offset]
        params["v_id"] = row_id
        return params


class _CopyMerge:
    """PostgreSQL: COPY a batch of new rows into the table, or into a staging table to merge.

    A batch none of whose keys is stored (the bulk of a first import) is copied straight into
    the table with the defaults a new row gets, under a savepoint: should another transaction
    have stored one of its keys since the check, the copy is undone and the batch merged.

    Otherwise the batch goes through a staging table: temporary, with the target's column types
    (so COPY reads each value as an INSERT would) and no index; it is created on a batch's first
    write in its transaction and dropped at commit (a strict import's one transaction empties
    it between batches). The merge inserts the new rows with the defaults a new row gets and
    updates the changed ones as the UPDATE of the SQLite path does (``source_hash``,
    ``updated_at``, the shape's extra SET expressions), all in one statement; an unchanged row
    (the stored ``source_hash`` is the row's) is not written.
    """

    def __init__(
        self, shape: Shape, now: datetime, form: DriverForm, only_new: bool = False
    ) -> None:
        table = shape.table
        self.only_new = only_new
        derived = (d.name for d in shape.derived)
        self.names = (*shape.columns, "external_id", "source_hash", *derived)
        """The staged columns: a row's values up to its defaults."""
        self._form = form
        self._copy_new_sql = (
            f"COPY {table.name} ({', '.join((*self.names, *shape.defaults, 'id'))}) FROM STDIN"
        )
        # The new rows' ids, taken from the table's own sequence before the copy (as its
        # default would take them), so that no query finds them again by key after it.
        self._new_ids = (
            f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id'))"
            " FROM generate_series(1, %(rows)s)"
        )
        self._any_stored = (
            f"SELECT EXISTS (SELECT FROM {table.name} WHERE external_id = ANY(%(keys)s::text[]))"
        )
        self.staging = f"leadflow_import_{table.name}"
        staged = Table(self.staging, MetaData(), *(Column(n, table.c[n].type) for n in self.names))
        self._create = (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.staging} ON COMMIT DROP AS "
            f"SELECT {', '.join(self.names)} FROM {table.name} WITH NO DATA"
        )
        self._copy_sql = f"COPY {self.staging} ({', '.join(self.names)}) FROM STDIN"
        defaults = [
            literal(value, type_=table.c[name].type).label(name)
            for name, value in shape.defaults.items()
        ]
        stored_hash = (
            select(table.c.source_hash)
            .where(table.c.external_id == staged.c.external_id)
            .scalar_subquery()
        )
        # Unchanged rows are left out before ON CONFLICT sees them: its WHERE would refuse to
        # update them, but only after locking each one, which writes to every such row's page.
        # Each stored row is found by a correlated subquery, i.e. one probe of the external_id
        # index per staged row: a join let the planner, whose statistics of a table being
        # filled lag far behind, scan the whole table for every batch.
        insert = postgresql.insert(table).from_select(
            [*self.names, *shape.defaults],
            select(*(staged.c[n] for n in self.names), *defaults)
            .where(stored_hash.is_distinct_from(staged.c.source_hash))
            # Locks taken in key order (_by_key): a scan of the staging table is in the
            # copied order as a rule, not by promise.
            .order_by(staged.c.external_id),
        )
        excluded = insert.excluded
        assignments: dict[str, Any] = {name: excluded[name] for name in shape.columns}
        assignments["source_hash"] = excluded.source_hash
        if "updated_at" in table.c:
            assignments["updated_at"] = now
        for name, expression in shape.update_extras.items():
            assignments[name] = _incoming(expression, excluded)
        # A row the statement inserted has no locking transaction (xmax 0); one it updated
        # has this one's: the merge tells which it created, in the same pass.
        self._merge = insert.on_conflict_do_update(
            index_elements=[table.c.external_id],
            set_=assignments,
            where=table.c.source_hash.is_distinct_from(excluded.source_hash),
        ).returning(table.c.id, literal_column(f"{table.name}.xmax = 0"))

    def write(self, connection: Connection, rows: Sequence[DriverRow]) -> Written:
        if not rows:
            return Written(Counts(), (), ())
        at = self._form.width
        if self.only_new or not self._any_stored_of(connection, [row[at] for row in rows]):
            copied = self._copy_new(connection, rows)
            if copied is not None:
                return copied
        connection.exec_driver_sql(self._create)
        connection.exec_driver_sql(f"TRUNCATE {self.staging}")
        # The staging table has the columns without the defaults.
        staged = len(self.names)
        _copy(connection, self._copy_sql, (row[:staged] for row in _by_key(rows, at)))
        created: list[int] = []
        changed: list[int] = []
        for row_id, inserted in connection.execute(self._merge):
            (created if inserted else changed).append(row_id)
        unchanged = len(rows) - len(created) - len(changed)
        return Written(Counts(len(created), len(changed), unchanged), created, changed)

    def _any_stored_of(self, connection: Connection, keys: list[str]) -> bool:
        return bool(
            connection.exec_driver_sql(self._any_stored, {"keys": text_array(keys)}).scalar()
        )

    def _copy_new(self, connection: Connection, rows: Sequence[DriverRow]) -> Written | None:
        """Copy ``rows`` (none of them stored at the check) straight in; None if one was since."""
        created = connection.exec_driver_sql(self._new_ids, {"rows": len(rows)}).scalars().all()
        # The ids in the rows' own order (a file's new leads numbered as its lines are), the
        # rows copied in key order (_by_key).
        numbered = _by_key(list(map(_with_id, rows, created)), self._form.width)
        try:
            with connection.begin_nested():  # any error undoes the copy, and only the copy
                _copy(connection, self._copy_new_sql, numbered)
        except IntegrityError:
            return None  # the ids taken are skipped, as a failed INSERT's are
        return Written(Counts(inserted=len(rows)), created, ())


def _by_key(rows: Sequence[DriverRow], at: int) -> list[DriverRow]:
    """``rows`` in key order (the key at ``at``), whatever order the file or the body gave:
    two transactions writing overlapping keys then lock them in the same order, and one waits
    for the other, where in their own orders each could hold a key the other waits for
    (PostgreSQL's deadlock detector then aborts one of them)."""
    return sorted(rows, key=itemgetter(at))


def _with_id(row: DriverRow, row_id: int) -> DriverRow:
    return (*row, row_id)


def driver_rows(
    rows: Sequence[Prepared],
    converters: Sequence[tuple[int, Callable[[Any], Any]]],
    defaults: tuple[Any, ...],
    derived: Sequence[tuple[int, Callable[[Any], Any]]] = (),
) -> list[DriverRow]:
    """Each row's values in the driver's form, then its key, hash, derived values and
    ``defaults``."""
    values = [row.values for row in rows]
    keys = [row.key for row in rows]
    hashes = [row.source_hash for row in rows]
    return zipped_rows(values, keys, hashes, converters, defaults, derived)


def zipped_rows(
    values: Sequence[tuple[Any, ...]],
    keys: Iterable[str],
    hashes: Iterable[str],
    converters: Sequence[tuple[int, Callable[[Any], Any]]],
    defaults: tuple[Any, ...],
    derived: Sequence[tuple[int, Callable[[Any], Any]]] = (),
) -> list[DriverRow]:
    """:func:`driver_rows` from its parts, built column by column: the per-row loop converting
    two of a dozen values (times, JSON) cost more than the conversions themselves."""
    if not values:
        return []
    columns: list[Iterable[Any]] = list(zip(*values, strict=True))
    # Read from the values as checked, before the driver's form turns JSON into its text.
    extra = [[read(value) for value in columns[index]] for index, read in derived]
    for index, convert in converters:
        columns[index] = [None if value is None else convert(value) for value in columns[index]]
    repeated = (repeat(value) for value in defaults)
    return list(zip(*columns, keys, hashes, *extra, *repeated, strict=False))  # defaults repeat


def _copy(connection: Connection, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
    """``COPY ... FROM STDIN`` of ``rows``, its errors raised as SQLAlchemy raises a statement's
    (callers catch DataError and its kin)."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
    except Exception as exc:
        error = type(exc)
        dbapi = connection.dialect.loaded_dbapi
        if not issubclass(error, dbapi.Error):
            raise
        raise DBAPIError.instance(sql, None, exc, dbapi.Error) from exc
    finally:
        cursor.close()


def _incoming(expression: ColumnElement[Any], excluded: Any) -> ColumnElement[Any]:
    """``expression`` with each ``v_NAME`` parameter (a row's value) read from ``excluded``."""

    def replace(element: Any, **_kw: Any) -> Any:
        if isinstance(element, BindParameter) and element.key.startswith("v_"):
            return excluded[element.key[2:]]
        return None

    return visitors.replacement_traverse(expression, {}, replace)  # type: ignore[no-any-return]
