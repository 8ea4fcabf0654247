"""An entry of the stage history as one text that sorts like the history: by time, then id.

A lead's first entry into a stage, or its last, is then a ``min`` or ``max`` of keys in a
``GROUP BY`` over the lead's rows, which the ``(lead_id, at, id, ...)`` index hands over lead by
lead without a sort, where a window function per stage cost a pass over every row each. The key
is the time as fixed-width digits, the id and the owner on entry zero-padded to
:data:`WIDTH`: two keys compare as their ``(at, id)`` (ids are unique, so the owner never
decides), and the owner is read back from the key's end.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Integer, cast, func, literal

WIDTH = 20
"""Digits of an id or owner id in a key (a 64-bit id has at most 19)."""


def entry_key(dialect: str, at: Any, entry_id: Any, owner_id: Any) -> ColumnElement[str]:
    """The key of the entry ``entry_id`` at ``at`` by the owner ``owner_id`` (null as 0)."""
    owner = func.coalesce(owner_id, 0)
    if dialect == "sqlite":
        # SQLite stores times as fixed-width UTC text (store.types.UTCDateTime): already sorted.
        return func.printf(f"%s%0{WIDTH}d%0{WIDTH}d", at, entry_id, owner)
    digits = func.to_char(func.timezone("UTC", at), "YYYYMMDDHH24MISSUS")
    padded = "FM" + "0" * WIDTH
    key = func.concat(digits, func.to_char(entry_id, padded), func.to_char(owner, padded))
    # Digits only, but compared byte by byte whatever the database's collation.
    return key.collate("C")


def key_owner(key: Any) -> ColumnElement[int | None]:
    """The owner id in ``key`` (null for a key of an entry without one)."""
    owner = cast(func.substr(key, func.length(key) - (WIDTH - 1), WIDTH), Integer)
    return func.nullif(owner, literal(0))
