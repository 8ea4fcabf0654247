"""Reading a number cell: plain (``251.41``), whole, or a CRM's formatted amount (``$1,234.50``,
``1.234,50 EUR``) with the mapping's decimal separator; and the range a whole number may take.

Text is read as a CRM or a spreadsheet writes a number: the digits 0-9, a sign, a decimal part
and the thousands forms above. Python's ``int()`` and ``float()`` read more (``1_000``, an
exponent ``1e3``, ``nan``, any script's digits such as ``٣``), which no export writes: such a
cell is more likely a slip than a number, and is refused. A JSON number (``1000.0``) is a
number already and read as it is.

Each parser follows :mod:`leadflow.ingest.values`: the typed value, None for an empty cell, or a
:class:`ValueError` whose message is the reason shown to the user.
"""

from __future__ import annotations

import math
import re

from leadflow.ingest.json_values import json_shown
from leadflow.ingest.names import briefly_shown
from leadflow.ingest.values import Parser, cell_text

_PLAIN = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
"""A plain number as text: ``42``, ``-3.5``, ``+.5``, ``5.``; nothing but ASCII digits."""
_NON_FINITE = frozenset({"nan", "inf", "infinity"})

INTEGER_RANGE = (-(2**63), 2**63 - 1)
"""What an integer attribute may hold: rules compare it as a 64-bit integer (bigint)."""


def parse_integer(raw: object) -> int | None:
    """``42`` or ``42.0``; not ``4.5``, nor ``1_000`` or ``1e3`` written as text."""
    if raw.__class__ is str and _reads_as_int(raw):
        try:
            return int(raw)
        except ValueError:
            pass  # empty, or written as 42.0: the careful path below decides
    if isinstance(raw, bool | dict | list):
        msg = f"expected a whole number, got {json_shown(raw)}"
        raise ValueError(msg)  # noqa: TRY004 (a JSON value of the wrong type is a bad cell)
    if isinstance(raw, int):
        return raw
    try:
        number = parse_number(raw)
    except ValueError:
        number = math.nan
    if number is None:
        return None
    if not number.is_integer():
        raise ValueError(not_a_number("a whole number", raw))
    return int(number)


def parse_number(raw: object) -> float | None:
    """A finite decimal number such as ``1054`` or ``251.41``."""
    if isinstance(raw, bool | dict | list):
        msg = f"expected a number, got {json_shown(raw)}"
        raise ValueError(msg)  # noqa: TRY004 (a JSON value of the wrong type is a bad cell)
    if isinstance(raw, int | float):
        try:
            value = float(raw)
        except OverflowError:  # an int beyond any float: a JSON number such as 1e400 written out
            value = math.inf
    else:
        text = cell_text(raw)
        if text is None:
            return None
        if _PLAIN.fullmatch(text) is None:
            what = "a finite number" if text.lstrip("+-").lower() in _NON_FINITE else "a number"
            raise ValueError(not_a_number(what, raw))
        value = float(text)
    if not math.isfinite(value):
        msg = f"expected a finite number, got {briefly_shown(raw)}"
        raise ValueError(msg)
    return 0.0 if value == 0 else value  # "-0" and "(0)" are 0, not a stored -0.0


_CURRENCY = r"(?:[$€£¥]|[A-Z]{3})"
_FORMATTED_AMOUNT = re.compile(
    rf"(?P<sign>[-+]?)\s*{_CURRENCY}?\s*(?P<digits>[-+]?[\d.,'\s]+?)\s*{_CURRENCY}?"
)
"""A CRM's formatted money: ``$1,234.50``, ``1.234,50 EUR``, ``EUR 1 234,50``, ``-€5``."""
_ACCOUNTING_NEGATIVE = re.compile(r"\(\s*([^()+-]+?)\s*\)")
"""An accountant's negative amount: ``(1,234.50)`` is -1234.5."""
# A group of thousands starts with 1-9: ``0,125`` is a decimal written the other way, never
# 125.
_GROUPED = {
    ".": re.compile(r"[-+]?(?:[1-9]\d{0,2}(?:[,'\s]\d{3})+|\d+)(?:\.\d+)?"),
    ",": re.compile(r"[-+]?(?:[1-9]\d{0,2}(?:[.'\s]\d{3})+|\d+)(?:,\d+)?"),
}


