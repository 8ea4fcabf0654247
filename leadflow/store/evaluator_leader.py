"""The record of which daemon became the evaluator (the leader), and since when.

The daemon writes it as it becomes the leader (``evaluator_leader``, one row); ``leadflow
status`` reads it beside the lock itself, which alone says whether that daemon still leads
(:func:`leadflow.service.leadership.current_leader`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, insert, select

from leadflow.store.tables import EVALUATOR_LEADER

ROLE = "evaluator"


@dataclass(frozen=True)
class LeaderRecord:
    """Who became the leader: its host and process id, when, and (PostgreSQL) its lock
    session's server process."""

    host: str
    pid: int
    since: datetime
    backend_pid: int | None = None


def record_leader(engine: Engine, record: LeaderRecord) -> None:
    """Replace the record with ``record`` (SQLite's daemon; PostgreSQL's writes it on its lock
    session, which names the backend)."""
    with engine.begin() as connection:
        connection.execute(delete(EVALUATOR_LEADER))
        connection.execute(
            insert(EVALUATOR_LEADER).values(
                role=ROLE,
                host=record.host,
                pid=record.pid,
                backend_pid=record.backend_pid,
                since=record.since,
            )
        )


def recorded_leader(connection: Connection) -> LeaderRecord | None:
    """The last recorded leader, None when no daemon has led this store since revision 0026."""
    table = EVALUATOR_LEADER
    row = connection.execute(
        select(table.c.host, table.c.pid, table.c.since, table.c.backend_pid).where(
            table.c.role == ROLE
        )
    ).first()
    return None if row is None else LeaderRecord(row.host, row.pid, row.since, row.backend_pid)
