"""``leadflow daemon``: the long-running service, until SIGTERM or Ctrl-C (then exit 0)."""

from __future__ import annotations

import asyncio

import typer

from leadflow.cli.context import cli_context
from leadflow.clock import SystemClock
from leadflow.engine.runtime import Runtime


def daemon(ctx: typer.Context) -> None:
    """Run the scheduler, the outbox sender and the rule watcher until SIGTERM or Ctrl-C."""
    from leadflow.service import run_daemon

    context = cli_context(ctx)
    runtime = Runtime.build(context.engine, context.settings, SystemClock())
    asyncio.run(run_daemon(runtime))
