"""The HTTP API: records in from the CRM, a lead's audit trail out, a lead's re-subscribing
(:mod:`leadflow.http.resubscribe`), probes and metrics, and the public pixel and redirects of
tracked email (:mod:`leadflow.http.tracking`).

:func:`create_app` builds the ASGI application the daemon serves; it refuses to build one whose
``/v1`` API would be open by accident (no ``http.token`` and no ``http.allow_anonymous``). Every
blocking database call runs in a worker thread. Bad input is a 4xx with a JSON body, never a 500.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated, Any, NoReturn

import structlog
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from leadflow.dashboard.funnel_snapshots import FunnelSnapshots
from leadflow.dashboard.routes import TooLargePages, dashboard_routes
from leadflow.engine.audit_history import lead_with_audit
from leadflow.engine.runtime import Runtime
from leadflow.errors import ConfigError, DatabaseUnavailableError, RecordsRejectedError
from leadflow.http.body_limit import BodyLimit
from leadflow.http.lock_wait import LockWaitBound
from leadflow.http.openapi import record_schema, request_body
from leadflow.http.openapi_public import (
    BODY_REFUSED,
    ERROR_BODY,
    UNAVAILABLE,
    Responses,
    public_paths,
)
from leadflow.http.posted import json_body, read_body, reject
from leadflow.http.probes import probe_routes
from leadflow.http.records import upsert_records
from leadflow.http.resubscribe import REQUEST_BODY, reason_of, resubscribe
from leadflow.http.tracking import tracking_routes
from leadflow.ingest.json_values import text_problem
from leadflow.ingest.mapping import KIND_FIELDS, too_many_columns
from leadflow.ingest.nesting import nested_objects
from leadflow.rule_language.model import RuleSet
from leadflow.scoring.explain import explain_score
from leadflow.scoring.rescoring import rescore_posted
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.settings import HttpSettings, ImportKind, ImportMapping
from leadflow.store.lock_waits import lock_wait_ran_out

log = structlog.get_logger("leadflow.http")

KINDS: tuple[ImportKind, ...] = ("leads", "deals", "activities", "reps")
_bearer = HTTPBearer(auto_error=False)
RETRY_AFTER_SECONDS = "1"
"""What a 503 asks a client to wait: the store's trouble is often a moment's (a busy pool)."""
LOCKED = "the database is locked by another session; retry later"
"""The 503's detail when the request's wait for a lock ran out (``http.lock_timeout``)."""
_UNAUTHORIZED: Responses = {
    401: {"description": "missing or wrong bearer token", **ERROR_BODY},
}
_INVALID: Responses = {
    422: {
        "description": (
            "field-level errors: detail is a list of {loc, msg, type}, every problem of every "
            "record in record order (the request's schema and the import's checks alike)"
        ),
        **ERROR_BODY,
    },
}
_POST_RESPONSES: Responses = {
    **_UNAUTHORIZED,
    **BODY_REFUSED,
    415: {
        "description": "Content-Type is not application/json, or the body is compressed",
        **ERROR_BODY,
    },
    **_INVALID,
    **UNAVAILABLE,
}
_GET_RESPONSES: Responses = {
    **_UNAUTHORIZED,
    404: {"description": "no such lead", **ERROR_BODY},
    **_INVALID,
    **UNAVAILABLE,
}


def check_http_settings(settings: HttpSettings) -> None:
    """ConfigError when the ``/v1`` API would be open by accident: no token, no opt-in.

    The daemon's command calls it before anything starts, so the refusal is one line."""
    if settings.token is None and not settings.allow_anonymous:
        msg = (
            "http.token is not set: set LEADFLOW_HTTP__TOKEN (or LEADFLOW_HTTP__TOKEN_FILE), "
            "or set http.allow_anonymous: true for a trial on a private network, "
            "or http.enabled: false to run without the HTTP server"
        )
        raise ConfigError(msg)


