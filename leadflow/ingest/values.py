"""Reading one cell of a CRM export into a typed value.

Every parser takes the raw cell (a string from CSV, a JSON scalar from JSONL) and returns the
typed value or ``None`` for an empty cell; a value it cannot read raises :class:`ValueError`
whose message is the reason shown to the user (``FILE:LINE: field: reason``).
"""

from __future__ import annotations

import json
import math
import re
import reprlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from leadflow.ingest.names import quoted
from leadflow.store.email_addresses import address_problem

T = TypeVar("T")
Place = tuple[str | int, ...]
"""Where inside a JSON value: object keys and list positions."""

NUL_IN_TEXT = "text may not contain NUL characters (\\u0000)"
MAX_NESTING = 32
"""How deep objects and lists may nest in a value: far beyond any CRM's, and well inside the
recursion that checking, hashing and storing a value take."""
TOO_DEEP = f"nested deeper than {MAX_NESTING} levels; flatten it"
INTEGER_RANGE = (-(2**63), 2**63 - 1)
"""What an integer attribute may hold: rules compare it as a 64-bit integer (bigint)."""

Parser = Callable[[object], object]
"""Raw cell -> typed value (or None when empty); raises ValueError with the reason."""


def _text(raw: object) -> str | None:
    if raw is None:
        return None
    text = raw.strip() if isinstance(raw, str) else str(raw)
    return text or None


def parse_text(raw: object) -> str | None:
    """A string with surrounding blanks removed; empty is None.

    A JSON value of another type is refused, named as the JSON wrote it (``a number (5)``,
    ``true``, ``["east"]``), as the HTTP API refuses it: a JSONL ``"email": 5`` was read as
    the text ``5``, no address, and the lead landed unmailed without a word.
    """
    if raw.__class__ is str:  # the hot path: every CSV cell
        return raw.strip() or None
    if raw is None:
        return None
    msg = f"expected text, got {json_shown(raw)}"
    raise ValueError(msg)


def scalar_text(raw: object) -> str | None:
    """An activity's ``properties.KEY`` column: free-form, so a JSON number is taken as its
    digits (as the ``properties`` object's ``5`` and ``"5"`` agree); true, false, a list or an
    object are refused as :func:`parse_text` refuses them."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return _text(raw)
    return parse_text(raw)


def parse_identifier(raw: object) -> str | None:
    """A record's external id: text, as :func:`parse_text` reads it, and nothing else. A JSON
    number is refused, not written out: ``1.5e3`` became the id ``"1500.0"``, ``1e20``
    ``"1e+20"``, neither the id the CRM shows (a CSV cell is text already)."""
    if raw.__class__ is str:
        return raw.strip() or None
    if raw is None:
        return None
    if isinstance(raw, bool):
        shown = "true" if raw else "false"  # as the JSON wrote it
    elif isinstance(raw, int | float):
        shown = f"a number ({raw!r})"
    else:
        shown = _shown(raw)
    msg = f"expected text, got {shown}; write the id as a JSON string"
    raise ValueError(msg)


def parse_integer(raw: object) -> int | None:
    """``42``, ``42.0`` or ``1_000``; not ``4.5``."""
    if raw.__class__ is str:
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
        msg = f"expected a whole number, got {_shown(raw)}"
        raise ValueError(msg)
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
        text = _text(raw)
        if text is None:
            return None
        try:
            value = float(text)
        except ValueError:
            msg = f"expected a number, got {_shown(raw)}"
            raise ValueError(msg) from None
    if not math.isfinite(value):
        msg = f"expected a finite number, got {_shown(raw)}"
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
            msg = f"expected a number, got {_shown(raw)}"
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
            msg = f"expected a whole number, got {_shown(raw)}"
            raise ValueError(msg)
        return int(value)

    return parse


def _is_plain(text: str) -> bool:
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


def boolean_parser(true_values: Iterable[str], false_values: Iterable[str]) -> Parser:
    """A parser accepting the mapping's true/false spellings, case-insensitively."""
    truthy = {v.strip().lower() for v in true_values}
    falsy = {v.strip().lower() for v in false_values}
    spelled = ", ".join(sorted(v for v in truthy | falsy if v))

    def parse(raw: object) -> bool | None:
        if isinstance(raw, bool):
            return raw
        if raw is not None and not isinstance(raw, str):
            # A JSON 1 is not true: the HTTP API refuses it too (a boolean, or text).
            msg = f"expected true or false (or text: {spelled}), got {json_shown(raw)}"
            raise ValueError(msg)
        text = "" if raw is None else raw.strip().lower()
        if text in truthy:
            return True
        if text in falsy:
            return False
        if not text:
            return None
        msg = f"expected yes or no ({spelled}), got {_shown(raw)}"
        raise ValueError(msg)

    return parse


