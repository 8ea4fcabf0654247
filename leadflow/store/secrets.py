"""Secrets leadflow generates for itself and keeps in the store (``store_secrets``).

A secret the configuration leaves unset must not fall back to a constant in the source: that
constant is public, and whatever it signs can be forged by anyone. Instead a random value is
generated the first time it is needed and stored; every later process, and every replica on the
same store, reads that same value. Two processes racing to create it both end up with the one
that was committed first (insert if absent, then read).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Engine, select

from leadflow.store.database import insert_ignoring_duplicates, transaction
from leadflow.store.tables import STORE_SECRETS


def stored_secret(engine: Engine, name: str, now: datetime) -> tuple[str, bool]:
    """The secret ``name`` of the store, generated and stored if absent; and whether this call
    generated it."""
    existing = _read(engine, name)
    if existing is not None:
        return existing, False
    candidate = secrets.token_hex(32)
    statement = insert_ignoring_duplicates(engine.dialect.name, STORE_SECRETS, "name").values(
        name=name, value=candidate, created_at=now
    )
    with transaction(engine) as session:
        session.execute(statement)
    value = _read(engine, name)
    if value is None:  # pragma: no cover - the row was just inserted or already there
        msg = f"store secret {name!r} was not stored"
        raise RuntimeError(msg)
    return value, value == candidate


def _read(engine: Engine, name: str) -> str | None:
    with engine.connect() as connection:
        value = connection.execute(
            select(STORE_SECRETS.c.value).where(STORE_SECRETS.c.name == name)
        ).scalar_one_or_none()
    return None if value is None else str(value)
