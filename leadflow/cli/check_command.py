"""``leadflow check``: every problem in the rule files and the templates they use, then a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from leadflow.cli.context import cli_context
from leadflow.errors import Problem
from leadflow.mail.templates import TemplateCatalog
from leadflow.rule_language.loader import TemplateCheck, check_rule_set
from leadflow.settings import Settings


def check_rules(
    ctx: typer.Context,
    rules: Annotated[
        Path | None,
        typer.Option("--rules", help="Rules folder to check (default: paths.rules from config)."),
    ] = None,
) -> None:
    """Validate every rule file and every template it uses; print each problem as FILE:LINE:COL."""
    settings = cli_context(ctx).settings
    folder = rules if rules is not None else settings.path(settings.paths.rules)
    catalog = TemplateCatalog(settings.path(settings.paths.templates), settings)
    rule_set, problems = check_rule_set(
        folder,
        settings,
        check_template=template_check(settings),
        check_context=catalog.check_context,
    )
    for problem in problems:
        typer.echo(str(problem))
    if problems or rule_set is None:
        count = len(problems)
        typer.echo(f"{count} problem{'' if count == 1 else 's'}")
        raise typer.Exit(1)
    rules_count, streams_count = len(rule_set.rules), len(rule_set.streams)
    typer.echo(
        f"{rules_count} rule{'' if rules_count == 1 else 's'}, "
        f"{streams_count} stream{'' if streams_count == 1 else 's'} OK, version {rule_set.version}"
    )


def template_check(settings: Settings) -> TemplateCheck:
    """The catalog's check, saying a missing template once rather than once per part."""
    catalog = TemplateCatalog(settings.path(settings.paths.templates), settings)

    def check(name: str) -> list[Problem]:
        seen: set[str] = set()
        unique = []
        for problem in catalog.check(name):
            if problem.message not in seen:
                seen.add(problem.message)
                unique.append(problem)
        return unique

    return check