def create_app(
    runtime: Runtime,
    holder: SnapshotHolder[RuleSet],
    *,
    funnel: FunnelSnapshots | None = None,
    leading: Callable[[], bool] | None = None,
) -> FastAPI:
    """The application for ``runtime``'s store; ``holder`` is the daemon's current rule set,
    ``funnel`` the Funnel page's snapshots the daemon warms (by default the app's own),
    ``leading`` says whether the daemon is the leader now (``/readyz``'s ``leader``)."""
    settings = runtime.settings.http
    check_http_settings(settings)
    app = _Application(
        title="leadflow",
        summary="Records in from the CRM, the funnel's decisions out.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    too_large = TooLargePages()
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        page=too_large,
        timeout_s=settings.body_timeout.total_seconds(),
    )
    app.add_middleware(LockWaitBound, seconds=settings.lock_timeout.total_seconds())
    _add_error_handlers(app)
    authorized = Depends(_authorizer(runtime))
    for kind in KINDS:
        app.add_api_route(
            f"/v1/{kind}",
            _record_route(runtime, holder, kind),
            methods=["POST"],
            name=f"post_{kind}",
            summary=f"Upsert {kind} by external id (one object or a list)",
            dependencies=[authorized],
            openapi_extra=request_body(kind, runtime.settings),
            responses=_POST_RESPONSES,
        )
    app.add_api_route(
        # :path: an external id may hold "/" (sent bare or as %2F, which the server decodes).
        "/v1/leads/{external_id:path}",
        _lead_route(runtime, holder),
        methods=["GET"],
        name="get_lead",
        summary="A lead, its owner, its audit trail (oldest first) and why it has its score",
        dependencies=[authorized],
        responses=_GET_RESPONSES,
    )
    app.add_api_route(
        # :path, as the lead's own route: an external id may hold "/". A GET of this path is
        # that route's (a lead named ".../resubscribe"), a POST this one's.
        "/v1/leads/{external_id:path}/resubscribe",
        _resubscribe_route(runtime),
        methods=["POST"],
        name="resubscribe_lead",
        summary="Re-subscribe an unsubscribed lead to marketing email, with the reason (audited)",
        dependencies=[authorized],
        openapi_extra=REQUEST_BODY,
        responses={**_POST_RESPONSES, 404: {"description": "no such lead", **ERROR_BODY}},
    )
    app.include_router(probe_routes(runtime, holder, leading))
    app.include_router(tracking_routes(runtime, holder))
    app.include_router(dashboard_routes(runtime, holder, funnel, too_large))
    return app


class _Application(FastAPI):
    """FastAPI, its OpenAPI document completed with the public routes of tracked email."""

    def openapi(self) -> dict[str, Any]:
        built = self.openapi_schema is not None
        document = super().openapi()  # built on the first call, then the one kept
        if not built:
            document["paths"].update(public_paths())
        return document


