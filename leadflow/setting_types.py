"""The value types every configuration section is built from: durations, whole numbers that
refuse a YAML ``true``, timezone and weekday names, and :class:`Section`, frozen and strict."""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
)
from pydantic_core import PydanticCustomError

from leadflow.durations import parse_duration
from leadflow.suggestions import did_you_mean

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _duration_or_zero(value: object) -> object:
    """A duration, or nothing at all: ``0`` (a number or ``0s``) for "not at all"."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | timedelta):
        return value  # pydantic says what is wrong with it
    if str(value).strip().lower() in {"0", "0.0", "0s"}:
        return timedelta(0)
    return parse_duration(value)


DurationOrZero = Annotated[timedelta, BeforeValidator(_duration_or_zero)]

_CLOCK = re.compile(r"(\d{1,2}):(\d\d)(?::(\d\d))?")


def clock_reading(value: str) -> tuple[int, int, int] | None:
    """Hours, minutes and seconds of a time written ``H:MM``, ``HH:MM`` or ``HH:MM:SS``,
    whatever their range (``25:00`` too); None for text of another form."""
    found = _CLOCK.fullmatch(value.strip())
    if found is None:
        return None
    return int(found[1]), int(found[2]), int(found[3] or 0)


def written_time(value: object, wanted: str) -> object:
    """A time of day as people write it: ``8:00`` (which pydantic's ISO reading refuses, "too
    short") made ``08:00:00``; a time off the clock (``25:00``, ``12:60``) or no time at all
    (``noon``) refused as ``expected WANTED, got '25:00'``, the value as written, not
    pydantic's "hour value is outside expected range of 0-23"."""
    if not isinstance(value, str):
        return value
    reading = clock_reading(value)
    if reading is None:
        try:
            time.fromisoformat(value.strip())  # another ISO 8601 form: 09:00:00.5
        except ValueError:
            raise refusal("time_parsing", wanted, value) from None
        return value
    hour, minute, second = reading
    if hour > 23 or minute > 59 or second > 59:
        raise refusal("time_parsing", wanted, value)
    return f"{hour:02d}:{minute:02d}:{second:02d}"


def _time_of_day(value: object) -> object:
    return written_time(value, "a time of day from 00:00 to 23:59")


TimeOfDay = Annotated[time, BeforeValidator(_time_of_day)]
"""A local wall-clock time: ``08:00``, ``8:00`` or ``08:00:30``."""

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _check_timezone(name: object) -> str:
    if not isinstance(name, str):
        raise refusal("value_error", "an IANA timezone name such as Europe/Berlin", name)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        zones = sorted(available_timezones())
        hint = did_you_mean(name, zones, n=3, quote=False, otherwise="use an IANA name")
        msg = f"unknown timezone {name!r}; {hint}"
        raise ValueError(msg) from None
    return name


TimezoneName = Annotated[str, BeforeValidator(_check_timezone)]


def refusal(error_type: str, wanted: str, value: object) -> PydanticCustomError:
    """``expected WANTED, got VALUE``; the config's message shows a YAML boolean as the file
    wrote it (``yes``), from the error's ``wanted`` and ``got`` (see ``config._explain``)."""
    got = str(value).lower() if isinstance(value, bool) else repr(value)
    return PydanticCustomError(
        error_type, "expected {wanted}, got {got}", {"wanted": wanted, "got": got}
    )


def _refuse_truth_value(error_type: str, wanted: str) -> BeforeValidator:
    """YAML reads ``port: true`` as a boolean, which pydantic would take as the number 1."""

    def refuse(value: object) -> object:
        if isinstance(value, bool):
            raise refusal(error_type, wanted, value)
        return value

    return BeforeValidator(refuse)


WholeNumber = Annotated[int, _refuse_truth_value("int_type", "a whole number")]
Number = Annotated[float, _refuse_truth_value("float_type", "a number")]


class Section(BaseModel):
    """Every section: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
