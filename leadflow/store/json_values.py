"""Values as the store's JSON columns hold them: times as ISO 8601, durations in seconds.

The audit, the SLA timers, the CRM updates and the lead view all write or show such values, so
the conversion lives here, below all of them, rather than in any one of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it: times as ISO 8601, durations in seconds."""
    if value is None or type(value) in _PLAIN:  # most values: nothing to convert
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Mapping):
        return {str(key): jsonable(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(inner) for inner in value]
    return value


_PLAIN = frozenset({str, int, float, bool})
