"""``leadflow migrate``: bring the store's schema to this leadflow's, in a window of your choosing.

Commands that only read (``status``, ``report``, ``audit``, the ``outbox`` listing, the
dashboard) refuse a store behind this leadflow rather than migrate it: some migrations rewrite a
whole table under an exclusive lock (0016 on PostgreSQL) and none goes back by itself. This
command lists what will run, then runs it; ``--dry-run`` only lists. Writing commands and the
daemon still migrate when they start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from leadflow.cli.console import data_console
from leadflow.cli.context import cli_context, refuse_missing_store

if TYPE_CHECKING:
    from sqlalchemy import Engine


def migrate_store(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the pending migrations; apply none.")
    ] = False,
) -> None:
    """Migrate the store to this leadflow's schema, listing each migration first (back it up
    before; see docs/operations.md, Upgrading leadflow)."""
    from leadflow.store.database import (
        engine_for,
        ensure_attribute_indexes,
        migrate,
        pending_migrations,
        shown_url,
    )
    from leadflow.store.tables import LEADS

    context = cli_context(ctx)
    settings = context.settings
    # Migrate is for a store that is there: on a mistyped path it created an empty file (and
    # its folders) and listed all 24 migrations as pending.
    refuse_missing_store(settings)
    engine = engine_for(settings)
    console = data_console()

    def say(line: str) -> None:
        # A URL or a docstring is printed as it is: not wrapped, no rich markup read in it.
        console.print(line, soft_wrap=True, markup=False, highlight=False)

    try:
        where = shown_url(engine)
        pending = pending_migrations(engine)
        if not pending:
            say(f"the store at {where} is at this leadflow's schema: nothing to migrate")
            return
        if not dry_run:
            _refuse_running_daemon(engine)
        plural = "" if len(pending) == 1 else "s"
        say(f"the store at {where}: {len(pending)} migration{plural} pending")
        for revision, summary in pending:
            say(f"  {revision}  {summary}")
        if dry_run:
            say("--dry-run: nothing applied")
            return
        migrate(engine)
        attributes = settings.attributes
        ensure_attribute_indexes(engine, LEADS, attributes.leads, attributes.indexed)
        say(f"migrated to {pending[-1][0]}")
    finally:
        engine.dispose()


def _refuse_running_daemon(engine: Engine) -> None:
    """Migrating under a running daemon changes its tables while it evaluates and sends (0016
    locks two of them for seconds per million rows), and the daemon knows only the schema it
    started with: the upgrade stops the daemons first (docs/operations.md)."""
    import psycopg

    from leadflow.errors import AnotherDaemonRunningError
    from leadflow.service.leadership import running_daemon
    from leadflow.store.database import shown_url, unreachable_store

    where = shown_url(engine)
    try:
        holder = running_daemon(engine.url.render_as_string(hide_password=False))
    except psycopg.Error as exc:
        raise unreachable_store(where, exc) from None
    if holder is not None:
        msg = (
            f"{holder} is running on the store at {where}: stop the daemons first, then run "
            "`leadflow migrate` (docs/operations.md, Upgrading leadflow); nothing applied"
        )
        raise AnotherDaemonRunningError(msg)
