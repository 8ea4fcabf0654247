"""``leadflow score``: the scoring model's commands (why a lead has its score, ...)."""

from __future__ import annotations

import typer

from leadflow.cli import score_explain_command, score_fit_command
from leadflow.cli.console import command

app = typer.Typer(
    name="score",
    help="Lead scoring: explain a lead's score, fit a model from outcomes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

command(app, "explain", score_explain_command.explain)
command(app, "fit", score_fit_command.fit_scoring)