DATE_FORMATS = "import.mappings.KIND.date_formats"
"""The setting a date that does not read is to be configured under (KIND as the import's)."""
_DAY_AND_MONTH = re.compile(
    r"(\d{1,2})([-/.])(\d{1,2})\2(\d{4})((?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?)"
)


def _order_advice(text: str, setting: str) -> str:
    """For a date written with the day and month first (``01-02-2024``), which order to set:
    none is guessed, as 01-02-2024 is 1 February in Europe and January 2 in the US."""
    found = _DAY_AND_MONTH.fullmatch(text)
    if found is None:
        return ""
    first, separator, second, _year, time = found.groups()
    if int(first) > 12 and int(second) > 12:
        return ""  # no date either way
    clock = "" if not time else (" %H:%M:%S" if time.count(":") == 2 else " %H:%M")
    day_first = f"['%d{separator}%m{separator}%Y{clock}']"
    month_first = f"['%m{separator}%d{separator}%Y{clock}']"
    if int(first) > 12 >= int(second):
        return f"; the day comes first: set {setting}: {day_first}"
    if int(second) > 12 >= int(first):
        return f"; the month comes first: set {setting}: {month_first}"
    return (
        f"; day or month first? none is guessed: set {setting}: {day_first} "
        f"(day first) or {month_first} (month first)"
    )


def datetime_parser(
    formats: Iterable[str], timezone: str, setting: str = DATE_FORMATS
) -> Callable[[object], datetime | None]:
    """ISO 8601 first, then each strptime format; naive times are in ``timezone``.

    Results are cached: exports repeat the same dates many times, and strptime is slow.
    """
    return cached_text_parser(datetime_from_text(tuple(formats), timezone, setting))


def datetime_from_text(
    formats: tuple[str, ...], timezone: str, setting: str = DATE_FORMATS
) -> Callable[[str], datetime]:
    """``setting`` is where the formats are configured, named when a date does not read."""
    zone: tzinfo = UTC if timezone == "UTC" else ZoneInfo(timezone)
    expected = "ISO 8601 (2017-03-01, 2017-03-01T10:00:00+02:00)"
    if formats:
        expected += " or " + ", ".join(formats)
    in_utc = zone is UTC
    # Each format's precompiled patterns, looked up once here rather than per cell.
    readers = tuple((fmt, _fixed_width(fmt, in_utc), _numeric_format(fmt)) for fmt in formats)

    def read(text: str) -> datetime:
        when = _read_datetime(text, readers)
        if when is None:
            advice = "" if formats else _order_advice(text, setting)
            msg = f"expected a date as {expected}, got {quoted(text)}{advice}"
            raise ValueError(msg)
        if when.tzinfo is None:
            when = when.replace(tzinfo=zone)
            if in_utc:  # already what astimezone(UTC) would return
                return when
        elif when.tzinfo is UTC:
            return when
        try:
            return when.astimezone(UTC)
        except OverflowError:  # year 1 east of UTC, or year 9999 west of it
            msg = f"expected a time between 0001-01-01 and 9999-12-31 in UTC, got {quoted(text)}"
            raise ValueError(msg) from None

    return read


def cached_text_parser(read: Callable[[str], T]) -> Callable[[object], T | None]:
    """``read`` for non-empty text cells, cached by the cell; empty is None; others rejected."""

    @lru_cache(maxsize=8192)
    def from_cell(cell: str) -> T | None:
        text = cell.strip()
        return read(text) if text else None

    def parse(raw: object) -> T | None:
        if raw.__class__ is str:
            return from_cell(raw)
        if raw is None:
            return None
        msg = f"expected a date, got {json_shown(raw)}"
        raise ValueError(msg)

    return parse


_Reader = tuple[
    str,
    "tuple[re.Pattern[str], str] | None",
    "tuple[re.Pattern[str], tuple[int, ...]] | None",
]


def _read_datetime(text: str, readers: tuple[_Reader, ...]) -> datetime | None:
    # Every form fromisoformat reads starts with a four-digit year; skipping it for other
    # texts (01-03-2017) saves raising and catching its error.
    if text[:4].isdigit():
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    for fmt, fixed, fast in readers:
        if fixed is not None and (found := fixed[0].fullmatch(text)) is not None:
            try:
                return datetime.fromisoformat(fixed[1].format(*found.groups()))
            except ValueError:
                pass  # 31-02-2017: the patterns below refuse it the same way
        if fast is not None:
            pattern, (year, month, day, hour, minute, second) = fast
            found = pattern.match(text)
            if found is None or found.end() != len(text):
                continue  # what strptime checks, with the same pattern: it would fail too
            parts = (*found.groups(), "0")
            try:
                return datetime(  # noqa: DTZ001 (the zone is applied after)
                    int(parts[year]),
                    int(parts[month]),
                    int(parts[day]),
                    int(parts[hour]),
                    int(parts[minute]),
                    int(parts[second]),
                )
            except ValueError:
                pass  # 31-02-2017: strptime below refuses it the same way
        try:
            return datetime.strptime(text, fmt)  # noqa: DTZ007 (the zone is applied after)
        except ValueError:
            continue
    return None


