"""A rule file's value in a message as the file wrote it, and what YAML made of it.

``expected a text value, found None`` named Python's spelling of a value the file wrote as
``~``, ``null`` or nothing at all, and ``found True`` one written ``True`` or ``TRUE``: the
reader had to guess which word of theirs was meant. Rule files read YAML 1.2's booleans (only
``true``/``false``), so a ``yes`` written for a flag is text, which the message says too.
"""

from __future__ import annotations

from typing import Any, Literal

from leadflow.rule_language.yaml_source import Path, SourceDocument

Wanted = Literal["text", "boolean", "other"]
"""What the place of the value takes: text can be quoted; a boolean is only true or false."""


def as_written(
    document: SourceDocument, path: Path, value: Any, *, wanted: Wanted = "other"
) -> str:
    """``value`` (read at ``path``) as the file spells it, for ``found ...`` in a message."""
    spelling = document.plain.get(path)
    if spelling is None:  # quoted text, a list, a mapping, or a default of the parser's
        return repr(value)
    if value is None or isinstance(value, bool):
        return _read_as(spelling, "no value" if value is None else str(value).lower(), wanted)
    if isinstance(value, str):  # a YAML 1.1 boolean word, which rule files read as text
        if wanted == "boolean":
            return f"{spelling} (text: rule files read only true and false as booleans)"
        return repr(value)
    if wanted == "text" and isinstance(value, int | float):  # YAML reads 5 or 1e3 as a number
        return f'{spelling} (a number; quote it: "{spelling}")'
    return spelling  # a number or date as written: .inf, 1e3, 2026-01-31


def _read_as(spelling: str, meaning: str, wanted: Wanted) -> str:
    if not spelling:
        return "nothing (YAML reads an empty value as no value)"
    notes = [] if spelling == meaning else [f"YAML reads it as {meaning}"]
    if wanted == "text":
        notes.append(f'quote it: "{spelling}"')
    return f"{spelling} ({'; '.join(notes)})" if notes else spelling
