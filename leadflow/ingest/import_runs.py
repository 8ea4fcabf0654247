"""An import's row in ``import_runs``: started, finished with its counts and status, or
recorded at once as ``refused`` for a file refused before any row was read."""

from __future__ import annotations

import os
from datetime import datetime

from sqlalchemy import Engine, insert, update

from leadflow.ingest.import_report import ImportReport
from leadflow.store.database import transaction
from leadflow.store.run_processes import this_host
from leadflow.store.tables import IMPORT_RUNS


def start_run(engine: Engine, report: ImportReport, now: datetime) -> int:
    with transaction(engine) as session:
        created = session.execute(
            insert(IMPORT_RUNS)
            .values(
                kind=report.kind,
                file=report.file[-2000:],
                started_at=now,
                status="running",
                # Who runs it: once that process is gone, status says interrupted, not running.
                host=this_host(),
                pid=os.getpid(),
            )
            .returning(IMPORT_RUNS.c.id)
        )
        return int(created.scalar_one())


def record_refused(engine: Engine, report: ImportReport, now: datetime) -> None:
    """A file refused before any row was read: one finished run, nothing written."""
    with transaction(engine) as session:
        session.execute(
            insert(IMPORT_RUNS).values(
                kind=report.kind,
                file=report.file[-2000:],
                started_at=now,
                finished_at=now,
                status="refused",
            )
        )


def finish_run(
    engine: Engine, run_id: int, report: ImportReport, status: str, now: datetime
) -> None:
    with transaction(engine) as session:
        session.execute(
            update(IMPORT_RUNS)
            .where(IMPORT_RUNS.c.id == run_id)
            .values(
                finished_at=now,
                status=status,
                inserted=report.counts.inserted,
                updated=report.counts.updated,
                unchanged=report.counts.unchanged,
                rejected=report.rejected,
                superseded=report.superseded,
            )
        )