def _authorizer(runtime: Runtime) -> Callable[..., Awaitable[None]]:
    token = runtime.settings.http.token
    expected = token.get_secret_value().encode() if token is not None else None

    async def authorize(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if expected is None:
            return
        if credentials is None:
            _refuse(request, "missing bearer token")
        given = credentials.credentials.encode()
        # Constant time, so the comparison does not tell how much of a guess was right.
        if not hmac.compare_digest(given, expected):
            _refuse(request, "invalid bearer token")

    return authorize


def _refuse(request: Request, reason: str) -> NoReturn:
    client = request.client.host if request.client else None
    log.warning("http_unauthorized", path=request.url.path, client=client, reason=reason)
    raise HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


def _record_route(
    runtime: Runtime, holder: SnapshotHolder[RuleSet], kind: ImportKind
) -> Callable[[Request], Awaitable[Any]]:
    schema = record_schema(kind, runtime.settings)
    too_many = partial(too_many_columns, settings=runtime.settings)
    mapping = runtime.settings.imports.mappings.get(kind, ImportMapping())
    # The nests a JSONL file of this kind is flattened by: a posted object reads as its line.
    nests = nested_objects(KIND_FIELDS[kind], mapping.columns)
    max_records = runtime.settings.http.max_records

    async def post_records(request: Request) -> JSONResponse:
        _require_json(request.headers.get("content-type"))
        _require_plain(request.headers.get("content-encoding"))
        posted = read_body(
            await request.body(), schema, partial(too_many, kind), nests, max_records
        )
        rule_set = holder.current_or_none()
        # Stamped with `now`, committed later: in flight till then (the Funnel page's as-of).
        with runtime.in_flight.writing() as now:
            result = await run_in_threadpool(
                upsert_records,
                runtime.engine,
                runtime.settings,
                kind,
                posted,
                now=now,
                rule_set=rule_set,
            )
            log.info("records_upserted", **result.as_json())
            model = rule_set.active_scoring if rule_set is not None else None
            if model is not None and kind in ("leads", "activities") and result.keys:
                # Engagement counts the moment it arrives, not at the next tick.
                await run_in_threadpool(
                    rescore_posted, runtime.engine, model, kind, result.keys, now
                )
        return JSONResponse(result.as_json())

    post_records.__name__ = f"post_{kind}"
    return post_records


def _require_json(content_type: str | None) -> None:
    """415 unless the body is declared JSON. A browser posts ``text/plain``, a form's types or
    no type at all to any site without asking it first (no CORS preflight), so a web page open
    beside an anonymous local trial could otherwise write leads into it."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    shown = repr(content_type) if content_type else "none"
    raise HTTPException(415, f"Content-Type must be application/json, got {shown}")


def _require_plain(content_encoding: str | None) -> None:
    """415 for a compressed body: it was read as text and answered 422 "not UTF-8 text", which
    sent an integrator looking at their encoding of characters, not of the body."""
    coding = (content_encoding or "").strip().lower()
    if coding in ("", "identity"):
        return
    msg = f"Content-Encoding {content_encoding!r} is not accepted: send the body uncompressed"
    raise HTTPException(415, msg)


def _lead_route(runtime: Runtime, holder: SnapshotHolder[RuleSet]) -> Callable[..., Awaitable[Any]]:
    async def get_lead(
        request: Request,
        external_id: Annotated[str, Path(max_length=200)],
        audit_limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> JSONResponse:
        _refuse_unknown_query(request, {"audit_limit"})
        problem = text_problem(external_id)  # %00 in the path: PostgreSQL refuses the lookup
        if problem is not None:
            reject(("path", "external_id"), problem, "string_type")
        found = await run_in_threadpool(lead_with_audit, runtime.engine, external_id, audit_limit)
        if found is None:
            raise HTTPException(404, f"no lead with external id {external_id!r}")
        rule_set = holder.current_or_none()
        model = rule_set.scoring if rule_set is not None else None
        explanation = await run_in_threadpool(
            partial(explain_score, as_stored=True),
            runtime.engine,
            model,
            external_id,
            runtime.clock.now(),
        )
        # What `leadflow score explain` prints: every contribution, adding up to the score.
        found["score_explanation"] = None if explanation is None else explanation.as_json()
        return JSONResponse(found)

    return get_lead


def _resubscribe_route(runtime: Runtime) -> Callable[..., Awaitable[Any]]:
    async def resubscribe_lead(
        request: Request, external_id: Annotated[str, Path(max_length=200)]
    ) -> JSONResponse:
        _require_json(request.headers.get("content-type"))
        _require_plain(request.headers.get("content-encoding"))
        problem = text_problem(external_id)
        if problem is not None:
            reject(("path", "external_id"), problem, "string_type")
        reason = reason_of(json_body(await request.body()))
        now = runtime.clock.now()
        answer = await run_in_threadpool(resubscribe, runtime.engine, external_id, reason, now)
        if answer is None:
            raise HTTPException(404, f"no lead with external id {external_id!r}")
        log.info("lead_resubscribed", external_id=external_id, done=answer["resubscribed"])
        return JSONResponse(answer)

    return resubscribe_lead


def _refuse_unknown_query(request: Request, known: set[str]) -> None:
    """422 for a query parameter the OpenAPI document does not name: a misspelt
    ``audit_limt=5`` would otherwise be ignored without a word."""
    unknown = [name for name in request.query_params if name not in known]
    if unknown:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": "unknown query parameter",
                    "type": "extra_forbidden",
                }
                for name in unknown
            ]
        )


def _add_error_handlers(app: FastAPI) -> None:
    async def rejected(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RecordsRejectedError)
        return JSONResponse({"detail": [e.as_json() for e in exc.errors]}, status_code=422)

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = [
            {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning(
            "http_database_unavailable", path=request.url.path, error=str(exc).splitlines()[0]
        )
        detail = LOCKED if lock_wait_ran_out(exc) else "the database is unavailable; retry later"
        return JSONResponse(
            {"detail": detail},
            status_code=503,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )

    app.add_exception_handler(RecordsRejectedError, rejected)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(OperationalError, unavailable)
    app.add_exception_handler(DatabaseUnavailableError, unavailable)
    # Every connection of the pool busy for the whole checkout wait (a burst of requests behind
    # a slow or locked store): as unavailable as a store that does not answer, not a 500.
    app.add_exception_handler(PoolTimeoutError, unavailable)
