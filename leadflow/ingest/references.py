"""Turning the references in a row (a rep by name, a lead by external id) into row ids."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from typing import Any, Literal

from sqlalchemy import Connection, Table, select

from leadflow.errors import ImportRowError
from leadflow.ingest.names import quoted
from leadflow.store.id_ranges import chunks, text_array
from leadflow.store.tables import REPS

RepReference = Literal["external_id", "name", "email"]
_LOOKUP_CHUNK = 5000


def rep_key(reference: RepReference, value: str) -> str:
    """The comparable form of a rep reference: names and emails ignore case."""
    return value if reference == "external_id" else value.strip().casefold()


class RepDirectory:
    """Every rep's id by the reference the mapping uses; reps are few, so it stays in memory."""

    def __init__(self, reference: RepReference, pairs: Iterable[tuple[str, int]] = ()) -> None:
        self.reference = reference
        self._ids: dict[str, set[int]] = defaultdict(set)
        self._by_email: dict[str, set[int]] = defaultdict(set)
        for value, rep_id in pairs:
            self.add(value, rep_id)

    @classmethod
    def load(cls, connection: Connection, reference: RepReference) -> RepDirectory:
        table = REPS
        rows = connection.execute(select(table.c[reference], table.c.email, table.c.id))
        directory = cls(reference)
        for value, email, rep_id in rows:
            directory.add(str(value), int(rep_id))
            if reference == "name" and email:
                directory._by_email[rep_key("email", str(email))].add(int(rep_id))
        return directory

    def add(self, value: str, rep_id: int) -> None:
        self._ids[rep_key(self.reference, value)].add(rep_id)

    def __contains__(self, value: str) -> bool:
        return rep_key(self.reference, value) in self._ids

    def resolve(self, field: str, value: str | None) -> int | None:
        """The id of the rep ``value`` names; :class:`ImportRowError` if none or several."""
        if value is None:
            return None
        found = self._ids.get(rep_key(self.reference, value))
        if not found and "@" in value:
            # A CRM's owner column names most reps but writes some as their login email
            # (HubSpot's "Contact owner" for a user without a name); no name holds an @.
            found = self._by_email.get(rep_key("email", value))
        if not found:
            reason = f"no rep with {self.reference.replace('_', ' ')} {quoted(value)}"
            raise ImportRowError(field, f"{reason}; import the reps first")
        if len(found) > 1:
            reason = (
                f"{len(found)} reps have the {self.reference.replace('_', ' ')} {quoted(value)}; "
                "reference reps by external_id or email (import.mappings.KIND.rep_reference)"
            )
            raise ImportRowError(field, reason)
        return next(iter(found))


def existing_rows(
    connection: Connection, table: Table, keys: Collection[str]
) -> dict[str, tuple[int, str | None]]:
    """``external_id -> (id, source_hash)`` for those of ``keys`` already stored."""
    found: dict[str, tuple[int, str | None]] = {}
    columns = f"SELECT external_id, id, source_hash FROM {table.name}"
    for external_id, row_id, source_hash in rows_of_keys(connection, columns, keys):
        found[external_id] = (row_id, source_hash)
    return found


def rows_of_keys(
    connection: Connection,
    select_from: str,
    keys: Collection[str],
    where: str = "",
    key: str = "external_id",
) -> Iterator[tuple[Any, ...]]:
    """The rows of ``select_from`` (``SELECT ... FROM table``, ``where`` an extra condition
    joined by AND) whose ``key`` column is one of ``keys``, a few thousand keys a statement.

    In the driver's own SQL: built by SQLAlchemy, each of a large import's keys became a
    parameter object compiled into the statement, a tenth of the write's time. PostgreSQL
    takes the keys as one array, SQLite as one parameter each."""
    condition = f"{select_from} WHERE {where + ' AND ' if where else ''}{key}"
    for chunk in chunks(list(keys), _LOOKUP_CHUNK):
        if connection.dialect.name == "postgresql":
            rows = connection.exec_driver_sql(
                f"{condition} = ANY(%(keys)s::text[])", {"keys": text_array(chunk)}
            )
        else:
            marks = ", ".join("?" * len(chunk))
            rows = connection.exec_driver_sql(f"{condition} IN ({marks})", tuple(chunk))
        yield from (tuple(row) for row in rows.all())


def ids_by_external_id(
    connection: Connection, table: Table, keys: Collection[str]
) -> dict[str, int]:
    """``external_id -> id`` for those of ``keys`` that exist."""
    return {key: row_id for key, (row_id, _hash) in existing_rows(connection, table, keys).items()}
