"""JSON values: reading a document (no NaN, no key written twice), naming a value as JSON names
it, and what the store can hold (no NUL, no lone surrogate, no line break in an id, no nesting
beyond :data:`MAX_NESTING`). The HTTP API and JSONL imports check every value with these.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

from leadflow.ingest.names import briefly_shown, quoted

Place = tuple[str | int, ...]
"""Where inside a JSON value: object keys and list positions."""

NUL_IN_TEXT = "text may not contain NUL characters (\\u0000)"
MAX_NESTING = 32
"""How deep objects and lists may nest in a value: far beyond any CRM's, and well inside the
recursion that checking, hashing and storing a value take."""
TOO_DEEP = f"nested deeper than {MAX_NESTING} levels; flatten it"


def json_shown(value: object) -> str:
    """A JSON value named as JSON names it: ``a list``, ``null``, ``true``, ``a number (1)``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, list):
        return f"a list ({_as_json(value)})"
    if isinstance(value, dict):
        return f"an object ({_as_json(value)})"
    return briefly_shown(value)


def _as_json(value: list[object] | dict[str, object]) -> str:
    """A list or object as the sender wrote it (``["east"]``, not Python's ``['east']``)."""
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return shown if len(shown) <= 60 else shown[:57] + "..."


CONTROL_CHARACTERS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
"""Control characters (C0, DEL, C1) and Unicode's line and paragraph separators."""
FORMAT_CHARACTERS = r"\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
"""Unicode's invisible format characters (category Cf) that reorder or hide text: the
bidirectional marks, embeddings, overrides and isolates (U+061C, U+200E-200F, U+202A-202E,
U+2066-2069), the zero-width space and invisible operators (U+200B, U+2060-2064) and the
byte-order mark (U+FEFF). A right-to-left override in an id reverses the rest of the line it is
printed on. Not the zero-width joiner and non-joiner (U+200C-200D): Persian and Indic names (a
rep referenced by name) and emoji sequences need them."""
_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")
_UNSHOWABLE = re.compile(f"[{CONTROL_CHARACTERS}{FORMAT_CHARACTERS}]")


def identifier_problem(text: str) -> str | None:
    """Why ``text`` cannot be an external id (or a reference to one), or None: an id is one
    line of text, written into CSV exports, log lines, terminals and email headers, which a
    line break or tab would split and a right-to-left override would turn around."""
    found = _UNSHOWABLE.search(text)
    if found is None:
        return None
    shown = ascii(found.group())[1:-1]  # \n, \t, \x85, \u2028, \u202e
    where = f"({shown}, character {found.start() + 1})"
    if _CONTROL.match(found.group()):
        return (
            f"may not contain a line break, tab or other control character {where}; "
            "write the id on one line"
        )
    return (
        "may not contain an invisible formatting character (a right-to-left or other "
        f"direction mark, or a zero-width character) {where}; it reorders or hides the text "
        "wherever the id is shown: remove it"
    )


def text_problem(text: str) -> str | None:
    """Why no store can hold ``text``, or None.

    PostgreSQL refuses NUL in text and JSON; a lone UTF-16 surrogate (what JSON's ``"\\ud800"``
    decodes to) cannot be encoded for either store. Checked on the way in, so that one such value
    is one located rejection rather than a traceback or a batch the database refused.
    """
    if "\x00" in text:
        return NUL_IN_TEXT
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        return (
            f"text may not contain a lone UTF-16 surrogate (\\u{code:04x}); "
            "write the character itself, or a complete surrogate pair such as \\ud83d\\ude00"
        )
    return None


def unstorable(
    value: object, path: Place = (), *, numbers: bool = True
) -> Iterator[tuple[Place, str]]:
    """Every place in a (JSON) value the store cannot hold, with the reason.

    Text and object keys as :func:`text_problem` says; with ``numbers``, also numbers that are
    not finite or too long (:class:`LongInteger`), which JSON columns cannot hold; and nesting beyond :data:`MAX_NESTING`, which
    would end each of those steps in a RecursionError. A key's place is shown with surrogates
    escaped, so that it can be reported.
    """
    if len(path) >= MAX_NESTING and isinstance(value, dict | list):
        yield path, TOO_DEEP
    elif isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            yield path, problem
    elif isinstance(value, float):
        if numbers and not math.isfinite(value):
            yield path, f"expected a finite number, got {value!r}"
    elif isinstance(value, LongInteger):
        if numbers:
            yield path, value.reason
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key) if isinstance(key, str) else None
            step = key if problem is None else shown_text(key)
            if problem is not None:
                yield (*path, step), problem
            yield from unstorable(item, (*path, step), numbers=numbers)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from unstorable(item, (*path, index), numbers=numbers)


def shown_text(text: str) -> str:
    """``text`` with lone surrogates escaped (``\\ud800``), so it can be printed or sent."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def json_value(text: str) -> Any:
    """``text`` parsed as JSON, refusing NaN and Infinity (``ValueError``): JSON has neither, and
    the store could not hold them; and an object naming a key twice, whose first value the
    parser would drop without a word (``{"email": "a@x", "email": "b@x"}``: which one did the
    sender mean?). Nesting deeper than the parser goes is a ``ValueError`` too. An integer
    longer than Python reads (4,300 digits) is a :class:`LongInteger`, refused by the field
    that reads it. The HTTP API and JSONL imports read every document with it."""
    try:
        try:
            return json.loads(
                text, parse_constant=_reject_constant, object_pairs_hook=_one_key_each
            )
        except json.JSONDecodeError:
            raise
        except ValueError:
            # Python's limit on an integer's digits (or a key twice, NaN: raised again below);
            # read again with each integer by hand, off the hot path.
            return json.loads(
                text,
                parse_constant=_reject_constant,
                object_pairs_hook=_one_key_each,
                parse_int=_integer,
            )
    except RecursionError:
        msg = "nested too deeply"
        raise ValueError(msg) from None


class LongInteger(int):
    """A JSON integer of more digits than Python converts (``sys.get_int_max_str_digits()``,
    4,300): valid JSON, but beyond every range a field takes. It stands as a number beyond them
    all (of its sign), so a whole-number field refuses it with its range (``must be between
    ...``) and a decimal one as not finite; as text it is refused (``str`` raises ValueError,
    as for such an int), and :func:`unstorable` refuses it inside a JSON value kept whole.
    Its digits are never converted: that takes time growing with their square."""

    digits: int
    head: str

    def __new__(cls, text: str) -> LongInteger:
        negative = text.startswith("-")
        number = super().__new__(cls, -_BEYOND if negative else _BEYOND)
        number.digits = len(text) - negative
        number.head = text[: 20 + negative]
        return number

    def __repr__(self) -> str:
        return f"{self.head}... ({self.digits} digits)"

    def __str__(self) -> str:
        raise ValueError(self.reason)

    @property
    def reason(self) -> str:
        return (
            f"a whole number of {self.digits} digits ({self.head}...) is longer than the "
            f"{sys.get_int_max_str_digits()} digits leadflow reads"
        )


_BEYOND = 10**1000
"""The value a :class:`LongInteger` stands as: beyond any 64-bit integer and any double."""


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return LongInteger(text)


def _one_key_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) < len(pairs):  # counted only then: the hot path is dict() alone
        twice = next(key for key, seen in Counter(key for key, _ in pairs).items() if seen > 1)
        msg = f"the key {quoted(twice)} is written twice in one object"
        raise ValueError(msg)
    return found


def _reject_constant(name: str) -> None:
    msg = f"{name} is not JSON"
    raise ValueError(msg)
