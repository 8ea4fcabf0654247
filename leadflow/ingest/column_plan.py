"""The plan that reads one file's rows (or posted objects) into records: which cell fills
which field, parsed how; the import's hot path (:meth:`ColumnPlan.read`).

:func:`~leadflow.ingest.mapping.compile_plan` makes one from a header and the mapping.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property, lru_cache
from typing import Any, cast

from leadflow.errors import ImportRowError
from leadflow.ingest import json_values, values
from leadflow.ingest.field_parsers import parse_object, renaming
from leadflow.ingest.names import quoted
from leadflow.settings import ImportKind


@dataclass(frozen=True)
class Target:
    """One field filled from one column (cell index)."""

    field: str
    index: int
    parse: values.Parser
    value_map: Mapping[str, str]
    group: str | None = None
    name: str = ""


@dataclass(frozen=True)
class ColumnPlan:
    """How one file's rows become records: ``{field: value}``, attributes nested by group."""

    kind: ImportKind
    header: tuple[str, ...]
    targets: tuple[Target, ...]
    empty_values: frozenset[str] = frozenset()
    """Cells (stripped, case folded) that mean "no value" in any column: a CRM's ``Select``."""
    joins: tuple[tuple[int, ...], ...] = ()
    """The columns (indexes) of each field filled from several (``import.mappings.KIND.
    combine``): join ``k``'s cell is read at index ``len(header) + k``."""

    @property
    def fields(self) -> frozenset[str]:
        """The top-level fields this file sets (``attributes`` for any attribute)."""
        return frozenset(t.group or t.field for t in self.targets)

    def columns_named_otherwise(self) -> dict[str, str]:
        """Field -> the header's column filling it, where the two names differ: a problem
        names the column the user finds in the file. An attribute counts when a mapping
        fills it (``Number of Employees`` for ``attributes.employees``), not when the file
        names it by its own name, bare or nested (a JSON line may write either)."""
        return {
            t.field: self.column_name(t.index)
            for t in self.targets
            if self.column_name(t.index) not in (t.field, t.name if t.group else t.field)
        }

    def column_name(self, index: int) -> str:
        """The column at ``index``; a join's is its columns' (``First Name + Last Name``)."""
        if index < len(self.header):
            return self.header[index]
        return " + ".join(self.header[i] for i in self.joins[index - len(self.header)])

    def _joined(self, cells: Sequence[object]) -> list[object]:
        """The cells with each join's cell after them: its columns' texts, stripped, joined by
        a space, the empty ones (and ``empty_values``) left out; all empty, an empty cell."""
        empty = self.empty_values
        made: list[object] = list(cells)
        for indexes in self.joins:
            texts: list[str] = []
            other: object = None
            for index in indexes:
                part = cells[index]
                if part is None:
                    continue
                if part.__class__ is not str:
                    other = part  # a JSON number or object: the field's parser names it
                    break
                text = part.strip()
                if text and text.casefold() not in empty:
                    texts.append(text)
            made.append(other if other is not None else " ".join(texts))
        return made

    def only(self, fields: frozenset[str]) -> ColumnPlan:
        """This plan reading only ``fields`` (top-level ones) of a row: a row's id alone."""
        kept = tuple(t for t in self.targets if t.group is None and t.field in fields)
        return dataclasses.replace(self, targets=kept)

    def read(self, cells: Sequence[object]) -> dict[str, Any]:
        """The row's record; raises :class:`ImportRowError` naming every bad field.

        The hot path of a large import: plain fields in one comprehension, attributes in
        another; only a row that fails is read again, slowly, to name the bad field.
        """
        if self.empty_values:
            empty = self.empty_values
            cells = [
                "" if cell.__class__ is str and cell.strip().casefold() in empty else cell
                for cell in cells
            ]
        if self.joins:
            cells = self._joined(cells)
        try:
            record: dict[str, Any] = {
                field: parse(cells[index]) for field, index, parse in self._plain
            }
            for group, steps in self._grouped:
                found = {
                    name: v
                    for name, index, parse in steps
                    if (v := parse(cells[index])) is not None
                }
                if found:
                    # activities may have both a ``properties`` object and properties.NAME columns
                    given = record.get(group)
                    if given:
                        _check_agreement(group, given, found)
                        record[group] = {**given, **found}
                    else:
                        record[group] = found
        except _DisagreementError as clash:
            # A check of the row read: named once its cells read, as a reference is.
            self._explain(cells)
            raise clash.error from None
        except ValueError:
            self._explain(cells)
            raise
        try:
            for field, index, parse, value_map in self._mapped:
                raw = cells[index]
                if raw.__class__ is str:
                    raw = value_map.get(raw.strip().casefold(), raw)
                record[field] = parse(raw)
        except ValueError:
            self._explain(cells)
            raise
        if not (self._cells_are_the_text and _ascii_text(cells)):
            _check_storable(record)
        return record

    def read_columns(self, rows: Sequence[Sequence[str]]) -> dict[str, list[Any]] | None:
        """What :meth:`read` makes of each row of ``rows`` (a CSV file's part: text cells, as
        many as the header's), as one list per top-level field, a row's ``None`` where its
        record has no value; or None when a cell of the part does not read (a value error)
        or does not store: the caller then reads those rows one by one with :meth:`read`,
        which names every bad field.

        A large file's hot path: a record per row (a dict, a parser call per cell) cost three
        quarters of the time a 1M-row CRM export took to read. Here each column is read once
        per part: a text column by one comprehension, any other by parsing each of its
        distinct cells once (a stage, a score, a Yes/No column hold a handful); every parser
        is a function of the cell alone.
        """
        if not rows or not self._cells_are_the_text:
            return None
        if self.joins:
            rows = cast("list[list[str]]", [self._joined(cells) for cells in rows])
        cells_by_column = self._cells_by_column(rows)
        try:
            found: dict[str, list[Any]] = {
                field: read(cells_by_column[index]) for field, index, read in self._plain_columns
            }
            for group, names, steps in self._grouped_columns:
                if group in found:
                    return None  # a properties object beside properties.NAME columns
                found[group] = _objects(names, [read(cells_by_column[i]) for i, read in steps])
            for field, index, read in self._mapped_columns:
                found[field] = read(cells_by_column[index])
        except ValueError:
            return None
        if not all(_ascii_text(column) for column in cells_by_column.values()):
            # As read() checks a row whose cells are not all ASCII: its record, field by field
            # (a row's other cells make no value: ASCII there or not, its record stores).
            fields = list(found)
            try:
                for position, cells in enumerate(rows):
                    if not _ascii_text(cells):
                        _check_storable({field: found[field][position] for field in fields})
            except ImportRowError:
                return None
        return found

    def _cells_by_column(self, rows: Sequence[Sequence[str]]) -> dict[int, Sequence[str]]:
        """The cells of each column the plan reads (by index), the empty values emptied."""
        used = self._used_columns
        if 2 * len(used) < len(rows[0]):  # a row's id alone, say: not every column transposed
            by_index: dict[int, Sequence[str]] = {
                index: [cells[index] for cells in rows] for index in used
            }
        else:
            every = list(zip(*rows, strict=True))
            by_index = {index: every[index] for index in used}
        if self.empty_values:
            empty = self.empty_values
            by_index = {
                index: ["" if cell.strip().casefold() in empty else cell for cell in column]
                for index, column in by_index.items()
            }
        return by_index

    @cached_property
    def _used_columns(self) -> tuple[int, ...]:
        return tuple(sorted({target.index for target in self.targets}))

    @cached_property
    def _plain_columns(self) -> tuple[tuple[str, int, _ColumnReader], ...]:
        return tuple((field, index, _column_reader(parse)) for field, index, parse in self._plain)

    @cached_property
    def _grouped_columns(
        self,
    ) -> tuple[tuple[str, tuple[str, ...], tuple[tuple[int, _ColumnReader], ...]], ...]:
        return tuple(
            (
                group,
                tuple(name for name, _index, _parse in steps),
                tuple((index, _column_reader(parse)) for _name, index, parse in steps),
            )
            for group, steps in self._grouped
        )

    @cached_property
    def _mapped_columns(self) -> tuple[tuple[str, int, _ColumnReader], ...]:
        return tuple(
            (field, index, _column_reader(renaming(parse, value_map)))
            for field, index, parse, value_map in self._mapped
        )

    def _explain(self, cells: Sequence[object]) -> None:
        """Raise an error naming every bad field of the row (column order), not the first only:
        a row with four bad cells would otherwise take four rounds of fixing the file."""
        errors = []
        for target in sorted(self.targets, key=lambda t: t.index):
            raw = cells[target.index]
            if target.value_map and raw.__class__ is str:
                raw = target.value_map.get(raw.strip().casefold(), raw)
            try:
                target.parse(raw)
            except ValueError as exc:
                errors.append(ImportRowError(target.field, str(exc)))
        if errors:
            raise ImportRowError.of(errors)

    @cached_property
    def _cells_are_the_text(self) -> bool:
        """Whether every text in a record is a cell or a part of one, or a renamed value.

        Then a row of ASCII cells without NUL makes a record the store holds (renamed values
        are checked once, in :func:`compile_plan`); a JSON object cell can hold escapes.
        """
        return all(target.parse is not parse_object for target in self.targets)

    @cached_property
    def _plain(self) -> tuple[tuple[str, int, values.Parser], ...]:
        return tuple(
            (t.field, t.index, t.parse) for t in self.targets if t.group is None and not t.value_map
        )

    @cached_property
    def _grouped(self) -> tuple[tuple[str, tuple[tuple[str, int, values.Parser], ...]], ...]:
        groups = sorted({t.group for t in self.targets if t.group is not None})
        return tuple(
            (group, tuple((t.name, t.index, t.parse) for t in self.targets if t.group == group))
            for group in groups
        )

    @cached_property
    def _mapped(self) -> tuple[tuple[str, int, values.Parser, Mapping[str, str]], ...]:
        # Fields whose CRM values are renamed (values: in the mapping), e.g. Won -> won.
        return tuple(
            (t.field, t.index, t.parse, t.value_map)
            for t in self.targets
            if t.group is None and t.value_map
        )


