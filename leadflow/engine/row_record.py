"""A lead or deal as the record a rule field reads (``spec.read(record)``).

Fields read a mapping of column names; building a dict of every column for every firing of a
batch cost more than the firing's own decisions. This mapping reads a column only when a field
asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sqlmodel import SQLModel


class RowRecord(Mapping[str, Any]):
    """The columns of ``row`` (a :class:`~leadflow.store.models.Lead` or ``Deal``), read lazily."""

    __slots__ = ("_columns", "_row")

    def __init__(self, row: SQLModel) -> None:
        self._row = row
        self._columns = type(row).model_fields

    def __getitem__(self, column: str) -> Any:
        if column not in self._columns:
            raise KeyError(column)
        return getattr(self._row, column)

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)
