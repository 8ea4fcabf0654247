"""The plan that reads one file's rows (or posted objects) into records: which cell fills
which field, parsed how; the import's hot path (:meth:`ColumnPlan.read`).

:func:`~leadflow.ingest.mapping.compile_plan` makes one from a header and the mapping.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import Any

from leadflow.errors import ImportRowError
from leadflow.ingest import values
from leadflow.ingest.field_parsers import parse_object
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

    @property
    def fields(self) -> frozenset[str]:
        """The top-level fields this file sets (``attributes`` for any attribute)."""
        return frozenset(t.group or t.field for t in self.targets)

    def columns_named_otherwise(self) -> dict[str, str]:
        """Top-level field -> the header's column filling it, where the two names differ."""
        return {
            t.field: self.header[t.index]
            for t in self.targets
            if t.group is None and t.index < len(self.header) and self.header[t.index] != t.field
        }

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
        found = next(values.unstorable(value), None)
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
