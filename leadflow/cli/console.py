"""The consoles the commands print through: data is printed as it is, never read as markup.

Names, emails and companies come from the CRM; a rep called ``[/bold] Rex`` made rich raise
``MarkupError`` and a list value ``[mon, tue]`` printed as a blank, because rich reads square
brackets in any printed string as markup. Every command's console is built here with markup
and highlighting off; where a command wants emphasis it builds a ``rich.text.Text`` explicitly.
"""

from __future__ import annotations

from rich.console import Console


def data_console(*, min_width: int = 0, stderr: bool = False) -> Console:
    """A console at least ``min_width`` columns wide (tables stay unwrapped in narrow terminals)."""
    console = Console(stderr=stderr, markup=False, highlight=False)
    if console.width < min_width:
        console = Console(stderr=stderr, markup=False, highlight=False, width=min_width)
    return console
