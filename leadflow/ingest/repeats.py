"""Which rows of a file a later row of the same id supersedes, over the whole file.

A file is written batch by batch, and within a batch the later row of an id wins
(:func:`~leadflow.ingest.writers.latest_per_key`). Two rows of one id in different batches were
both written, the later updating the earlier: a second stage-history row, a lead counted
inserted and updated. So before any row is written the file is read again, cheaply:

1. each row's id alone (the cells the id is made of, not the whole row; an activity without
   an id is its content, so such a row is read whole), hashed into arrays of 8 bytes a row,
   each of a 64th of the hashes sorted in turn, which finds the hashes seen more than once: a
   1M-row file costs 8 MB and the sorts (one 64th of its hashes as Python ints at a time), not a
   dict of its ids; a file without repeats stops here;
2. only if there are repeats: the rows with such a hash are read whole and checked as the
   write checks them (:meth:`KindWriter.accepted`: values and lookups, nothing written); of an
   id's rows that pass, each is superseded by the next one.

The write then skips the superseded lines: the last row of an id that imports is written once.
A later row that is rejected supersedes nothing, as within a batch: the earlier row lands.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from itertools import pairwise
from typing import NamedTuple, cast

from sqlalchemy import Connection

from leadflow.errors import ImportRowError
from leadflow.ingest.kind_writer import KindWriter, Record
from leadflow.ingest.readers import RowSource


class Later(NamedTuple):
    """The row that supersedes a line: its line, and the id both rows have."""

    line: int
    key: str


HASH_PARTS = 64
"""The parts a file's id hashes are sorted in (a power of two: a hash's low bits pick it)."""

Sources = Callable[[], AbstractContextManager[RowSource]]
"""Opens the file again from its first row (its header read as the import read it)."""


def superseded_lines(
    connection: Connection, writer: KindWriter, sources: Sources, batch_size: int
) -> dict[int, Later]:
    """Each line a later row of its id (that is not rejected) supersedes, with that row."""
    with sources() as source:
        repeated = _repeated_hashes(writer, source)
    if not repeated:
        return {}
    with sources() as source:
        return _superseded(connection, writer, _candidates(writer, source, repeated), batch_size)


def _keyed(writer: KindWriter, source: RowSource) -> Iterator[tuple[int, list[object], str]]:
    """Each readable row's line, cells and id, the id read from its own cells only."""
    for line, cells, problem in source.rows():
        if problem is not None:
            continue
        try:
            key = writer.cells_key(cells)
        except ImportRowError:
            continue  # the write rejects it, naming why
        yield line, cells, key


KEYS_AT_ONCE = 5_000
"""Rows of a CSV file whose keys are read at once, column by column (KindWriter.cells_keys)."""


def _keys(writer: KindWriter, source: RowSource) -> Iterator[str]:
    """The id of each row :func:`_keyed` yields, a CSV file's read a part at a time."""
    if source.format != "csv":
        yield from (key for _line, _cells, key in _keyed(writer, source))
        return
    part: list[list[object]] = []
    for _line, cells, problem in source.rows():
        if problem is None:
            part.append(cells)
            if len(part) >= KEYS_AT_ONCE:
                yield from _part_keys(writer, part)
                part = []
    yield from _part_keys(writer, part)


def _part_keys(writer: KindWriter, part: list[list[object]]) -> list[str]:
    keys = writer.cells_keys(cast("list[list[str]]", part))
    if keys is not None:
        return keys
    # Some row's id does not read: the write rejects that row, naming why.
    read = []
    for cells in part:
        try:
            read.append(writer.cells_key(cells))
        except ImportRowError:
            continue
    return read


def _repeated_hashes(writer: KindWriter, source: RowSource) -> set[int]:
    # hash() is 64 bits and fixed within the process (and in a reading process it forks); two
    # ids sharing one only cost their rows the second read, which compares the ids themselves.
    # A sort makes a list of Python ints (about 40 bytes a hash, 5 times the array): a part of
    # the hashes at a time, split by their low bits, keeps that to a 64th.
    parts = [array("q") for _part in range(HASH_PARTS)]
    for value in map(hash, _keys(writer, source)):
        parts[value & (HASH_PARTS - 1)].append(value)
    repeated: set[int] = set()
    for part in parts:
        ordered = sorted(part)
        repeated.update(value for value, after in pairwise(ordered) if value == after)
    return repeated


def _candidates(
    writer: KindWriter, source: RowSource, repeated: set[int]
) -> Iterator[tuple[int, str, Record]]:
    """The rows whose id's hash repeats, read whole."""
    plan = writer.plan
    for line, cells, key in _keyed(writer, source):
        if hash(key) not in repeated:
            continue
        try:
            record = plan.read(cells)
        except ImportRowError:
            continue
        yield line, key, record


def _superseded(
    connection: Connection,
    writer: KindWriter,
    rows: Iterator[tuple[int, str, Record]],
    batch_size: int,
) -> dict[int, Later]:
    last: dict[str, int] = {}
    superseded: dict[int, Later] = {}

    def check(batch: list[tuple[int, str, Record]]) -> None:
        for line, key in writer.accepted(connection, batch):
            earlier = last.get(key)
            if earlier is not None:
                superseded[earlier] = Later(line, key)
            last[key] = line

    batch: list[tuple[int, str, Record]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_size:
            check(batch)
            batch = []
    if batch:
        check(batch)
    return superseded
