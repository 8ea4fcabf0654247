"""The public routes of tracked email: the open pixel, the click redirect, the unsubscribe link.

``GET /t/o/<token>.gif`` always answers the pixel, whatever the token: a mail client or proxy
learns nothing about which tokens are valid. ``GET /t/c/<token>`` answers 302 to the URL signed
into the token, and 404 without a redirect for anything leadflow did not sign. ``HEAD`` is
answered the same way (and recorded as a machine's). ``/t/u/<token>``, the unsubscribe link,
is :mod:`leadflow.http.unsubscribe`'s: a page and a one-click ``POST``. No bearer token:
recipients follow these links. The routes are served whether or not ``mail.tracking.enabled``
is on, so links in email already sent keep working when tracking is turned off.

A valid hit is written as an activity (:mod:`leadflow.mail.tracking_hits`); a person's bumps the
lead's ``last_activity_at`` as imported activities do, and rescores the lead when the rule set
has an enabled scoring model. A database that cannot take the row costs the row, never the
redirect: the person still reaches the page, also when a stopping server cuts off a request
waiting for a slow database (:func:`~leadflow.http.cancelled.answer_if_cancelled`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from leadflow.engine.runtime import Runtime
from leadflow.errors import DatabaseUnavailableError
from leadflow.http.cancelled import answer_if_cancelled
from leadflow.http.unsubscribe import (
    NO_STORE,
    Recorder,
    record_counted,
    unknown_link_page,
    unsubscribe_routes,
)
from leadflow.mail.tracking_hits import Hit, RecordedHit
from leadflow.mail.tracking_tokens import CODES, Kind, TrackedLink, tracking_key, verify
from leadflow.mail_settings import TrackingSettings
from leadflow.rule_language.model import RuleSet
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.scoring.rescoring import rescore
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.store.database import transaction

log = structlog.get_logger("leadflow.http.tracking")

PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
"""A transparent 1x1 GIF."""


def tracking_routes(runtime: Runtime, holder: SnapshotHolder[RuleSet]) -> APIRouter:
    """The pixel and redirect routes for ``runtime``'s store; ``holder`` gives the scoring model."""
    router = APIRouter(include_in_schema=False)
    key = tracking_key(runtime.settings)
    record = _recorder(runtime, holder)

    @router.api_route("/t/o/{token}.gif", methods=["GET", "HEAD"], name="tracking_open")
    async def tracking_open(request: Request, token: str) -> Response:
        link = verify(token, key, "open")
        pixel = Response(PIXEL, media_type="image/gif", headers=NO_STORE)
        if link is not None:
            answer_if_cancelled(request, pixel)
            await record(request, link)
        return pixel

    router.add_api_route(
        f"/t/{CODES['click']}/{{token}}",
        _redirect_route(key, "click", record),
        methods=["GET", "HEAD"],
        name="tracking_click",
    )
    router.include_router(unsubscribe_routes(runtime, holder, record))
    return router


def _redirect_route(key: bytes, kind: Kind, record: Recorder) -> Callable[..., Awaitable[Response]]:
    async def tracking_redirect(request: Request, token: str) -> Response:
        link = verify(token, key, kind)
        if link is None or link.url is None:
            # A person clicked: a page, not JSON; nothing recorded, no redirect anywhere.
            return unknown_link_page("link", "Please open the link from the email again.")
        redirect = RedirectResponse(link.url, status_code=302, headers=NO_STORE)
        # A store slow enough for a stopping server to cut the request off costs the hit's
        # row, not the person's way to the page.
        answer_if_cancelled(request, redirect)
        await record(request, link)
        return redirect

    return tracking_redirect


def _recorder(runtime: Runtime, holder: SnapshotHolder[RuleSet]) -> Recorder:
    settings = runtime.settings.mail.tracking

    async def record(request: Request, link: TrackedLink) -> None:
        hit = Hit(
            link=link,
            at=runtime.clock.now(),
            user_agent=request.headers.get("user-agent"),
            ip=request.client.host if request.client else None,
            method=request.method,
        )
        rule_set = holder.current_or_none()
        model = rule_set.active_scoring if rule_set is not None else None
        try:
            recorded = await run_in_threadpool(_record, runtime.engine, settings, hit, model)
        except (SQLAlchemyError, DatabaseUnavailableError) as exc:
            log.warning(
                "tracking_hit_not_recorded",
                kind=link.kind,
                message_id=link.message_id,
                error=str(exc).splitlines()[0],
            )
            return
        if recorded is not None:
            log.info(
                "tracking_hit",
                kind=link.kind,
                lead_id=recorded.lead_id,
                message_id=link.message_id,
                machine_reason=recorded.machine_reason,
                inserted=recorded.inserted,
            )

    return record


def _record(
    engine: Engine, settings: TrackingSettings, hit: Hit, model: ScoringModel | None
) -> RecordedHit | None:
    """Write the hit; a person's new one moves the lead's last activity and score."""
    with transaction(engine) as session:
        recorded = record_counted(session, settings, hit)
    if recorded is not None and recorded.counts and model is not None:
        rescore(engine, model, hit.at, lead_ids=[recorded.lead_id])
    return recorded
