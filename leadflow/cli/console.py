"""The consoles the commands print through: data is printed as it is, never read as markup.

Names, emails and companies come from the CRM; a rep called ``[/bold] Rex`` made rich raise
``MarkupError`` and a list value ``[mon, tue]`` printed as a blank, because rich reads square
brackets in any printed string as markup. Every command's console is built here with markup
and highlighting off; where a command wants emphasis it builds a ``rich.text.Text`` explicitly.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leadflow.durations import format_duration

if TYPE_CHECKING:
    from rich.console import Console


def command(app: typer.Typer, name: str, function: Callable[..., Any]) -> None:
    """Register ``function`` as ``name`` with its docstring as the help, each paragraph on one
    line: typer's rich help keeps a docstring's line breaks, so a paragraph wrapped at 100
    columns in the source broke mid-sentence in the terminal (and in ``--help``'s list)."""
    paragraphs = inspect.cleandoc(function.__doc__ or "").split("\n\n")
    app.command(name, help="\n\n".join(" ".join(p.split()) for p in paragraphs))(function)


class OutputFormat(StrEnum):
    """How a command prints what it found: for people (``table``) or for scripts (``json``)."""

    table = "table"
    json = "json"


FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", help="table (for people) or json (one document, for scripts)."),
]


def data_console(*, min_width: int = 0, stderr: bool = False) -> Console:
    """A console at least ``min_width`` columns wide (tables stay unwrapped in narrow terminals)."""
    from rich.console import Console

    console = Console(stderr=stderr, markup=False, highlight=False)
    if console.width < min_width:
        console = Console(stderr=stderr, markup=False, highlight=False, width=min_width)
    return console


def print_json(document: Any) -> None:
    """One JSON document on stdout: times in ISO 8601 UTC, durations as ``4h``-style text."""
    json.dump(document, sys.stdout, default=json_default, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def readable_json(value: object) -> str:
    """``value`` as one line of JSON that prints its text as written (``"Müller"``, not
    ``"M\\u00fcller"``), still valid JSON and unambiguous: a character that does not print
    as itself (a control, a bidi override, a zero-width or non-breaking space, a line
    separator) stays a ``\\uXXXX`` escape, so no value hides or reorders characters."""
    text = json.dumps(value, default=str, ensure_ascii=False)
    if text.isprintable():
        return text
    # Outside strings JSON writes only ASCII, so every character escaped here is in a string,
    # where an escape is valid JSON; json.dumps escapes one character as JSON does.
    return "".join(char if char.isprintable() else json.dumps(char)[1:-1] for char in text)


def json_default(value: object) -> object:
    """What :func:`print_json` prints for a value JSON has no type for."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
