"""``leadflow schema``: the JSON Schema of rule files, for editors (VS Code's YAML extension)."""

from __future__ import annotations

import json

import typer

from leadflow.cli.context import cli_context


def print_schema(ctx: typer.Context) -> None:
    """Print the JSON Schema of rule files (fields and attributes from the current config)."""
    from leadflow.rule_language.json_schema import rule_file_schema

    schema = rule_file_schema(cli_context(ctx).settings)
    typer.echo(json.dumps(schema, indent=2, ensure_ascii=False))
