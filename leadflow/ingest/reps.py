"""Importing reps: ids and emails made from names, and managers linked after the last batch.

A manager may be named on a line before its own row, or not be in the file at all (in the
Maven export the managers are not agents). So the file is surveyed first; managers are linked
once every rep of the file is stored. A manager referenced by name who is neither in the file
nor in the store is created from the name, with the email ``import.mappings.reps.email_pattern``
makes; without a pattern such a row is rejected.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Connection, insert, or_, update

from leadflow.errors import ImportFileError, ImportRowError
from leadflow.ingest.column_plan import ColumnPlan
from leadflow.ingest.kind_writer import (
    KEY_LENGTH,
    Convert,
    KindWriter,
    Record,
    Rejection,
    required,
)
from leadflow.ingest.names import quoted
from leadflow.ingest.references import RepDirectory, rep_key
from leadflow.ingest.writers import Counts, Prepared, row_hasher
from leadflow.settings import Settings
from leadflow.store.email_addresses import address_problem, sending_problem
from leadflow.store.tables import REPS

PLACEHOLDERS = ("first", "last", "name")


def name_words(name: str) -> list[str]:
    """``Mei-Mei Johns`` -> ``["mei-mei", "johns"]``: ASCII, lower case, for ids and emails."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    words = (re.sub(r"[^a-z0-9-]", "", word) for word in ascii_name.lower().split())
    return [word for word in words if word]


def rep_id_from_name(name: str) -> str:
    """The external id of a rep known only by name: ``Dustin Brinkmann`` -> ``dustin-brinkmann``."""
    return "-".join(name_words(name))


def email_from_pattern(pattern: str, name: str) -> str:
    words = name_words(name) or ["rep"]
    return pattern.format(first=words[0], last=words[-1], name=".".join(words))


def _capacity(value: int | None) -> int | None:
    """The most open MQLs the rep may own; empty for no limit. A negative one was stored and
    read as "takes none", which a 0 says."""
    if value is not None and value < 0:
        reason = (
            f"must be 0 or more (the most open MQLs the rep may own; empty for no limit), "
            f"got {value}"
        )
        raise ImportRowError("capacity", reason)
    return value


