"""How long a column name (a JSONL or posted key) may be, and how a user's text is quoted back.

A name is compared, normalised and matched against the known ones ("did you mean"), each a
copy or more of it; a 100 MB header cell took gigabytes that way and came back whole on stderr.
A name over :data:`MAX_NAME_LENGTH` is refused before any of that, and a message quotes at most
:data:`SHOWN_CHARACTERS` of it (docs/import.md).
"""

from __future__ import annotations

import reprlib

MAX_NAME_LENGTH = 1_000
"""The most characters a column name or key may have: far over any CRM's property names."""

SHOWN_CHARACTERS = 60
"""The most characters of a user's text a message quotes; the rest is counted."""


def quoted(value: object) -> str:
    """``value`` as ``repr`` writes it; text longer than :data:`SHOWN_CHARACTERS` as its first
    characters and its length: ``'xxxx…'… (100,000,000 characters)``."""
    if isinstance(value, str) and len(value) > SHOWN_CHARACTERS:
        return f"{value[:SHOWN_CHARACTERS]!r}… ({len(value):,} characters)"
    return repr(value)


def long_name_problem(name: str, what: str = "a column name") -> str | None:
    """Why ``name`` is refused for its length alone, or None: cheap, so checked first."""
    if len(name) <= MAX_NAME_LENGTH:
        return None
    return f"{what} may have at most {MAX_NAME_LENGTH:,} characters; rename it, or leave it out"


_SHORT = reprlib.Repr()
_SHORT.maxlevel = 3  # a deeply nested object shown whole would exceed the recursion limit


def briefly_shown(raw: object) -> str:
    """A cell's value as ``repr`` writes it, cut to 60 characters (an object to three levels):
    how a value that did not read is quoted back."""
    shown = _SHORT.repr(raw) if isinstance(raw, dict | list) else repr(raw)
    return shown if len(shown) <= 60 else shown[:57] + "..."
