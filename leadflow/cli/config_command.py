"""``leadflow config``: the effective configuration, secrets masked, with each value's source."""

from __future__ import annotations

import typer

from leadflow.cli.console import FormatOption, OutputFormat, data_console, print_json
from leadflow.cli.context import cli_context


def show_config(ctx: typer.Context, output: FormatOption = OutputFormat.table) -> None:
    """Show the effective configuration and where each value came from."""
    from rich.table import Table

    from leadflow.config import describe

    loaded = cli_context(ctx).loaded
    if output is OutputFormat.json:
        print_json(
            [
                {"key": key, "value": value, "source": source}
                for key, value, source in describe(loaded)
            ]
        )
        return
    table = Table("key", "value", "source", box=None, pad_edge=False)
    for key, value, source in describe(loaded):
        table.add_row(key, value, source)
    console = data_console(min_width=120)
    console.print(table)