_ColumnReader = Callable[[Sequence[str]], list[Any]]
"""A column's text cells -> their values (raises ValueError as the column's parser does)."""


def _column_reader(parse: values.Parser) -> _ColumnReader:
    """How :meth:`ColumnPlan.read_columns` reads one column of text cells with ``parse``."""
    if parse is values.parse_text:
        # What it does with a text cell, without a call per cell.
        return lambda cells: [cell.strip() or None for cell in cells]
    if parse is values.parse_identifier or parse is values.parse_reference:
        return _id_column

    def each_distinct_once(cells: Sequence[str]) -> list[Any]:
        # A value per distinct cell, shared by the rows holding it: parsers return scalars
        # (a CSV cell is never a JSON object, _cells_are_the_text), which no one changes.
        parsed = {cell: parse(cell) for cell in set(cells)}
        return list(map(parsed.__getitem__, cells))

    return each_distinct_once


def _id_column(cells: Sequence[str]) -> list[str | None]:
    """What :func:`~leadflow.ingest.values.parse_identifier` makes of each text cell, with one
    search of the column for Excel's scientific notation (ValueError: the rows are then read
    one by one, which names each)."""
    texts = [cell.strip() for cell in cells]
    if values.excel_numbers_in(texts):
        msg = "an id in Excel's scientific notation"
        raise ValueError(msg)
    return [text or None for text in texts]


