"""``leadflow plan --base REF``: what the working rules would do differently from REF's, now."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from leadflow.cli.context import cli_context, refuse_missing_store
from leadflow.clock import SettableClock, SystemClock, parse_instant
from leadflow.errors import DatabaseUnavailableError, UserInputError


def plan_rules(
    ctx: typer.Context,
    base: Annotated[str, typer.Option("--base", help="Git revision to compare with (e.g. main).")],
    rules: Annotated[
        Path | None,
        typer.Option("--rules", help="Rules folder in a git checkout (default: paths.rules)."),
    ] = None,
    output: Annotated[
        Literal["text", "markdown"],
        typer.Option("--format", help="text, or markdown for a pull-request comment."),
    ] = "text",
    max_affected: Annotated[
        int | None,
        typer.Option(
            "--max-affected",
            min=0,
            help="Exit 1 when more than N leads and deals would be treated differently.",
        ),
    ] = None,
    sample: Annotated[
        int,
        typer.Option(
            "--sample",
            "--limit",
            min=0,
            help="Leads/deals listed per rule and change (and per score rule's crossing).",
        ),
    ] = 10,
    now: Annotated[
        str | None, typer.Option("--now", help="Evaluate as of this ISO time (default: now).")
    ] = None,
) -> None:
    """Evaluate the rules at --base and the working rules against the store; print the difference.

    A changed scoring model is evaluated too: how every lead's score would move, and which
    leads would newly match (or stop matching) the rules that read the score.
    """
    from sqlalchemy.exc import DBAPIError

    from leadflow.engine.runtime import Runtime
    from leadflow.rule_testing.plan import (
        load_base_rules,
        plan_change,
        render_markdown,
        render_text,
        rules_at,
    )
    from leadflow.store.database import engine_for, require_current_schema

    settings = cli_context(ctx).settings
    folder = rules if rules is not None else settings.path(settings.paths.rules)
    try:
        clock = SettableClock(parse_instant(now)) if now else SystemClock()
    except ValueError as exc:
        raise UserInputError(f"--now: {exc}") from None
    # The store as it is: not migrated, never written (dry runs only).
    refuse_missing_store(settings)
    engine = engine_for(settings)
    try:
        require_current_schema(engine)
        runtime = Runtime.build(engine, settings, clock, read_only=True)
        working = runtime.load_rules(folder)
        with rules_at(folder, base) as (base_folder, label):
            base_rules = load_base_rules(base_folder, label, runtime)
        try:
            plan = plan_change(
                runtime, base_rules, working, clock.now(), base_ref=base, folder=_shown(folder)
            )
        except DBAPIError as exc:
            msg = f"cannot read the store at {engine.url!r}: {exc.orig}"
            raise DatabaseUnavailableError(msg) from exc
    finally:
        engine.dispose()
    render = render_markdown if output == "markdown" else render_text
    for line in render(plan, sample=sample):
        typer.echo(line)
    affected = len(plan.affected)
    if max_affected is not None and affected > max_affected:
        msg = (
            f"this change would treat {affected} leads and deals differently, more than "
            f"--max-affected {max_affected}; review the plan, then raise the limit for this change"
        )
        raise UserInputError(msg)


def _shown(folder: Path) -> str:
    try:
        return str(folder.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)