class RepWriter(KindWriter):
    kind = "reps"
    table = REPS
    columns: ClassVar[Mapping[str, str]] = {
        "name": "name",
        "email": "email",
        "pools": "pools",
        "capacity": "capacity",
        "active": "active",
        "timezone": "timezone",
    }

    def __init__(self, plan: ColumnPlan, settings: Settings, now: datetime, reps: RepDirectory):
        super().__init__(plan, settings, now, reps)
        # email is always written: from its column, or made by the pattern.
        self.fields = tuple(sorted({*self.fields, "email"}))
        self._converts = self._conversions()
        self.pattern = self.mapping.email_pattern
        if self.pattern is not None:
            _check_pattern(self.pattern)
        self.links_managers = "manager" in plan.fields
        self.in_file: set[str] = set()
        self.pending: list[tuple[int, str, str | None]] = []

    key_fields = frozenset({"external_id", "name"})  # an id made from the name without one

    def defaults(self) -> dict[str, Any]:
        return {**super().defaults(), "pools": [], "active": True, "timezone": "UTC"}

    def convert(self, field: str) -> Convert:
        if field == "name":
            return required("name")
        if field in {"pools"}:
            return lambda value: value or []
        if field == "active":
            return lambda value: True if value is None else value
        if field == "timezone":
            return lambda value: value or "UTC"
        if field == "capacity":
            return _capacity
        return super().convert(field)

    def key(self, record: Record) -> str:
        if record.get("external_id") is not None:
            return super().key(record)
        name = record.get("name")
        made = rep_id_from_name(name) if name is not None else ""
        if not made:
            raise ImportRowError("name", "missing; a rep without an external_id needs a name")
        if len(made) > KEY_LENGTH:
            reason = (
                f"the external id made from it is longer than {KEY_LENGTH} characters "
                f"({len(made)}); shorten it, or add an external_id column"
            )
            raise ImportRowError("name", reason)
        return made

    def survey(self, records: Iterable[Record]) -> None:
        """Remember how the file's reps can be referenced, so a manager may come later."""
        for record in records:
            try:
                reference = self._reference_of(self.key(record), self._filled(record))
            except ImportRowError:
                continue
            if reference:
                self.in_file.add(rep_key(self.reps.reference, reference))

    def prepare(
        self, connection: Connection, batch: list[tuple[int, str, Record]]
    ) -> tuple[list[Prepared], list[Rejection]]:
        prepared: list[Prepared] = []
        rejected: list[Rejection] = []
        row_hash = row_hasher(self.hash_key)
        for line, key, record in batch:
            try:
                manager, values = self._checked(key, record)
            except ImportRowError as exc:
                rejected.append((line, exc))
                continue
            # The manager is linked later, but a changed manager is a changed row.
            prepared.append(Prepared(line, key, row_hash((values, manager)), values))
            if self.links_managers:
                self.pending.append((line, key, manager))
        return prepared, rejected

    def _checked(self, key: str, record: Record) -> tuple[str | None, tuple[Any, ...]]:
        """The row's manager and its values (its email filled in); or one error naming every bad
        field: a missing email or an unknown manager does not hide the row's other problems."""
        found: list[ImportRowError] = []
        try:
            filled = self._filled(record)
        except ImportRowError as exc:
            found.append(exc)
            filled = record
        manager = filled.get("manager")
        try:
            self._check_manager(key, manager, filled)
        except ImportRowError as exc:
            found.append(exc)
        if found:
            raise self.every_problem(found, filled)
        return manager, self.values(filled)

    def accepted(
        self, connection: Connection, batch: list[tuple[int, str, Record]]
    ) -> list[tuple[int, str]]:
        # prepare() queues each row's manager for finish(); a check of the rows links none.
        queued = len(self.pending)
        try:
            return super().accepted(connection, batch)
        finally:
            del self.pending[queued:]

    def _filled(self, record: Record) -> Record:
        if record.get("email") is not None or self.pattern is None:
            if record.get("email") is None:
                raise ImportRowError(
                    "email", "missing; add it, or set import.mappings.reps.email_pattern"
                )
            return record
        name = record.get("name")
        if name is None:
            raise ImportRowError("name", "missing")
        return {**record, "email": _pattern_email(self.pattern, name, "name")}

    def _reference_of(self, key: str, record: Record) -> str | None:
        reference = self.reps.reference
        if reference == "external_id":
            return key
        value = record.get(reference)
        return None if value is None else str(value)

    def _check_manager(self, key: str, manager: str | None, record: Record) -> None:
        if manager is None:
            return
        reference = self.reps.reference
        if rep_key(reference, manager) == rep_key(reference, self._reference_of(key, record) or ""):
            raise ImportRowError(
                "manager", f"{quoted(manager)} is this rep; a rep cannot manage themself"
            )
        if manager in self.reps or rep_key(reference, manager) in self.in_file:
            return
        if reference == "name" and self.pattern is not None:
            _pattern_email(self.pattern, manager, "manager")  # the one it will be created with
            return  # created from the name when managers are linked
        hint = (
            "; to create managers known only by name, set import.mappings.reps.email_pattern"
            if reference == "name"
            else ""
        )
        raise ImportRowError(
            "manager", f"no rep with {reference.replace('_', ' ')} {quoted(manager)}{hint}"
        )

    def finish(self, connection: Connection) -> tuple[Counts, list[Rejection]]:
        """Create the managers known only by name, then link every rep to its manager."""
        counts = Counts()
        if not self.pending:
            return counts, []
        directory = RepDirectory.load(connection, self.reps.reference)
        for _line, _key, manager in self.pending:
            if manager is not None and manager not in directory:
                directory.add(manager, self._create_manager(connection, manager))
                counts.inserted += 1
        reps = self.table
        for _line, key, manager in self.pending:
            manager_id = directory.resolve("manager", manager)
            connection.execute(
                update(reps)
                .where(
                    reps.c.external_id == key,
                    or_(reps.c.manager_id.is_(None), reps.c.manager_id != manager_id)
                    if manager_id is not None
                    else reps.c.manager_id.is_not(None),
                )
                .values(manager_id=manager_id)
            )
        self.pending.clear()
        return counts, []

    def _create_manager(self, connection: Connection, name: str) -> int:
        assert self.pattern is not None  # checked when the row was prepared
        created = connection.execute(
            insert(self.table)
            .values(
                external_id=rep_id_from_name(name),
                name=name.strip(),
                email=email_from_pattern(self.pattern, name),
                pools=[],
                active=True,
                timezone="UTC",
                created_at=self.now,
                updated_at=self.now,
            )
            .returning(self.table.c.id)
        )
        return int(created.scalar_one())


def _pattern_email(pattern: str, name: str, field: str) -> str:
    """The email ``pattern`` makes of ``name``; a rejection of ``field`` unless one address."""
    made = email_from_pattern(pattern, name)
    problem = address_problem(made) or sending_problem(made)
    if problem is not None:
        reason = (
            f"import.mappings.reps.email_pattern makes {made!r} of it, not one email address "
            f"({problem}); add an email column, or change the pattern"
        )
        raise ImportRowError(field, reason)
    return made


def _check_pattern(pattern: str) -> None:
    try:
        example = email_from_pattern(pattern, "Ada Lovelace")
    except (KeyError, IndexError, ValueError) as exc:
        msg = (
            f"import.mappings.reps.email_pattern: {pattern!r} cannot be filled ({exc}); "
            "use the placeholders {first}, {last} and {name}, e.g. '{first}.{last}@example.com'"
        )
        raise ImportFileError(msg) from None
    # What the sender would refuse too (a non-ASCII part before the @-sign).
    problem = address_problem(example) or sending_problem(example)
    if problem is not None:
        msg = (
            f"import.mappings.reps.email_pattern: {pattern!r} makes {example!r}, not one email "
            f"address ({problem}); write it as one address, e.g. '{{first}}.{{last}}@example.com'"
        )
        raise ImportFileError(msg)