def _objects(names: tuple[str, ...], columns: list[list[Any]]) -> list[dict[str, Any] | None]:
    """Each row's object of its non-None values under ``names`` (None for no value at all), in
    the order ``names`` gives, as :meth:`ColumnPlan.read` builds a group's."""
    objects: list[dict[str, Any]] = _object_maker(len(names))(*names, columns)
    for name, column in zip(names, columns, strict=True):
        if None in column:
            for found, value in zip(objects, column, strict=True):
                if value is None:
                    del found[name]
    return [found or None for found in objects]


@lru_cache(maxsize=64)
def _object_maker(width: int) -> Callable[..., list[dict[str, Any]]]:
    """``make(name_0, ..., name_N, columns)``: a dict per row of ``columns`` (one per name)
    built by a dict display: for three attributes, 30 % of them empty, 50,000 rows took 35 ms
    with the deletes of :func:`_objects`, against 58-61 ms for one comprehension that skips
    the empty values (``{n: v for n, v in zip(names, row) if v is not None}``), measured
    2026-12-01; it loses to that comprehension on wide, mostly empty groups (20 names), which
    imports rarely declare. The code is made from ``width`` alone: the names are arguments,
    never part of the text compiled."""
    keys = [f"k{i}" for i in range(width)]
    cells = [f"v{i}" for i in range(width)]
    pairs = ", ".join(f"{key}: {cell}" for key, cell in zip(keys, cells, strict=True))
    row = ", ".join(cells) + ("," if width == 1 else "")
    source = f"lambda {', '.join(keys)}, columns: [{{{pairs}}} for {row} in zip(*columns)]"
    return eval(source, {"__builtins__": {"zip": zip}})  # type: ignore[no-any-return]  # noqa: S307


