"""``leadflow check``: every problem in the rule files and the templates they use, then a summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from leadflow.cli.context import cli_context

if TYPE_CHECKING:
    from leadflow.errors import Problem
    from leadflow.mail.templates import TemplateCatalog
    from leadflow.rule_language.model import RuleSet
    from leadflow.rule_language.rule_set_builder import TemplateCheck


def check_rules(
    ctx: typer.Context,
    rules: Annotated[
        Path | None,
        typer.Option("--rules", help="Rules folder to check (default: paths.rules from config)."),
    ] = None,
    store: Annotated[
        bool,
        typer.Option(
            "--store",
            help="Also read the configured store: warn of the active nurture enrollments "
            "these rules would end (a stream removed, renamed or shortened).",
        ),
    ] = False,
) -> None:
    """Validate every rule file and every template it uses; print each problem as FILE:LINE:COL.

    Offline unless ``--store``: no database is needed to check rules (CI, a pre-commit hook).
    """
    from leadflow.mail.context import placeholder_unsubscribe_warning
    from leadflow.mail.templates import TemplateCatalog
    from leadflow.rule_language.loader import check_rule_set

    # check prints what it finds and logs nothing: the settings without structlog.
    settings = cli_context(ctx).loaded_without_logging.settings
    folder = rules if rules is not None else settings.path(settings.paths.rules)
    catalog = TemplateCatalog(settings.path(settings.paths.templates), settings)
    rule_set, problems = check_rule_set(
        folder,
        settings,
        check_template=template_check(catalog),
        check_context=catalog.check_context,
    )
    for problem in problems:
        typer.echo(str(problem))
    if problems or rule_set is None:
        count = len(problems)
        typer.echo(f"{count} problem{'' if count == 1 else 's'}")
        raise typer.Exit(1)
    for warning in rule_set.warnings:
        typer.echo(f"{warning.file}:{warning.line}:{warning.column}: warning: {warning.message}")
    placeholder = placeholder_unsubscribe_warning(settings, rule_set.sends_marketing)
    if placeholder is not None:
        typer.echo(f"warning: {placeholder}")
    if store:
        _warn_of_leavers(ctx, rule_set)
    rules_count, streams_count = len(rule_set.rules), len(rule_set.streams)
    scoring = ""
    if rule_set.scoring is not None:
        state = "" if rule_set.scoring.enabled else " (disabled)"
        scoring = f", a scoring model{state}"
    typer.echo(
        f"{rules_count} rule{'' if rules_count == 1 else 's'}, "
        f"{streams_count} stream{'' if streams_count == 1 else 's'}{scoring} OK, "
        f"version {rule_set.version}"
    )


def _warn_of_leavers(ctx: typer.Context, rule_set: RuleSet) -> None:
    """``warning: stream welcome: 3 leads enrolled now will exit (...)``, per stream whose
    active enrollments in the store these rules would end; the store is only read."""
    from sqlalchemy.exc import DBAPIError

    from leadflow.engine.stream_leavers import TO_KEEP_THEM, active_enrollments, leavers
    from leadflow.errors import DatabaseUnavailableError

    engine = cli_context(ctx).reading_engine
    try:
        with engine.connect() as connection:
            enrolled = active_enrollments(connection)
    except DBAPIError as exc:
        msg = f"cannot read the store at {engine.url!r}: {exc.orig}"
        raise DatabaseUnavailableError(msg) from exc
    for leaving in leavers(enrolled, rule_set.streams):
        typer.echo(
            f"warning: {leaving.describe()}; {TO_KEEP_THEM} (docs/rules.md, Nurture streams)"
        )


def template_check(catalog: TemplateCatalog) -> TemplateCheck:
    """The catalog's check, saying a missing template once rather than once per part.

    The same catalog as the context check's: each template is compiled once, not twice."""

    def check(name: str) -> list[Problem]:
        seen: set[str] = set()
        unique = []
        for problem in catalog.check(name):
            if problem.message not in seen:
                seen.add(problem.message)
                unique.append(problem)
        return unique

    return check
