"""Upserting records posted over HTTP with the import's own mapping, parsing and writers.

A request body is treated like a small JSONL file whose lines are the posted objects: its keys
are planned by :func:`~leadflow.ingest.mapping.compile_plan` (``import.mappings`` apply; an
unknown key rejects each record holding it, at its index), each object is read by the same
:class:`ColumnPlan`, and rows are written by the import's kind writers and :class:`TableWriter`
(upsert by external id, unchanged rows not written). Unlike a file import, a request is all or
nothing: any bad record rejects the whole request with every problem found, and nothing is
written. The request-schema problems :func:`~leadflow.http.posted.read_body` found are listed
with the import's, record by record; a field they name is not named again by the import.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError

from leadflow.errors import FieldError, ImportRowError, ProblemsError, RecordsRejectedError
from leadflow.http.posted import Posted
from leadflow.ingest.column_plan import ColumnPlan
from leadflow.ingest.kind_writer import KindWriter, Record, Rejection
from leadflow.ingest.mapping import compile_plan, missing_columns, unknown_columns
from leadflow.ingest.references import RepDirectory
from leadflow.ingest.reps import RepWriter
from leadflow.ingest.runner import WRITERS
from leadflow.ingest.writers import Counts, Prepared, TableWriter, latest_per_key
from leadflow.rule_language.model import RuleSet
from leadflow.scoring.ownership import posted_score
from leadflow.settings import ImportKind, ImportMapping, Settings
from leadflow.store.conflicts import retrying_conflicts
from leadflow.store.database import transaction

Loc = tuple[str | int, ...]
_QUOTED = re.compile(r"'([^']*)'")
_MISSING = re.compile(r"missing required column (\S+)")


@dataclass(frozen=True)
class UpsertResult:
    kind: ImportKind
    received: int
    counts: Counts
    keys: tuple[str, ...] = ()
    """The external ids of the records written (each once)."""
    warnings: tuple[dict[str, Any], ...] = ()
    """Fields taken as not posted, each ``{"field", "msg"}`` (a lead's ``score`` while the
    scoring model is enabled), then values written otherwise than posted, each ``{"loc",
    "field", "msg"}`` (a lead's ``unsubscribed: false`` while it stays unsubscribed)."""
    superseded: int = 0
    """Records not written because a later one of the body has their external id."""

    def as_json(self) -> dict[str, Any]:
        c = self.counts
        found: dict[str, Any] = {
            "kind": self.kind,
            "received": self.received,
            "inserted": c.inserted,
            "updated": c.updated,
            "unchanged": c.unchanged,
        }
        if self.superseded:  # as a file's summary says it: only when some were
            found["superseded"] = self.superseded
        if self.warnings:
            found["warnings"] = list(self.warnings)
        return found


def upsert_records(
    engine: Engine,
    settings: Settings,
    kind: ImportKind,
    posted: Posted,
    *,
    now: datetime,
    rule_set: RuleSet | None = None,
) -> UpsertResult:
    """Write the ``posted`` records in one transaction, or raise :class:`RecordsRejectedError`
    naming their request-schema problems and the import's, record by record.

    Records with a request-schema problem are read and checked all the same (what of them could
    be read), and nothing is written. A concurrent insert of the same external id is retried
    once; a transaction PostgreSQL aborted as a deadlock or a serialization failure is run
    again a few times (:func:`~leadflow.store.conflicts.retrying_conflicts`). A lead's
    ``score`` is ignored, with a warning, while ``rule_set``'s scoring model is enabled.
    """
    items = posted.items
    locate = _Locator(posted)
    if not items:
        raise RecordsRejectedError(list(posted.problems))
    header = locate.header
    # An unknown key rejects the records holding it, each at its own index, and the records
    # are still read: the 422 names every bad field of every record at once.
    unknown, unnamed = unknown_columns(kind, header, settings)
    refused = [*posted.problems, *locate.unknown(unknown, unnamed)]
    known = tuple(key for key in header if key not in unknown)
    try:
        plan = compile_plan(kind, known, settings, "body", required=False)
    except ProblemsError as exc:
        located = [locate.header_problem(p.message) for p in exc.problems]
        raise RecordsRejectedError(locate.in_order(refused + located)) from None
    missing = missing_columns(kind, plan, settings)
    if missing:
        # No record has the column: each lacks it. Their values are still read.
        refused += locate.missing(missing)
        refused += _read(plan, None, items, locate)[1]
        raise RecordsRejectedError(locate.in_order(refused))
    warnings: tuple[dict[str, Any], ...] = ()
    if kind == "leads":
        decided = posted_score(plan, rule_set)
        plan = decided.plan
        if decided.note is not None:
            warnings = ({"field": "score", "msg": decided.note},)

    def write() -> UpsertResult:
        try:
            return _write_all(engine, settings, kind, plan, items, now, locate, refused)
        except IntegrityError:
            return _write_all(engine, settings, kind, plan, items, now, locate, refused)

    result = retrying_conflicts(write)
    return dataclasses.replace(result, warnings=(*warnings, *result.warnings))


def _write_all(
    engine: Engine,
    settings: Settings,
    kind: ImportKind,
    plan: ColumnPlan,
    items: Sequence[Mapping[str, Any]],
    now: datetime,
    locate: _Locator,
    refused: Sequence[FieldError],
) -> UpsertResult:
    """``refused``: the records' unknown keys, rejected with whatever else they hold."""
    mapping = settings.imports.mappings.get(kind, ImportMapping())
    counts = Counts()
    superseded = 0
    noted: tuple[dict[str, Any], ...] = ()
    with transaction(engine) as session:
        connection = session.connection()
        reps = RepDirectory.load(connection, mapping.rep_reference)
        writer = WRITERS[kind](plan, settings, now, reps)
        records, errors = _read(plan, writer, items, locate)
        errors = [*refused, *errors]
        if isinstance(writer, RepWriter):
            writer.survey(record for _index, _key, record in records)
        table_writer = TableWriter(connection, writer.shape(), now)
        prepared, rejected = writer.prepare(connection, records)
        errors += locate.rejected(rejected, plan)
        if not errors:
            # A key posted twice: the later record wins and the earlier is not written, as in
            # a file (docs/import.md).
            latest, replaced = latest_per_key(prepared)
            superseded = len(replaced)
            counts.add(_write(connection, table_writer, writer, latest, locate))
            noted = tuple(
                locate.note(index, field, reason, plan) for index, field, reason in writer.notes
            )
        extra, rejected = writer.finish(connection) if not errors else (Counts(), [])
        errors += locate.rejected(rejected, plan)
        if errors:
            raise RecordsRejectedError(locate.in_order(errors))
        counts.add(extra)
    keys = tuple(dict.fromkeys(key for _index, key, _record in records))
    return UpsertResult(kind, len(items), counts, keys, noted, superseded)


def _read(
    plan: ColumnPlan,
    writer: KindWriter | None,
    items: Sequence[Mapping[str, Any]],
    locate: _Locator,
) -> tuple[list[tuple[int, str, Record]], list[FieldError]]:
    """The records read, with their keys; ``writer`` None: only their values are checked."""
    records: list[tuple[int, str, Record]] = []
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        cells = [item.get(name) for name in plan.header]
        try:
            record = plan.read(cells)
            if writer is None:
                continue
            key = writer.key(record)
        except ImportRowError as exc:
            errors += locate.rejected([(index, exc)], plan)
            continue
        except (ValueError, ArithmeticError, TypeError) as exc:  # e.g. a year-1 time in +05:00
            errors.append(FieldError(locate.at(index), f"cannot read the record: {exc}"))
            continue
        records.append((index, key, record))
    return records, errors


def _write(
    connection: Connection,
    table_writer: TableWriter,
    writer: KindWriter,
    prepared: list[Prepared],
    locate: _Locator,
) -> Counts:
    if not prepared:
        return Counts()
    try:
        with connection.begin_nested():
            prepared = writer.before_write(connection, prepared)
            written = table_writer.write(connection, prepared)
            writer.after_write(connection, prepared, written)
    except DataError as exc:
        reason = str(exc.orig or exc).splitlines()[0]
        raise RecordsRejectedError(
            [FieldError(("body",), f"the store refused: {reason}")]
        ) from None
    return written.counts


class _Locator:
    """Error locations: ``["body", field]`` for one object, ``["body", index, field]`` in a list,
    ``index`` the record's in the body (the records read are those :class:`Posted` kept)."""

    def __init__(self, posted: Posted) -> None:
        self.batch = posted.batch
        self.items = posted.items
        self.indices = posted.indices
        self.prior = set(posted.problems)
        self.named = {_field_of(e.loc, batch=self.batch) for e in posted.problems} - {None}
        """The records' fields a request-schema problem named: the import does not again."""
        first_seen: dict[str, int] = {}
        for index, item in enumerate(self.items):
            for key in item:
                first_seen.setdefault(key, index)
        self.first_seen = first_seen
        self.header = tuple(first_seen)
        """The keys of all records, in the order first seen: the body's columns."""

    def at(self, index: int) -> Loc:
        return ("body", self.indices[index]) if self.batch else ("body",)

    def in_order(self, errors: Sequence[FieldError]) -> list[FieldError]:
        """Record by record (each record's own in the order found); the body's last. A field
        a request-schema problem named is not named again (left out, it reads as missing)."""
        errors = [
            e
            for e in errors
            if e in self.prior or _field_of(e.loc, batch=self.batch) not in self.named
        ]
        if not self.batch:
            return errors
        last = max(self.indices, default=0) + 1
        return sorted(errors, key=lambda e: e.loc[1] if len(e.loc) > 1 else last)

    def rejected(self, rejections: Sequence[Rejection], plan: ColumnPlan) -> list[FieldError]:
        """Each rejected record's bad fields, one error each (:meth:`ImportRowError.each`, as
        a file's rejected row is reported): read, prepared or finished alike."""
        return [
            self._field(index, error, plan) for index, exc in rejections for error in exc.each()
        ]

    def _field(self, index: int, exc: ImportRowError, plan: ColumnPlan) -> FieldError:
        return FieldError((*self.at(index), _posted_name(exc.field, plan)), exc.reason)

    def note(self, index: int, field: str, reason: str, plan: ColumnPlan) -> dict[str, Any]:
        """A record written otherwise than posted, located as its error would be."""
        posted = _posted_name(field, plan)
        return {"loc": [*self.at(index), posted], "field": posted, "msg": reason}

    def unknown(
        self, unknown: Mapping[str, str | None], unnamed: Sequence[str]
    ) -> list[FieldError]:
        """Each unknown key named, at each record holding it; those not named, counted once."""
        errors = []
        if unknown:
            for index, item in enumerate(self.items):
                for key in item:
                    message = unknown.get(key)
                    if message is not None:
                        errors.append(
                            FieldError((*self.at(index), key), message, "extra_forbidden")
                        )
        return errors + [FieldError(("body",), m, "extra_forbidden") for m in unnamed]

    def missing(self, messages: Sequence[str]) -> list[FieldError]:
        """A required column no record has, at each record (each lacks it)."""
        located = []
        for message in messages:
            found = _MISSING.search(message)
            field = found.group(1) if found else None
            located.append((field, message))
        return [
            FieldError((*self.at(index), field) if field else self.at(index), message, "missing")
            for index in range(len(self.items))
            for field, message in located
        ]

    def header_problem(self, message: str) -> FieldError:
        """A plan problem (two keys setting one field, a mapped key's target) located at the
        first record holding the key it names that was seen last: the record that disagrees
        with those before it, at the key that record holds."""
        named = [name for name in _QUOTED.findall(message) if name in self.first_seen]
        if not named:
            return FieldError(self.at(0), message)
        index = max(self.first_seen[name] for name in named)
        held = [name for name in named if name in self.items[index]]
        return FieldError((*self.at(index), (held or named)[0]), message)


def _field_of(loc: Loc, *, batch: bool) -> Loc | None:
    """``(index, field)`` in a list, ``(field,)`` for one object; None: not at a field."""
    place = loc[1:3] if batch else loc[1:2]
    return place if len(place) == (2 if batch else 1) else None


def _posted_name(field: str, plan: ColumnPlan) -> str:
    """The key the client posted for ``field`` (a mapped name such as ``Account``)."""
    for target in plan.targets:
        if target.field == field or (target.group and f"{target.group}.{target.name}" == field):
            return plan.column_name(target.index)
    return field