class _DisagreementError(ValueError):
    """Raised by :func:`_check_agreement` out of the cells' reading, carrying the row's error."""

    def __init__(self, error: ImportRowError) -> None:
        super().__init__(str(error))
        self.error = error


def _check_agreement(group: str, given: Mapping[str, Any], found: Mapping[str, Any]) -> None:
    """Refuse a ``properties.url`` column whose value differs from the ``properties`` object's
    ``url`` on the same row: which one was meant is not ours to guess (the column won
    silently). A number written as the same text (``5`` and ``"5"``) agrees."""
    for name, value in found.items():
        if name not in given:
            continue
        old = given[name]
        if old == value or (old.__class__ in (int, float) and str(old) == value):
            continue
        raise _DisagreementError(
            ImportRowError(
                f"{group}.{name}",
                f"{quoted(value)} differs from the {group} object's {name!r}, {quoted(old)}; give {name} "
                f"once (in the object or as {group}.{name}), or the same value in both",
            )
        )


_PLAIN = frozenset({type(None), int, bool, float, datetime, date})
"""Value classes the store always holds as a parser returns them (it returns finite floats)."""


def _check_storable(record: Mapping[str, Any]) -> None:
    """Refuse, naming the field, a value no store can hold (NUL, lone surrogates), anywhere.

    Every field is checked, references too: a lookup by such a text fails in the database as
    surely as storing it. Plain ASCII text and scalars take the fast path.
    """
    for field, value in record.items():
        kind = value.__class__
        if kind is str:
            if value.isascii() and "\x00" not in value:
                continue
        elif kind in _PLAIN or (kind is dict and _plain_object(value)):
            continue
        elif kind is json_values.LongInteger:
            continue  # beyond the field's range: its range check names the range
        found = next(json_values.unstorable(value), None)
        if found is not None:
            place, reason = found
            raise ImportRowError(".".join([field, *map(str, place)]), reason)


def _ascii_text(cells: Sequence[object]) -> bool:
    """Whether the cells are all text, ASCII and without NUL: a typical CSV row, in one pass."""
    try:
        text = "".join(cells)  # type: ignore[arg-type]  # JSON values raise TypeError
    except TypeError:
        return False
    return text.isascii() and "\x00" not in text


def _plain_object(value: dict[str, Any]) -> bool:
    """Whether an object (the attributes) holds only ASCII text without NUL and finite scalars."""
    for key, item in value.items():
        if not key.isascii() or "\x00" in key:
            return False
        kind = item.__class__
        if kind is str:
            if not item.isascii() or "\x00" in item:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind not in _PLAIN:
            return False
    return True
