"""Working through due rows (SLA timers, nurture enrollments) in batches that commit whole.

:func:`due_pages` hands out the pages, a transaction each (nurture steps write a page at a
time); :func:`handle_due_rows` handles each row of a page in a savepoint of its transaction
(SLA escalations): one row's failure is logged and rolled back alone, and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import structlog
from sqlalchemy import Engine, Select, Table
from sqlalchemy.orm import Session

from leadflow.engine.runtime import StopSignal
from leadflow.logs import is_outage, log_failure
from leadflow.store.database import transaction

Row = TypeVar("Row")


log = structlog.get_logger("leadflow.engine")


def handle_due_rows(
    engine: Engine,
    query: Select[Row],
    table: Table,
    handle: Callable[[Session, Row], None],
    *,
    batch: int,
    failure_event: str,
    describe: Callable[[Row], dict[str, Any]],
    stop: StopSignal | None = None,
) -> int:
    """Run ``handle`` on every row ``query`` selects, in id order; return how many succeeded.

    ``stop`` is asked between batches: a stopping daemon waits for one batch at most.
    """
    handled = 0
    for session, rows in due_pages(engine, query, table, batch=batch, stop=stop):
        for row in rows:
            try:
                with session.begin_nested():
                    handle(session, row)
                handled += 1
            except Exception as exc:  # one row's failure is logged; the others go on
                if is_outage(exc):  # unless the database is gone: then the batch fails
                    raise
                log_failure(log, failure_event, exc, **describe(row))
    return handled


def due_pages(
    engine: Engine,
    query: Select[Row],
    table: Table,
    *,
    batch: int,
    stop: StopSignal | None = None,
) -> Iterator[tuple[Session, list[Row]]]:
    """The rows ``query`` selects, in id order, ``batch`` at a time, each page with the session
    of its own transaction, which commits when the caller asks for the next page.

    ``stop`` is asked between pages: a stopping daemon waits for one batch at most.
    """
    last_id = 0
    while stop is None or not stop.is_set():
        with transaction(engine) as session:
            page = query.where(table.c.id > last_id).order_by(table.c.id).limit(batch)
            rows = list(session.scalars(page))
            if not rows:
                return
            last_id = getattr(rows[-1], "id", None) or 0
            yield session, rows
