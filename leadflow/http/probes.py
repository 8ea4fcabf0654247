"""``/healthz`` (the process answers), ``/readyz`` (it can do its work), ``/metrics``.

Readiness needs the database to answer a read of the ``leads`` table within :data:`READY_TIMEOUT`
and a valid rule set to be loaded; otherwise 503 with the reasons, so an orchestrator stops
routing to it. A trivial ``SELECT 1`` answered while another session held ``leads`` in an
ACCESS EXCLUSIVE lock, so the replica stayed ready while every request on leads waited.
Probes and metrics need no token: they say nothing about leads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine

from leadflow import metrics
from leadflow.engine.runtime import Runtime
from leadflow.outbox.store import STATUSES, outbox_state
from leadflow.rule_language.model import RuleSet
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.store.lock_waits import LOCK_NOT_AVAILABLE

log = structlog.get_logger("leadflow.http")

READY_TIMEOUT = 2.0
"""Seconds the database may take to answer the readiness query."""
READY_LOCK_WAIT = 1.5
"""Seconds the readiness read waits for a lock on ``leads`` (PostgreSQL): under
:data:`READY_TIMEOUT`, so that a lock is named as such rather than as no answer."""
METRICS_QUERY_TIMEOUT = 5.0


class LeadsLockedError(Exception):
    """The readiness read waited :data:`READY_LOCK_WAIT` for a lock on ``leads``."""


def read_leads(engine: Engine) -> None:
    """A cheap read of ``leads`` (one row at most, by any index), waiting for a lock
    :data:`READY_LOCK_WAIT` at most: what every request on leads needs first.

    On SQLite a reader never waits for a writer (WAL), so this is a read of the file; a writer
    holding the write lock is not seen here (requests that write answer 503 after
    ``http.lock_timeout``)."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        if engine.dialect.name == "postgresql":
            lock_ms = round(READY_LOCK_WAIT * 1000)
            cursor.execute(f"SET LOCAL lock_timeout = {lock_ms}")
            cursor.execute(f"SET LOCAL statement_timeout = {round(READY_TIMEOUT * 1000)}")
        try:
            cursor.execute("SELECT 1 FROM leads LIMIT 1")
        except Exception as exc:
            if getattr(exc, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                raise LeadsLockedError from exc
            raise
        cursor.fetchall()
        cursor.close()
        connection.rollback()  # ends the transaction the SET LOCALs are in
    finally:
        connection.close()


def probe_routes(
    runtime: Runtime,
    holder: SnapshotHolder[RuleSet],
    leading: Callable[[], bool] | None = None,
) -> APIRouter:
    """``leading``: whether this replica is the leader now, said by ``/readyz`` as ``leader``
    (a replica that is not is ready all the same: it serves the API and sends email)."""
    router = APIRouter(tags=["probes"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @router.get(
        "/readyz",
        summary="The database answers and a valid rule set is loaded",
        responses={
            503: {
                "description": "not ready, with the reasons",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    )
    async def readyz() -> JSONResponse:
        reasons = await _unready_reasons(runtime, holder)
        leader: dict[str, Any] = {} if leading is None else {"leader": leading()}
        if reasons:
            return JSONResponse(
                {"status": "not ready", "reasons": reasons, **leader}, status_code=503
            )
        rule_set = holder.current()
        return JSONResponse({"status": "ready", "rule_version": rule_set.version, **leader})

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        try:
            async with asyncio.timeout(METRICS_QUERY_TIMEOUT):
                counts, oldest = await asyncio.to_thread(outbox_state, runtime.engine)
        except Exception as exc:  # the scrape still shows the counters; gauges keep their values
            log.warning("metrics_outbox_query_failed", error=repr(exc)[:300])
        else:
            metrics.observe_outbox(counts, oldest, runtime.clock.now(), STATUSES)
        return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


async def _unready_reasons(runtime: Runtime, holder: SnapshotHolder[RuleSet]) -> list[str]:
    reasons = []
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await asyncio.to_thread(read_leads, runtime.engine)
    except LeadsLockedError:
        reasons.append(
            f"database: leads is locked by another session (no lock within {READY_LOCK_WAIT:g} s)"
        )
    except TimeoutError:
        reasons.append(f"database: no answer within {READY_TIMEOUT:g} s")
    except Exception as exc:  # any failure to query means "not ready"; the reason is reported
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        reasons.append(f"database: {first}")
    if holder.current_or_none() is None:
        errors = holder.status().errors
        detail = f": {'; '.join(errors)}" if errors else ""
        reasons.append(f"rules: no valid rule set is loaded{detail}")
    return reasons
