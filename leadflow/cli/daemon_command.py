"""``leadflow daemon``: the long-running service, until SIGTERM or Ctrl-C (then exit 0).

A configuration the daemon would refuse (the HTTP API without a token) is checked before the
store, the scheduler or the log are touched: the refusal is the one ``error:`` line, exit 1.
"""

from __future__ import annotations

import typer

from leadflow.cli.context import cli_context
from leadflow.clock import SystemClock


def daemon(ctx: typer.Context) -> None:
    """Run the scheduler, the outbox sender and the rule watcher until SIGTERM or Ctrl-C."""
    import asyncio

    from leadflow.engine.runtime import Runtime
    from leadflow.service import run_daemon

    context = cli_context(ctx)
    settings = context.settings
    if settings.http.enabled:
        from leadflow.http import check_http_settings

        check_http_settings(settings.http)
    # The dashboard's users are read again from this file when it changes (a role lowered
    # counts on the next click); the rest of the configuration is read once, here.
    config_file = context.loaded.config_file
    runtime = Runtime.build(context.engine, settings, SystemClock(), config_file=config_file)
    asyncio.run(run_daemon(runtime))
