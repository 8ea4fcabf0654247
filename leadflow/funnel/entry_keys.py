"""An entry of the stage history as one value that sorts like the history: by time, then id.

A lead's first entry into a stage, or its last, is then a ``min`` or ``max`` of keys in a
``GROUP BY`` over the lead's rows, which the ``(lead_id, at, id, ...)`` index hands over lead by
lead without a sort, where a window function per stage cost a pass over every row each. A key
holds the time, the id and the owner on entry (null as 0): two keys compare as their
``(at, id)`` (ids are unique, so the owner never decides), and the owner is read back from it.

On SQLite the key is text: the stored time (fixed-width UTC text, see
:class:`~leadflow.store.types.UTCDateTime`), then the ids zero-padded to :data:`WIDTH` digits.
On PostgreSQL it is an array of exact numbers (``[epoch seconds, id, owner]``), compared
element by element: cheaper than formatting the time as text.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Integer, Numeric, cast, func, literal, type_coerce
from sqlalchemy.dialects.postgresql import ARRAY, array

WIDTH = 20
"""Digits of an id or owner id in a SQLite key (a 64-bit id has at most 19)."""


def entry_key(dialect: str, at: Any, entry_id: Any, owner_id: Any) -> ColumnElement[Any]:
    """The key of the entry ``entry_id`` at ``at`` by the owner ``owner_id``."""
    owner = func.coalesce(owner_id, 0)
    if dialect == "sqlite":
        return func.printf(f"%s%0{WIDTH}d%0{WIDTH}d", at, entry_id, owner)
    parts = [func.extract("epoch", at), entry_id, owner]
    return array([cast(part, Numeric) for part in parts])


def key_owner(dialect: str, key: Any) -> ColumnElement[int | None]:
    """The owner id in ``key`` (null for a key of an entry without one)."""
    if dialect == "sqlite":
        owner = cast(func.substr(key, func.length(key) - (WIDTH - 1), WIDTH), Integer)
    else:
        owner = cast(type_coerce(key, ARRAY(Numeric))[3], Integer)
    return func.nullif(owner, literal(0))
