"""The dashboard's routes under ``/ui/``: a login, six read-only pages and one write (retry).

Every page needs a signed-in user (a session cookie, or a trusted reverse proxy's header);
the retry needs the operator role and the session's CSRF token. Pages are rendered on the
server from the package's Jinja templates; the one stylesheet is served from the package.
Database calls run in worker threads, each bounded by a page size; the Funnel page's report,
which is not, is served from a snapshot computed in the background
(:mod:`leadflow.dashboard.funnel_snapshots`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Scope

from leadflow.dashboard.access import COOKIE, SESSION_SECRET_NAME, Access, Principal
from leadflow.dashboard.form_body import MAX_FORM, FormTooLargeError, read_form
from leadflow.dashboard.funnel_charts import ChartDrawings
from leadflow.dashboard.funnel_page import (
    FunnelNumbers,
    ends_later_note,
    period_days,
    stage_counts,
)
from leadflow.dashboard.funnel_snapshots import FunnelSnapshots, Look, funnel_snapshots
from leadflow.dashboard.lead_deals import lead_deals
from leadflow.dashboard.outbox_page import messages, retry, status_counts
from leadflow.dashboard.page_assets import icon, page_templates, stylesheet
from leadflow.dashboard.rules_page import rules_view
from leadflow.dashboard.search import search_leads
from leadflow.dashboard.sla_board import business_time_left, rep_choices, sla_board
from leadflow.dashboard.timeline import Cursor, lead_header, timeline
from leadflow.dashboard.users import DashboardUsers
from leadflow.engine.runtime import Runtime
from leadflow.errors import UserInputError
from leadflow.mail.context import fill_url
from leadflow.outbox.store import STATUSES
from leadflow.rule_language.model import RuleSet
from leadflow.scoring.explain import explain_score
from leadflow.store.secrets import stored_secret

if TYPE_CHECKING:
    from leadflow.service.rule_reload import SnapshotHolder

log = structlog.get_logger("leadflow.dashboard")

SLA_STATUSES = ("running", "breached", "met", "met_late", "reassigned", "cancelled")
"""Every status a timer ends in (``engine/sla.py``), so each ended timer the report counts
has a list: met late and reassigned ones had none."""
_HEADERS = {
    # Nothing but the page's own stylesheet: no script, no frame, no form to another origin.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),  # a <meta http-equiv="refresh"> is a navigation, not a fetch: no directive covers it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_CHART_HEADERS = {
    # A chart is an image: matplotlib styles its shapes inline, it has no script to run.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


RELOAD_S = 3
"""A Funnel page waiting for its period's figures reloads itself after this many seconds."""
CHART_WAIT_S = 30.0
"""How long a chart image whose figures are no longer kept waits for its period's report."""


def dashboard_routes(
    runtime: Runtime,
    holder: SnapshotHolder[RuleSet],
    snapshots: FunnelSnapshots | None = None,
    too_large: TooLargePages | None = None,
) -> APIRouter:
    """The ``/ui/`` routes; none when ``dashboard.enabled`` is false. ``snapshots``: the
    Funnel page's (the daemon's, which it also warms); by default a store of their own."""
    router = APIRouter(include_in_schema=False)
    settings = runtime.settings.dashboard
    if not settings.enabled:
        return router
    secret = settings.session_secret
    key = (
        secret.get_secret_value()
        if secret is not None
        else stored_secret(runtime.engine, SESSION_SECRET_NAME, runtime.clock.now())[0]
    )
    users = DashboardUsers(settings.users, runtime.config_file)
    access = Access(settings, key.encode(), users)
    pages = _Pages(runtime, holder, access, snapshots or funnel_snapshots(runtime))
    router.add_api_route("/ui/", pages.home, methods=_READ)
    router.add_api_route("/ui/static/dashboard.css", stylesheet, methods=_READ)
    router.add_api_route("/ui/static/icon.svg", icon, methods=_READ)
    router.add_api_route("/ui/login", pages.login_form, methods=_READ)
    router.add_api_route("/ui/login", pages.login, methods=["POST"])
    router.add_api_route("/ui/logout", pages.logout, methods=["POST"])
    router.add_api_route("/ui/funnel/charts/{name}.svg", pages.funnel_chart, methods=_READ)
    for path, handler in (
        ("/ui/funnel", pages.funnel),
        ("/ui/rules", pages.rules),
        ("/ui/sla", pages.sla),
        ("/ui/outbox", pages.outbox),
        ("/ui/search", pages.search),
        ("/ui/leads/{external_id:path}", pages.lead),
    ):
        router.add_api_route(path, handler, methods=_READ)
    router.add_api_route("/ui/outbox/{outbox_id}/retry", pages.retry, methods=["POST"])
    # Last: any other address under /ui/ is the dashboard's 404 page, not the API's JSON.
    router.add_api_route("/ui/{rest:path}", pages.not_found, methods=_READ)
    if too_large is not None:
        too_large.page = pages.body_too_large
    return router


