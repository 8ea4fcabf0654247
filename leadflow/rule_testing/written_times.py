"""An expected time as the test wrote it, and an actual time in that same form.

Times are compared as instants (UTC text), but a failing step's diff shows them as people read
them: the expected ``due: 2026-03-02T13:00`` (the calendar's local time) as written, not as
``"2026-03-02T12:00:00Z"``, and the actual time beside it in the same form and timezone, so that
``13:00`` against ``14:00`` is the whole difference at a glance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from leadflow.durations import format_duration

_OFFSET = re.compile(r"(?:Z|[+-]\d\d:?\d\d)$", re.IGNORECASE)
_SECONDS = re.compile(r"\d\d:\d\d:\d\d")
_PLAIN = re.compile(r"^[0-9+-][0-9A-Za-z:+. -]*$")
"""Text a YAML flow mapping reads back as written without quotes (times, ``+4h``)."""


@dataclass(frozen=True)
class WrittenTime:
    """How a test wrote a time: its text, and the form an actual time is shown in beside it."""

    text: str
    zone: tzinfo
    """The timezone the user wrote in: the offset written, else the calendar's."""
    with_offset: bool
    """Whether the text carries its offset (``Z``, ``+01:00``)."""
    seconds: bool
    space: bool = False
    """Date and time separated by a space (``2026-03-02 13:00``), not ``T``."""
    anchor: datetime | None = None
    """For a relative time (``+4h``): the instant it counts from; the actual is shown so too."""

    @classmethod
    def of(cls, text: str, calendar: tzinfo, anchor: datetime) -> WrittenTime:
        """The form of ``text``: ISO 8601, or ``+2h`` counting from ``anchor``."""
        text = text.strip()
        relative = text[:1] in {"+", "-"}
        offset = None if relative else _OFFSET.search(text)
        zone: tzinfo = calendar
        if offset is not None:
            zone = _zone_of(offset.group(0))
        return cls(
            text,
            zone,
            with_offset=offset is not None,
            seconds=bool(_SECONDS.search(text)),
            space=not relative and " " in text.strip(),
            anchor=anchor if relative else None,
        )

    def show(self, instant: str | None) -> str | None:
        """``instant`` (the compared UTC text, ``...Z``) in this form; other text unchanged."""
        if instant is None:
            return None
        try:
            moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
        except ValueError:
            return instant
        if self.anchor is not None:
            after = moment - self.anchor
            sign = "-" if after < timedelta(0) else "+"
            return sign + format_duration(abs(after))
        local = moment.astimezone(self.zone)
        timespec = "seconds" if self.seconds or local.second else "minutes"
        shown = local.replace(tzinfo=None).isoformat(
            sep=" " if self.space else "T", timespec=timespec
        )
        if self.with_offset:
            offset = local.strftime("%z")
            shown += "Z" if self.text.upper().endswith("Z") else f"{offset[:3]}:{offset[3:]}"
        return shown


def plain(text: str) -> bool:
    """Whether ``text`` is shown unquoted in a diff line (as a test would write it)."""
    return bool(_PLAIN.match(text))


def _zone_of(offset: str) -> tzinfo:
    if offset.upper() == "Z":
        return UTC
    sign = -1 if offset[0] == "-" else 1
    digits = offset[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