def number_parser(decimal_separator: str) -> Parser:
    """``parse_number``, also taking formatted amounts (currency, thousands separators) whose
    decimal separator is the mapping's: ``1.234`` is 1234 in a file with a decimal comma."""
    grouped = _GROUPED[decimal_separator]
    other = "," if decimal_separator == "." else "."

    def parse(raw: object) -> float | None:
        if not isinstance(raw, str) or (decimal_separator == "." and _is_plain(raw)):
            return parse_number(raw)
        if not _is_formatted(raw):
            return parse_number(raw)  # refused there, with what is wrong with it
        text = raw.strip()
        if not text:
            return None
        negative = _ACCOUNTING_NEGATIVE.fullmatch(text)
        formatted = _FORMATTED_AMOUNT.fullmatch(negative[1] if negative else text)
        digits = formatted["digits"] if formatted else ""
        if formatted and (negative or formatted["sign"]):
            # One sign only: ``-€5`` and ``(€5)`` are -5; ``-€-5`` or ``(-5)`` are no amount.
            sign = "-" if negative else formatted["sign"]
            digits = "" if digits[:1] in "-+" else sign + digits
        if formatted is None or grouped.fullmatch(digits) is None:
            msg = not_a_number("a number", raw)
            if _GROUPED[other].fullmatch(digits):
                msg += (
                    f"; the file writes {other!r} as its decimal separator: set "
                    f"decimal_separator: {other!r} in this kind's import mapping"
                )
            raise ValueError(msg)
        plain = re.sub(r"[.,'\s]", lambda m: "." if m[0] == decimal_separator else "", digits)
        return parse_number(plain)

    return parse


def integer_parser(decimal_separator: str) -> Parser:
    """:func:`parse_integer`, reading a formatted cell as :func:`number_parser` does: with a
    decimal comma ``1.000`` is a thousand, not 1; ``1,000`` with a decimal point too."""
    number = number_parser(decimal_separator)

    def parse(raw: object) -> int | None:
        if not isinstance(raw, str):
            return parse_integer(raw)
        if _reads_as_int(raw):
            try:
                return int(raw)
            except ValueError:
                pass  # empty, 42.0, or formatted: read as a number, then held to a whole one
        try:
            value = number(raw)
        except ValueError:
            value = math.nan
        if value is None:
            return None
        if not isinstance(value, float) or not value.is_integer():
            raise ValueError(not_a_number("a whole number", raw))
        return int(value)

    return parse


def _is_plain(text: str) -> bool:
    return _PLAIN.fullmatch(text.strip()) is not None


def _reads_as_int(text: str) -> bool:
    """Whether ``int()`` may read ``text`` as it is: it takes ``1_000`` and ``٣`` too."""
    return text.isascii() and "_" not in text


def _is_formatted(text: str) -> bool:
    """Whether ``text`` could be a formatted amount: ASCII digits, no exponent, no ``nan``."""
    if text.strip().lstrip("+-").lower() in _NON_FINITE:
        return False
    digits = [char for char in text if char.isdigit()]
    return all(char in "0123456789" for char in digits) and not _EXPONENT.search(text)


_EXPONENT = re.compile(r"[0-9.][eE][-+]?[0-9]")
"""``1e3``, ``1.5E-3``: an exponent, which no CRM writes for a score or an amount."""


def not_a_number(what: str, raw: object) -> str:
    """``expected a number, got '1_000'``, with what in the text no export writes."""
    msg = f"expected {what}, got {briefly_shown(raw)}"
    text = raw.strip() if isinstance(raw, str) else ""
    if any(char.isdigit() and char not in "0123456789" for char in text):
        return f"{msg} (only the digits 0-9 are read)"
    if "_" in text and _PLAIN.fullmatch(text.replace("_", "")):
        return f"{msg} (a _ is no thousands separator: write {text.replace('_', '')})"
    if _EXPONENT.search(text) and _is_float(text):
        return f"{msg} (an exponent is not read: write the number out in digits)"
    return msg


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def within(low: int, high: int, parse: Parser) -> Parser:
    """``parse``, refusing a whole number outside ``low..high`` (what the store can compare)."""

    def parse_within(raw: object) -> object:
        value = parse(raw)
        if isinstance(value, int) and not low <= value <= high:
            raise ValueError(range_reason(low, high))
        return value

    return parse_within


def range_reason(low: int, high: int) -> str:
    return f"must be between {low} and {high}"
