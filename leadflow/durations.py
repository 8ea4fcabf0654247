"""Durations as people write them in config and rule files: ``90m``, ``4h``, ``2d``, ``1w``."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from functools import lru_cache

from leadflow.errors import DurationError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_WHOLE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*[smhdw]\s*)+$")
_MONTHS = re.compile(r"(\d+(?:\.\d+)?)\s*M")

LONGEST_DURATION = timedelta(days=36525)
"""A hundred years: longer durations are typos, and would overflow date maths."""


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Read ``"1d 12h"``, ``"90m"`` or a number of seconds into a positive timedelta of at
    most :data:`LONGEST_DURATION`; :class:`DurationError` (a ValueError) for anything else."""
    try:
        value = _read(text)
    except OverflowError:  # beyond timedelta's 999,999,999 days
        value = None
    if value is None or value > LONGEST_DURATION:
        msg = f"{text!r} is too long; at most {format_duration(LONGEST_DURATION)} (100 years)"
        raise DurationError(msg)
    if value <= timedelta(0):
        msg = f"{text!r}: a duration must be longer than zero"
        raise DurationError(msg)
    return value


def not_a_duration(value: object) -> DurationError:
    """The error for a value that is no duration at all (not one out of bounds)."""
    return DurationError(
        f"{value!r} is not a duration; write a number and a unit (s, m, h, d, w), e.g. 90m"
    )


def _read(text: str | int | float | timedelta) -> timedelta:
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        msg = f"{text!r} is not a duration; write e.g. 90m, 4h, 2d"
        raise DurationError(msg)
    if isinstance(text, int | float):
        if math.isnan(text):
            raise not_a_duration(text)
        return timedelta(seconds=text)
    lowered = text.strip().lower()
    if lowered.startswith("-") and _WHOLE.match(lowered[1:]):
        # A duration with a sign is one, only not a positive one: "not a duration; write a
        # number and a unit" told someone who had written both to do so.
        msg = f"{text!r}: a duration must be longer than zero; write {text.strip()[1:].strip()}"
        raise DurationError(msg)
    if not _WHOLE.match(lowered):
        raise not_a_duration(text)
    if months := _MONTHS.search(text):
        # Read as minutes, `audit.keep: 12M` let retention delete the audit older than twelve
        # minutes; ISO 8601 and most schedulers' M is a month.
        amount = months.group(1)
        msg = (
            f"{text!r}: M is minutes here, not months; write {amount}m for minutes, "
            f"or days for months (e.g. {round(float(amount) * 30)}d)"
        )
        raise DurationError(msg)
    value = timedelta()
    for amount, unit in _PART.findall(lowered):
        value += timedelta(**{_UNITS[unit]: float(amount)})
    return value


@lru_cache(maxsize=256)  # every firing's audit spells its rule's few durations
def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of ``value`` in the units :func:`parse_duration` reads."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"
