"""Reading a date or time cell: ISO 8601 or the mapping's ``date_formats``, naive times in its
timezone, stored in UTC; and advice when a date's day and month order is not set.

Each parser follows :mod:`leadflow.ingest.values`: the typed value, None for an empty cell, or a
:class:`ValueError` whose message is the reason shown to the user. A CRM export repeats its
dates, and strptime is slow: cells are cached, and common formats read by precompiled patterns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache
from typing import TypeVar
from zoneinfo import ZoneInfo

from leadflow.ingest.json_values import json_shown
from leadflow.ingest.names import quoted

T = TypeVar("T")


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
