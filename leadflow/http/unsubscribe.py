"""leadflow's own unsubscribe: a confirmation page and the one-click ``POST`` (RFC 8058).

Two links lead here. ``/t/u/<token>`` is the tracked unsubscribe link in the body of a tracked
marketing email; ``/t/unsubscribe?lead=ID&token=T`` is the plain link (``List-Unsubscribe``
header, and the body when tracking is off) when ``mail.unsubscribe_url`` is unset and
``mail.tracking.base_url`` gives leadflow a public address.

``GET`` only shows a page with one button: security gateways and link scanners fetch every
link of a message on delivery, so following a link must not unsubscribe anyone. ``POST`` (the
button, or a mail client's one-click ``List-Unsubscribe=One-Click``) unsubscribes the lead
(:func:`leadflow.engine.unsubscribe.unsubscribe_lead`) and records the ``unsubscribe`` activity,
in one transaction; a second ``POST`` changes nothing. With ``mail.unsubscribe_url`` set (the
CRM's preference centre owns the flag), ``GET /t/u/<token>`` redirects there as before.
A token leadflow did not sign answers 404 and writes nothing: a small page for a person
(``GET``, or a ``POST`` accepting HTML), JSON for a mail client's one-click ``POST``. A store
that does not answer is a 503 with ``Retry-After`` alike: a page saying the unsubscribe could
not be recorded and to try again in a few minutes, JSON for the one-click ``POST``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from leadflow.engine.runtime import Runtime
from leadflow.engine.unsubscribe import unsubscribe_lead
from leadflow.errors import DatabaseUnavailableError
from leadflow.http.cancelled import answer_if_cancelled, route_path
from leadflow.ingest.activity_rows import bump_last_activity
from leadflow.mail.context import (
    OWN_UNSUBSCRIBE_PATH,
    unsubscribe_token,
    without_unsubscribe_token,
)
from leadflow.mail.tracking_hits import Hit, RecordedHit, record_hit
from leadflow.mail.tracking_tokens import CODES, TrackedLink, tracking_key, verify
from leadflow.mail_settings import TrackingSettings
from leadflow.rule_language.model import RuleSet
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.scoring.rescoring import rescore
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.store.database import transaction
from leadflow.store.tables import LEADS

log = structlog.get_logger("leadflow.http")

Recorder = Callable[[Request, TrackedLink], Awaitable[None]]
NO_STORE = {"Cache-Control": "no-store, private", "Pragma": "no-cache"}
"""Every tracked hit reaches leadflow (a second open is seen, and marked a repeat); a page
is never kept by a cache between a person and leadflow."""
_HEADERS = {
    **NO_STORE,
    # Nothing but the page itself: no script, no asset from anywhere, not framed elsewhere.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}
_ONE_CLICK = b"List-Unsubscribe=One-Click"
_STORE_AWAY = (OperationalError, PoolTimeoutError, DatabaseUnavailableError)
"""What a store that does not answer raises (down, locked, every pooled connection busy): the
API's 503."""
_RETRY_AFTER_PAGE = "120"
"""The ``Retry-After`` of an unsubscribe that could not be recorded: the page asks the person
to try again in a few minutes; a one-click sender may retry after two."""


@dataclass(frozen=True)
class _Outcome:
    known: bool
    """The lead is in the store."""
    unsubscribed: bool
    """It is unsubscribed now."""
    changed: bool = False
    """This request unsubscribed it."""


def unsubscribe_routes(
    runtime: Runtime, holder: SnapshotHolder[RuleSet], record: Recorder
) -> APIRouter:
    """The page and one-click routes; ``record`` writes a followed link as tracking does."""
    router = APIRouter(include_in_schema=False)
    settings = runtime.settings
    key = tracking_key(settings)
    external = settings.mail.unsubscribe_url is not None

    async def answer(request: Request, link: TrackedLink) -> Response:
        """The page for ``link``'s lead, or the 503 when the store does not answer."""
        answer_if_cancelled(request, _unrecorded(request))
        try:
            outcome = await unsubscribe(request, link)
        except _STORE_AWAY as exc:
            # As the API's 503 is logged, the path without the token in it.
            log.warning(
                "http_database_unavailable",
                path=route_path(request.scope),
                error=str(exc).splitlines()[0],
            )
            return _unrecorded(request)
        return _page(outcome)

    async def unsubscribe(request: Request, link: TrackedLink) -> _Outcome:
        """Unsubscribe ``link``'s lead for a POST; for a GET only look at it."""
        if request.method != "POST":
            return await run_in_threadpool(_state, runtime.engine, link.lead)
        rule_set = holder.current_or_none()
        model = rule_set.active_scoring if rule_set is not None else None
        via = "one_click" if _ONE_CLICK in await request.body() else "unsubscribe_page"
        hit = Hit(
            link=link,
            at=runtime.clock.now(),
            user_agent=request.headers.get("user-agent"),
            ip=request.client.host if request.client else None,
            method="POST",
        )
        tracking = settings.mail.tracking
        return await run_in_threadpool(_unsubscribe, runtime.engine, tracking, hit, model, via)

    @router.api_route(
        f"/t/{CODES['unsubscribe']}/{{token}}",
        methods=["GET", "HEAD", "POST"],
        name="tracking_unsubscribe",
    )
    async def tracked_unsubscribe(request: Request, token: str) -> Response:
        link = verify(token, key, "unsubscribe")
        if link is None or link.url is None:
            return _unknown_link(request)
        # The activity keeps the link without its token, as the plain link's does (below).
        followed = replace(link, url=without_unsubscribe_token(settings, link.lead, link.url))
        if external and request.method != "POST":
            redirect = RedirectResponse(link.url, status_code=302, headers=_HEADERS)
            answer_if_cancelled(request, redirect)
            await record(request, followed)
            return redirect
        return await answer(request, followed)

    @router.api_route(OWN_UNSUBSCRIBE_PATH, methods=["GET", "HEAD", "POST"], name="unsubscribe")
    async def own_unsubscribe(request: Request, lead: str = "", token: str = "") -> Response:
        expected = unsubscribe_token(settings, lead)
        # Constant time: the comparison must not tell how much of a guessed token was right.
        if not lead or not hmac.compare_digest(token.encode(), expected.encode()):
            return _unknown_link(request)
        # The link as the activity keeps it, without the token: the token unsubscribes the
        # lead, and activities are read (and exported) by far more people than the email.
        followed = without_unsubscribe_token(settings, lead, str(request.url))
        link = TrackedLink("unsubscribe", "", lead, "", followed)
        return await answer(request, link)

    return router