_NUMERIC_DIRECTIVES = {
    # strptime's own patterns for these directives (Lib/_strptime.py, TimeRE).
    "Y": r"(?P<Y>\d\d\d\d)",
    "m": r"(?P<m>1[0-2]|0[1-9]|[1-9])",
    "d": r"(?P<d>3[01]|[12]\d|0[1-9]|[1-9]| [1-9])",
    "H": r"(?P<H>2[0-3]|[0-1]\d|\d)",
    "M": r"(?P<M>[0-5]\d|\d)",
    "S": r"(?P<S>6[0-1]|[0-5]\d|\d)",
}
_WHITESPACE = re.compile(r"\s+")


@lru_cache(maxsize=64)
def _numeric_format(fmt: str) -> tuple[re.Pattern[str], tuple[int, ...]] | None:
    """The pattern ``strptime`` builds for ``fmt`` when it has only ``%Y %m %d %H %M %S`` and
    literal text (``%d-%m-%Y %H:%M``), each directive once and year, month and day all given;
    else None.

    strptime builds its result through general, locale-aware code on every call: most of an
    import's time when a file has a time column with few repeated values. With the same
    pattern, matched the same way (``match``, then the whole text), the same texts are read.
    The second item gives, for each of ``datetime()``'s arguments, the index of its group.
    """
    pattern = []
    seen: set[str] = set()
    position = 0
    while position < len(fmt):
        char = fmt[position]
        if char == "%":
            directive = fmt[position + 1 : position + 2]
            if directive not in _NUMERIC_DIRECTIVES or directive in seen:
                return None
            seen.add(directive)
            pattern.append(_NUMERIC_DIRECTIVES[directive])
            position += 2
        elif char.isspace():
            # As strptime: a run of whitespace in the format matches any run of whitespace.
            run = _WHITESPACE.match(fmt, position)
            assert run is not None
            pattern.append(r"\s+")
            position = run.end()
        else:
            pattern.append(re.escape(char))
            position += 1
    if not {"Y", "m", "d"} <= seen:
        return None
    compiled = re.compile("".join(pattern), re.IGNORECASE)
    # For each of datetime()'s arguments (year ... second), its group; -1 (a "0") if absent.
    order = tuple(compiled.groupindex[name] - 1 if name in seen else -1 for name in "YmdHMS")
    return compiled, order


_FIXED_WIDTH = {
    "Y": "([0-9]{4})",
    "m": "(0[1-9]|1[0-2])",
    "d": "(0[1-9]|[12][0-9]|3[01])",
    "H": "([01][0-9]|2[0-3])",
    "M": "([0-5][0-9])",
    "S": "([0-5][0-9])",
}


@lru_cache(maxsize=64)
def _fixed_width(fmt: str, in_utc: bool) -> tuple[re.Pattern[str], str] | None:
    """For a format of zero-padded ``%Y %m %d %H %M %S``, each once, year, month and day
    given, between single literal characters (``%d-%m-%Y %H:%M``): a pattern of its texts with
    every field at full width in ASCII digits, and the ISO 8601 text (``{2}-{1}-{0}T{3}:{4}:00``)
    its groups make, for ``datetime.fromisoformat``; else None.

    A CRM export's times are mostly all different, so the cache does not help them; this reads
    one in a fifth of the time the general pattern and ``datetime()`` take. The texts it matches
    are a subset of those the pattern of :func:`_numeric_format` matches, read as the same
    time; the rest (``1-3-2017``) go that way. With ``in_utc`` the text says ``+00:00``.
    """
    pattern = []
    groups: dict[str, int] = {}
    position = 0
    while position < len(fmt):
        char = fmt[position]
        if char == "%":
            directive = fmt[position + 1 : position + 2]
            if directive not in _FIXED_WIDTH or directive in groups:
                return None
            groups[directive] = len(groups)
            pattern.append(_FIXED_WIDTH[directive])
            position += 2
            continue
        if char.isspace() and char != " ":
            return None  # strptime reads any run of whitespace there; keep this to one space
        pattern.append(re.escape(char))
        position += 1
    if not {"Y", "m", "d"} <= groups.keys():
        return None
    field = {name: f"{{{index}}}" for name, index in groups.items()}
    iso = "{Y}-{m}-{d}T{H}:{M}:{S}".format_map({"H": "00", "M": "00", "S": "00", **field})
    return re.compile("".join(pattern), re.ASCII), iso + ("+00:00" if in_utc else "")