_READ = ["GET", "HEAD"]
"""A page's methods: HEAD (a link checker, a monitor, ``curl -I``) is answered as GET is, the
server leaving out the body; it was a 405 in the API's JSON."""


class TooLargePages:
    """The dashboard's 413 page for ``http.BodyLimit`` (which refuses a body before any route
    sees it): set when the dashboard's routes are made, None while it is disabled."""

    def __init__(self) -> None:
        self.page: Callable[[Request, int], Response] | None = None

    def __call__(self, scope: Scope, limit: int) -> Response | None:
        if self.page is None or not str(scope.get("path", "")).startswith("/ui/"):
            return None
        return self.page(Request(scope), limit)


class _Pages:
    def __init__(
        self,
        runtime: Runtime,
        holder: SnapshotHolder[RuleSet],
        access: Access,
        snapshots: FunnelSnapshots,
    ) -> None:
        self.runtime = runtime
        self.snapshots = snapshots
        self.holder = holder
        self.access = access
        self.templates = page_templates()
        self.charts = ChartDrawings()

    # --- who is asking ------------------------------------------------------------------

    def principal(self, request: Request) -> Principal | None:
        now = self.runtime.clock.now()
        header = self.access.settings.trusted_header
        if header is not None:
            client = request.client.host if request.client else None
            proxied = self.access.from_proxy(request.headers.get(header), client)
            if proxied is not None:
                return proxied
        return self.access.from_cookie(request.cookies.get(COOKIE), now)

    def render(
        self, name: str, who: Principal | None, code: int = 200, /, **values: Any
    ) -> HTMLResponse:
        template = self.templates.get_template(name)
        csrf = self.access.csrf_token(who) if who is not None else ""
        values.setdefault("page", "")
        html = template.render(who=who, csrf=csrf, now=self.runtime.clock.now(), **values)
        return HTMLResponse(html, status_code=code, headers=_HEADERS)

    def _signed_in(self, request: Request) -> Principal | Response:
        who = self.principal(request)
        if who is None:
            target = quote(request.url.path, safe="/")
            return RedirectResponse(f"/ui/login?next={target}", status_code=303)
        return who

    # --- login --------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/ui/funnel", status_code=303)

    async def login_form(self, request: Request, next: str = "/ui/funnel") -> Response:
        return self.render("login.html", None, next=_local(next), error=None)

    async def not_found(self, request: Request, rest: str) -> Response:
        """404 as a page of the dashboard for an address it has no page at (a browser showed
        ``{"detail":"Not Found"}``); with the pages' links for whoever is signed in."""
        return self.render("not_found.html", self.principal(request), 404, path=f"/ui/{rest}")

    def too_large(self, path: str, limit: int, who: Principal | None = None) -> HTMLResponse:
        """413 as a page of the dashboard: a browser showed the API's JSON error."""
        back = "/ui/outbox?status=failed" if path.startswith("/ui/outbox/") else "/ui/login"
        return self.render("too_large.html", who, 413, limit=limit, back=back)

    async def _form(self, request: Request, who: Principal | None) -> dict[str, str] | Response:
        """The form's fields, or the too-large page for a form over ``MAX_FORM``."""
        try:
            return await read_form(request)
        except FormTooLargeError:
            return self.too_large(request.url.path, MAX_FORM, who)

    def body_too_large(self, request: Request, limit: int) -> HTMLResponse:
        """The page for a body over http.max_body_bytes, refused before any route saw it."""
        return self.too_large(request.url.path, limit, self.principal(request))

    async def login(self, request: Request) -> Response:
        form = await self._form(request, None)
        if isinstance(form, Response):
            return form
        user, password = form.get("username", ""), form.get("password", "")
        target = _local(form.get("next", "/ui/funnel"))
        client = request.client.host if request.client else "?"
        now = self.runtime.clock.now()
        if self.access.locked(user, client, now):
            log.warning("dashboard_login_locked", user=user, client=client)
            error = "Too many failed logins: try again later."
            return self.render("login.html", None, 429, next=target, error=error)
        good = await run_in_threadpool(self.access.check_password, user, password, client, now)
        if not good:
            log.warning("dashboard_login_refused", user=user, client=client)
            error = "Wrong user name or password."
            return self.render("login.html", None, 401, next=target, error=error)
        log.info("dashboard_login", user=user, client=client)
        response = RedirectResponse(target, status_code=303)
        settings = self.access.settings
        response.set_cookie(
            COOKIE,
            self.access.new_session(user, now),
            max_age=int(settings.session_lifetime.total_seconds()),
            path="/ui/",
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookie,
        )
        return response

    async def logout(self, request: Request) -> Response:
        who = self.principal(request)
        form = await self._form(request, who)
        if isinstance(form, Response):
            return form
        if who is not None and not self.access.csrf_ok(who, form.get("csrf", "")):
            return self.render("refused.html", who, 403, reason="The form is out of date.")
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui/")
        return response

    # --- pages --------------------------------------------------------------------------

    async def funnel(self, request: Request) -> Response:
        who = self._signed_in(request)
        if isinstance(who, Response):
            return who
        now = self.runtime.clock.now()
        query = request.query_params
        try:
            first, last = period_days(query.get("from"), query.get("to"), now.date())
        except UserInputError as exc:
            first, last = period_days(None, None, now.date())
            problem: str | None = str(exc)
        else:
            problem = None
        # The stage counts (one indexed query) are read while the period's figures are looked
        # up, and waited for when a computation has just started.
        wait = self.runtime.settings.dashboard.funnel_wait.total_seconds()
        stages, look = await asyncio.gather(
            run_in_threadpool(stage_counts, self.runtime.engine, self.runtime.settings),
            run_in_threadpool(self.snapshots.look, first, last, wait),
        )
        figures = look.snapshot.figures if look.snapshot is not None else None
        if figures is not None:
            self.charts.remember(list(figures.charts))
        numbers = FunnelNumbers.of(stages, first, last, figures)
        # The report's own line, as of the snapshot's instant: the report run then says it.
        ends_later = (
            ends_later_note(first, last, look.snapshot.as_of) if look.snapshot is not None else None
        )
        return self.render(
            "funnel.html",
            who,
            numbers=numbers,
            look=look,
            ends_later=ends_later,
            reload=_reload(look),
            refresh=self.runtime.settings.dashboard.funnel_refresh,
            problem=problem,
            page="funnel",
        )

    async def funnel_chart(self, request: Request, name: str, v: str = "") -> Response:
        """One chart of the Funnel page as SVG: the figures the page named by digest ``v``."""
        who = self._signed_in(request)
        if isinstance(who, Response):
            return who
        svg = await run_in_threadpool(self.charts.svg, name, v)
        cache = "private, max-age=3600"  # the URL names the figures: its drawing never changes
        if svg is None:
            svg, cache = await self._chart_again(request, name)
        if svg is None or not svg.startswith("<svg"):  # no such chart, or nothing to draw
            return Response("no such chart", status_code=404, media_type="text/plain")
        headers = {**_CHART_HEADERS, "Cache-Control": cache}
        return Response(svg, media_type="image/svg+xml", headers=headers)

    async def _chart_again(self, request: Request, name: str) -> tuple[str | None, str]:
        """A chart whose figures are no longer kept: its period's snapshot (waited for when
        it is being computed), as the page would show it now."""
        now = self.runtime.clock.now()
        query = request.query_params
        try:
            first, last = period_days(query.get("from"), query.get("to"), now.date())
        except UserInputError:
            return None, "no-store"
        look = await run_in_threadpool(self.snapshots.look, first, last, CHART_WAIT_S)
        views = look.snapshot.figures.charts if look.snapshot is not None else ()
        view = next((view for view in views if view.name == name), None)
        if view is None:
            return None, "no-store"
        self.charts.remember([view])
        return await run_in_threadpool(self.charts.svg, name, view.digest), "no-store"

    async def rules(self, request: Request) -> Response:
        who = self._signed_in(request)
        if isinstance(who, Response):
            return who
        rule_set = self.holder.current_or_none()
        view = await run_in_threadpool(
            rules_view, self.runtime.engine, rule_set, self.runtime.clock.now()
        )
        return self.render("rules.html", who, view=view, reload=self.holder.status(), page="rules")

    async def sla(
        self,
        request: Request,
        status: str = "running",
        rep: str = "",
        pool: str = "",
        page: str = "0",
    ) -> Response:
        who = self._signed_in(request)
        if isinstance(who, Response):
            return who
        status = status if status in SLA_STATUSES else "running"
        number = _page_number(page)
        timers, more = await run_in_threadpool(
            lambda: sla_board(
                self.runtime.engine, status, rep=rep or None, pool=pool or None, page=number
            )
        )
        reps = await run_in_threadpool(rep_choices, self.runtime.engine)
        pools = sorted({p for r in reps for p in r.pools})
        query = {"status": status, "rep": rep, "pool": pool}
        left = business_time_left(timers, self.runtime.settings, self.runtime.clock.now())
        return self.render(
            "sla.html",
            who,
            timers=timers,
            left=left,
            more=more,
            reps=reps,
            pools=pools,
            filters=query,
            statuses=SLA_STATUSES,
            pager=_pager("/ui/sla", query, number, more),
            page="sla",
        )

    async def lead(self, request: Request, external_id: str, after: str = "") -> Response:
        who = self._signed_in(request)
        if isinstance(who, Response):
            return who
        engine = self.runtime.engine
        header = await run_in_threadpool(lead_header, engine, external_id)
        if header is None:
            return self.render("missing.html", who, 404, external_id=external_id, page="")
        cursor = Cursor.parse(after) if after else None
        events, more = await run_in_threadpool(timeline, engine, header, cursor)
        deals, more_deals = await run_in_threadpool(lead_deals, engine, header.id)
        rule_set = self.holder.current_or_none()
        model = rule_set.scoring if rule_set is not None else None
        explanation = await run_in_threadpool(
            explain_score, engine, model, external_id, self.runtime.clock.now()
        )
        crm = fill_url(
            self.runtime.settings.crm.record_url, "crm.record_url", external_id=external_id
        )
        next_page = (
            f"/ui/leads/{quote(external_id, safe='')}?{urlencode({'after': events[-1].cursor})}"
            if more and events
            else None
        )
        return self.render(
            "lead.html",
            who,
            lead=header,
            attributes=header.attribute_rows(self.runtime.settings.attributes.leads),
            deals=deals,
            more_deals=more_deals,
            events=events,
            next_page=next_page,
            explanation=explanation,
            crm_url=crm,
            page="",
        )

    async def outbox(
        self, request: Request, status: str = "failed", page: str = "0", retried: str = "0"
    ) -> Response:
        who = self._signed_in(request)
        if isinstance(who, Response):
            return who
        status = status if status in STATUSES else "failed"
        number = _page_number(page)
        lines, more = await run_in_threadpool(messages, self.runtime.engine, status, number)
        counts = await run_in_threadpool(status_counts, self.runtime.engine)
        return self.render(
            "outbox.html",
            who,
            lines=lines,
            status=status,
            statuses=STATUSES,
            counts=counts,
            retried=_page_number(retried),
            pager=_pager("/ui/outbox", {"status": status}, number, more),
            page="outbox",
        )

    async def search(self, request: Request, q: str = "") -> Response:
        who = self._signed_in(request)
        if isinstance(who, Response):
            return who
        text = q[:200]
        found = await run_in_threadpool(search_leads, self.runtime.engine, text) if text else []
        return self.render("search.html", who, q=text, found=found, page="search")

    async def retry(self, request: Request, outbox_id: int) -> Response:
        who = self.principal(request)
        form = await self._form(request, who)
        if isinstance(form, Response):
            return form
        if who is None:
            return self.render("refused.html", None, 401, reason="Sign in first.")
        if not self.access.csrf_ok(who, form.get("csrf", "")):
            log.warning("dashboard_csrf_refused", user=who.user, outbox_id=outbox_id)
            return self.render("refused.html", who, 403, reason="The form is out of date.")
        if not who.may_write:
            log.warning("dashboard_write_refused", user=who.user, outbox_id=outbox_id)
            reason = f"{who.user} is a {who.role}: retrying needs the operator role."
            return self.render("refused.html", who, 403, reason=reason)
        try:
            line = await run_in_threadpool(
                retry, self.runtime.engine, outbox_id, self.runtime.clock.now()
            )
        except UserInputError as exc:
            return self.render("refused.html", who, 409, reason=str(exc).removeprefix("--retry: "))
        log.info("dashboard_outbox_retry", user=who.user, outbox_id=line.id)
        return RedirectResponse(f"/ui/outbox?status=failed&retried={line.id}", status_code=303)


def _local(target: str) -> str:
    """A dashboard path to go to after login; anything else (another site) is the funnel."""
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/funnel"


MAX_PAGE = 10_000


def _page_number(given: str) -> int:
    """A whole number from the address (a page, a message id): a hand-edited one that is not a
    number is 0 (never a validation error), and a huge one is capped."""
    try:
        return max(0, min(int(given), MAX_PAGE))
    except ValueError:
        return 0


def _pager(path: str, query: dict[str, str], page: int, more: bool) -> dict[str, str | None]:
    def link(number: int) -> str:
        return f"{path}?{urlencode({**query, 'page': number})}"

    return {
        "previous": link(page - 1) if page > 0 else None,
        "next": link(page + 1) if more else None,
    }


def _reload(look: Look) -> int | None:
    """Seconds after which a Funnel page without its period's figures reloads itself."""
    waiting = look.snapshot is None and look.failure is None
    return RELOAD_S if waiting and (look.computing or look.busy) else None