def _state(engine: Engine, lead: str) -> _Outcome:
    with engine.connect() as connection:
        flag = connection.execute(
            select(LEADS.c.unsubscribed).where(LEADS.c.external_id == lead)
        ).scalar_one_or_none()
    return _Outcome(known=flag is not None, unsubscribed=bool(flag))


def _unsubscribe(
    engine: Engine, settings: TrackingSettings, hit: Hit, model: ScoringModel | None, via: str
) -> _Outcome:
    """Flag the lead, end its nurture, cancel its marketing and record the hit, together."""
    with transaction(engine) as session:
        lead_id = session.execute(
            select(LEADS.c.id).where(LEADS.c.external_id == hit.link.lead)
        ).scalar_one_or_none()
        if lead_id is None:
            return _Outcome(known=False, unsubscribed=False)
        if not unsubscribe_lead(session, lead_id, hit.at, via):
            return _Outcome(known=True, unsubscribed=True)
        recorded = record_counted(session, settings, hit)
        counts = recorded is not None and recorded.counts
    if counts and model is not None:
        rescore(engine, model, hit.at, lead_ids=[lead_id])
    return _Outcome(known=True, unsubscribed=True, changed=True)


def record_counted(session: Session, settings: TrackingSettings, hit: Hit) -> RecordedHit | None:
    """Write the hit as an activity; a person's new one also moves the lead's last activity
    (the caller rescores the lead once the transaction is committed)."""
    recorded = record_hit(session, settings, hit)
    if recorded is not None and recorded.counts:
        bump_last_activity(session.connection(), LEADS, "lead_id", [recorded.lead_id])
    return recorded


def _page(outcome: _Outcome) -> HTMLResponse:
    if not outcome.known:
        title, body = "Unsubscribe", "<p>There is nothing to unsubscribe from here any more.</p>"
    elif outcome.changed:
        title, body = (
            "Unsubscribed",
            "<p>You are unsubscribed: you will get no more of these emails.</p>",
        )
    elif outcome.unsubscribed:
        title, body = (
            "Unsubscribed",
            "<p>You are already unsubscribed: you get no more of these emails.</p>",
        )
    else:
        title, body = (
            "Unsubscribe",
            "<p>Stop receiving these emails?</p>\n"
            '<form method="post"><button type="submit">Unsubscribe</button></form>',
        )
    return _html(title, body)


def _unrecorded(request: Request) -> Response:
    """503 for an unsubscribe link while the store does not answer: a person reads a page
    saying so and to try again in a few minutes, not ``{"detail": ...}``; a mail client's
    one-click ``POST`` that does not ask for HTML gets the API's JSON answer."""
    retry = {"Retry-After": _RETRY_AFTER_PAGE}
    if request.method == "POST" and "text/html" not in request.headers.get("accept", ""):
        body = {"detail": "the database is unavailable; retry later"}
        return JSONResponse(body, status_code=503, headers={**NO_STORE, **retry})
    return _html(
        "Please try again later",
        "<p>Your unsubscribe could not be recorded right now.</p>\n"
        "<p>Please try again in a few minutes, with the unsubscribe link of the email.</p>",
        status_code=503,
        headers=retry,
    )


def _unknown_link(request: Request) -> Response:
    """404 for a link leadflow did not sign (cut short, mistyped, or signed with a secret
    since rotated): a person following it reads a page, not ``{"detail":"unknown link"}``;
    a mail client's one-click ``POST`` that does not ask for HTML keeps the JSON answer."""
    if request.method == "POST" and "text/html" not in request.headers.get("accept", ""):
        raise HTTPException(404, "unknown link")
    return unknown_link_page(
        "unsubscribe link", "Please use the unsubscribe link of a more recent email."
    )


def unknown_link_page(what: str, advice: str) -> HTMLResponse:
    """The 404 page a person reads for a ``what`` leadflow did not sign (a tracked link, an
    unsubscribe link), instead of ``{"detail":"unknown link"}``."""
    return _html(
        "Link not recognised",
        f"<p>This {what} is not one we recognise: it may have been cut short or "
        "mistyped, or come from an older email.</p>\n"
        f"<p>{advice}</p>",
        status_code=404,
    )


def _html(
    title: str, body: str, status_code: int = 200, headers: dict[str, str] | None = None
) -> HTMLResponse:
    """The small self-contained page every answer here is: no script, no asset from anywhere."""
    html = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;"
        "padding:0 1rem;color:#222}button{font:inherit;padding:.5rem 1.25rem;cursor:pointer}"
        "</style></head>\n"
        f"<body><h1>{title}</h1>\n{body}\n</body></html>\n"
    )
    return HTMLResponse(html, status_code=status_code, headers={**_HEADERS, **(headers or {})})