def date_parser(formats: Iterable[str]) -> Callable[[object], date | None]:
    """A calendar date (no zone): ``2017-03-01`` or one of ``formats``."""
    read = datetime_from_text(tuple(formats), "UTC")
    return cached_text_parser(lambda text: read(text).date())


def timezone_name(raw: object) -> str | None:
    """An IANA timezone name such as ``Europe/Berlin``."""
    text = parse_text(raw)
    if text is None:
        return None
    try:
        ZoneInfo(text)
    except (ValueError, KeyError, OSError):  # OSError: a name too long for a file name
        msg = f"unknown timezone {quoted(text)}; use an IANA name such as Europe/Berlin"
        raise ValueError(msg) from None
    return text


def text_list(raw: object) -> list[str] | None:
    """``Central`` or ``Central; East`` (``;`` or ``,`` separated); a JSON list as is."""
    if isinstance(raw, list):
        # Each item text, as the OpenAPI document says: ``str()`` of anything else stored its
        # Python form as a pool (``['east']``, ``None``, ``True``). Every bad item is named,
        # in one message, as the HTTP API names each: one round of fixes makes the line import.
        bad = [
            f"item {index}: {problem}"
            for index, item in enumerate(raw)
            if (problem := _item_problem(item)) is not None
        ]
        if bad:
            raise ValueError("; ".join(bad))
        return [item.strip() for item in raw if item.strip()]
    if raw is not None and not isinstance(raw, str):
        # A number was stored as the pool "5": the HTTP API refuses it, a file's line too.
        msg = f"expected text or a list of text, got {json_shown(raw)}"
        raise ValueError(msg)
    text = parse_text(raw)
    if text is None:
        return None
    return [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]


def _item_problem(item: object) -> str | None:
    """Why a list's item is no pool name: not text, or text no store can hold."""
    if not isinstance(item, str):
        return f"expected text, got {json_shown(item)}"
    return text_problem(item)


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
    return _shown(value)


def _as_json(value: list[object] | dict[str, object]) -> str:
    """A list or object as the sender wrote it (``["east"]``, not Python's ``['east']``)."""
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def email_address(raw: object) -> str | None:
    """Exactly one plain address such as ``ann@example.com``, kept as written; empty is None.

    Not a list, not ``Ann <ann@example.com>``: what is stored is what the envelope will hold.
    """
    return _one_address(parse_text(raw))


def lead_email(raw: object) -> str | None:
    """As :func:`email_address`, but a CRM's placeholder without an @ (``n/a``) is no address.

    Exports write ``n/a`` or ``-`` where a lead has no email; such a lead still moves through
    the funnel, unmailed, as one with an empty cell does. Text with an @ is meant as an address
    and must be one.
    """
    text = parse_text(raw)
    return _one_address(text) if text is not None and "@" in text else None


def _one_address(text: str | None) -> str | None:
    if text is None:
        return None
    problem = address_problem(text)
    if problem is not None:
        msg = (
            f"{_shown(text)} is not one plain email address ({problem}); write exactly one "
            "address such as ann@example.com, without a name, a second address or a comment"
        )
        raise ValueError(msg)
    return text


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""Control characters (C0, DEL, C1) and Unicode's line and paragraph separators."""


def identifier_problem(text: str) -> str | None:
    """Why ``text`` cannot be an external id, or None: an id is one line of text, written into
    CSV exports, log lines and email headers, which a line break or tab would split."""
    found = _CONTROL.search(text)
    if found is None:
        return None
    shown = ascii(found.group())[1:-1]  # \n, \t, \x85, \u2028
    return (
        "may not contain a line break, tab or other control character "
        f"({shown}, character {found.start() + 1}); write the id on one line"
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
    not finite, which JSON columns cannot hold; and nesting beyond :data:`MAX_NESTING`, which
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


_SHORT = reprlib.Repr()
_SHORT.maxlevel = 3  # a deeply nested object shown whole would exceed the recursion limit


def _shown(raw: object) -> str:
    shown = _SHORT.repr(raw) if isinstance(raw, dict | list) else repr(raw)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def json_value(text: str) -> Any:
    """``text`` parsed as JSON, refusing NaN and Infinity (``ValueError``): JSON has neither, and
    the store could not hold them; and an object naming a key twice, whose first value the
    parser would drop without a word (``{"email": "a@x", "email": "b@x"}``: which one did the
    sender mean?). Nesting deeper than the parser goes is a ``ValueError`` too. The HTTP API
    and JSONL imports read every document with it."""
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_one_key_each)
    except RecursionError:
        msg = "nested too deeply"
        raise ValueError(msg) from None


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
