"""Upserting records posted over HTTP with the import's own mapping, parsing and writers.

A request body is treated like a small JSONL file whose lines are the posted objects: its keys
are planned by :func:`~leadflow.ingest.mapping.compile_plan` (``import.mappings`` apply, unknown
keys are rejected), each object is read by the same :class:`ColumnPlan`, and rows are written by
the import's kind writers and :class:`TableWriter` (upsert by external id, unchanged rows not
written). Unlike a file import, a request is all or nothing: any bad record rejects the whole
request with every problem found, and nothing is written.
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
from leadflow.ingest.column_plan import ColumnPlan
from leadflow.ingest.kind_writer import KindWriter, Record, Rejection
from leadflow.ingest.mapping import compile_plan
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
    items: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    batch: bool,
    rule_set: RuleSet | None = None,
) -> UpsertResult:
    """Write ``items`` in one transaction, or raise :class:`RecordsRejectedError`.

    ``batch`` says whether the body was a list: it decides whether error locations carry the
    record's index. A concurrent insert of the same external id is retried once; a transaction
    PostgreSQL aborted as a deadlock or a serialization failure is run again a few times
    (:func:`~leadflow.store.conflicts.retrying_conflicts`). A lead's
    ``score`` is ignored, with a warning, while ``rule_set``'s scoring model is enabled.
    """
    locate = _Locator(batch)
    header = _header(items)
    try:
        plan = compile_plan(kind, header, settings, "body")
    except ProblemsError as exc:
        posted = frozenset(header)  # a set: each problem looks its key up in it
        raise RecordsRejectedError(
            [locate.header_problem(p.message, posted) for p in exc.problems]
        ) from None
    warnings: tuple[dict[str, Any], ...] = ()
    if kind == "leads":
        decided = posted_score(plan, rule_set)
        plan = decided.plan
        if decided.note is not None:
            warnings = ({"field": "score", "msg": decided.note},)

    def write() -> UpsertResult:
        try:
            return _write_all(engine, settings, kind, plan, items, now, locate)
        except IntegrityError:
            return _write_all(engine, settings, kind, plan, items, now, locate)

    result = retrying_conflicts(write)
    return dataclasses.replace(result, warnings=(*warnings, *result.warnings))


def _header(items: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    keys: dict[str, None] = {}
    for item in items:
        keys.update(dict.fromkeys(item))
    return tuple(keys)


def _write_all(
    engine: Engine,
    settings: Settings,
    kind: ImportKind,
    plan: ColumnPlan,
    items: Sequence[Mapping[str, Any]],
    now: datetime,
    locate: _Locator,
) -> UpsertResult:
    mapping = settings.imports.mappings.get(kind, ImportMapping())
    counts = Counts()
    superseded = 0
    noted: tuple[dict[str, Any], ...] = ()
    with transaction(engine) as session:
        connection = session.connection()
        reps = RepDirectory.load(connection, mapping.rep_reference)
        writer = WRITERS[kind](plan, settings, now, reps)
        records, errors = _read(plan, writer, items, locate)
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
            raise RecordsRejectedError(errors)
        counts.add(extra)
    keys = tuple(dict.fromkeys(key for _index, key, _record in records))
    return UpsertResult(kind, len(items), counts, keys, noted, superseded)


def _read(
    plan: ColumnPlan, writer: KindWriter, items: Sequence[Mapping[str, Any]], locate: _Locator
) -> tuple[list[tuple[int, str, Record]], list[FieldError]]:
    records: list[tuple[int, str, Record]] = []
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        cells = [item.get(name) for name in plan.header]
        try:
            record = plan.read(cells)
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
            written = table_writer.write(connection, prepared)
            writer.after_write(connection, prepared, written)
    except DataError as exc:
        reason = str(exc.orig or exc).splitlines()[0]
        raise RecordsRejectedError(
            [FieldError(("body",), f"the store refused: {reason}")]
        ) from None
    return written.counts


class _Locator:
    """Error locations: ``["body", field]`` for one object, ``["body", index, field]`` in a list."""

    def __init__(self, batch: bool) -> None:
        self.batch = batch

    def at(self, index: int) -> Loc:
        return ("body", index) if self.batch else ("body",)

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

    def header_problem(self, message: str, header: frozenset[str]) -> FieldError:
        """A plan problem (unknown or missing field) located at the key it names."""
        named = [name for name in _QUOTED.findall(message) if name in header]
        missing = _MISSING.search(message)
        field = named[0] if named else (missing.group(1) if missing else None)
        kind = "extra_forbidden" if message.startswith("unknown column") else "value_error"
        if missing is not None and not named:
            kind = "missing"
        loc: Loc = ("body", 0) if self.batch else ("body",)
        return FieldError((*loc, field) if field else loc, message, kind)


def _posted_name(field: str, plan: ColumnPlan) -> str:
    """The key the client posted for ``field`` (a mapped name such as ``Account``)."""
    for target in plan.targets:
        if target.field == field or (target.group and f"{target.group}.{target.name}" == field):
            return plan.header[target.index]
    return field
