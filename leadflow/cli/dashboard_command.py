"""``leadflow dashboard``: what setting up the web dashboard needs (a password's hash), and
serving it alone over a store it only reads (``serve``: the demo's store as the demo left it)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from leadflow.cli.console import command
from leadflow.cli.context import cli_context
from leadflow.errors import UserInputError

app = typer.Typer(
    name="dashboard",
    help="The web dashboard under /ui/: make a password hash for dashboard.users, or serve the "
    "dashboard alone.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def hash_password() -> None:
    """Read a password (prompted twice, or one line on standard input) and print its argon2id
    hash for dashboard.users.NAME.password_hash."""
    from leadflow.dashboard.access import hash_password as argon2_hash

    if sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UserInputError("the password is empty")
    typer.echo(argon2_hash(password))


def serve(
    ctx: typer.Context,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            metavar="ISO",
            help="Show the store as of this instant, the clock stopped there (default: the "
            "clock's now); e.g. the last instant of `leadflow demo`'s days.",
        ),
    ] = None,
) -> None:
    """Serve the dashboard alone until Ctrl-C: no rule runs, no mail, no /v1 API; every user a
    viewer. The store is only read."""
    import asyncio

    from leadflow.clock import Clock, SettableClock, SystemClock, parse_instant
    from leadflow.service.viewer import serve_dashboard, viewer_settings

    clock: Clock = SystemClock()
    if now is not None:
        try:
            clock = SettableClock(parse_instant(now))
        except ValueError as exc:
            raise UserInputError(f"--now: {exc}") from None
    from leadflow.engine.runtime import Runtime

    context = cli_context(ctx)
    settings = viewer_settings(context.settings)
    # read_only: no secret is generated into the store; the viewer's are its own.
    runtime = Runtime.build(context.reading_engine, settings, clock, read_only=True)
    asyncio.run(serve_dashboard(runtime))


command(app, "hash-password", hash_password)
command(app, "serve", serve)
