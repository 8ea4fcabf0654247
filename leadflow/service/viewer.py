"""``leadflow dashboard serve``: the dashboard alone, over a store it only reads.

Why: the daemon serves the dashboard too, but it also ticks: pointed at ``leadflow demo``'s
store it ran, at today's date, every SLA check, nurture step and recycling due since the
demo's simulated week, and the store looked at was no longer the demo's. This serves the
``/ui/`` pages only, until SIGTERM or Ctrl-C: no scheduler, no outbox sender, no rule watcher,
no ``/v1`` API and no tracking links (which record activities). Every user is a viewer (an
operator's outbox retry is a write), and the secrets the daemon keeps in the store (the
session key, the unsubscribe key) are made for this process when the configuration sets none,
rather than stored. Its clock may be stopped at an instant (``--now``): the demo's last one.
"""

from __future__ import annotations

import asyncio
import secrets
import signal

import structlog
from fastapi import FastAPI
from pydantic import SecretStr

from leadflow.dashboard.routes import TooLargePages, dashboard_routes
from leadflow.engine.runtime import Runtime
from leadflow.errors import ConfigError
from leadflow.http import bind, serve
from leadflow.http.body_limit import BodyLimit
from leadflow.rule_language.model import RuleSet
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.settings import Settings

log = structlog.get_logger("leadflow.service")


def viewer_settings(settings: Settings) -> Settings:
    """``settings`` with every dashboard user a viewer and a session key of this process's
    own when none is configured; refused when the dashboard is off (nothing to serve)."""
    dashboard = settings.dashboard
    if not dashboard.enabled:
        msg = (
            "dashboard.enabled is false: nothing to serve; set dashboard.enabled: true "
            "(LEADFLOW_DASHBOARD__ENABLED=true) and a user (docs/dashboard.md)"
        )
        raise ConfigError(msg)
    users = {
        name: user.model_copy(update={"role": "viewer"}) for name, user in dashboard.users.items()
    }
    key = dashboard.session_secret or SecretStr(secrets.token_hex(32))
    update = {"users": users, "proxy_role": "viewer", "session_secret": key}
    return settings.model_copy(update={"dashboard": dashboard.model_copy(update=update)})


def viewer_app(runtime: Runtime, rule_set: RuleSet) -> FastAPI:
    """The ``/ui/`` pages of ``runtime``'s store, the rules page showing ``rule_set``."""
    holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=runtime.clock)
    holder.record_success(rule_set)
    app = FastAPI(title="leadflow dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    too_large = TooLargePages()
    app.add_middleware(
        BodyLimit,
        max_bytes=runtime.settings.http.max_body_bytes,
        page=too_large,
        timeout_s=runtime.settings.http.body_timeout.total_seconds(),
    )
    app.include_router(dashboard_routes(runtime, holder, None, too_large))
    return app


async def serve_dashboard(runtime: Runtime) -> None:
    """Serve :func:`viewer_app` on ``http.host``:``http.port`` until SIGTERM or SIGINT."""
    rule_set = await asyncio.to_thread(runtime.load_rules)
    app = viewer_app(runtime, rule_set)
    sock = bind(runtime.settings.http)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        log.info("dashboard_serving", now=runtime.clock.now().isoformat())
        header_timeout = runtime.settings.http.header_timeout.total_seconds()
        await serve(app, sock, stop, header_timeout_s=header_timeout)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        sock.close()
