"""The dashboard's package files as its routes serve them: the Jinja templates with the
filters the pages use to show values, the stylesheet and the icon."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime, timedelta
from importlib import resources

from fastapi.responses import Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from leadflow.durations import format_duration


def page_templates() -> Environment:
    """The package's Jinja templates, autoescaped, a missing value an error, with the filters
    the pages use."""
    templates = Environment(
        loader=PackageLoader("leadflow.dashboard", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
    )
    templates.filters["when"] = _when
    templates.filters["business"] = _business
    templates.filters["seconds"] = _seconds
    templates.filters["duration"] = format_duration
    templates.filters["json_text"] = _json_text
    templates.filters["clock_time"] = _clock_time
    templates.filters["report_now"] = _report_now
    return templates


@functools.cache
def _stylesheet_text() -> str:
    """Read once: the stylesheet is part of the installed package, it does not change."""
    return resources.files("leadflow.dashboard").joinpath("static/dashboard.css").read_text()


async def stylesheet() -> Response:
    css = _stylesheet_text()
    headers = {"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"}
    return Response(css, media_type="text/css", headers=headers)


@functools.cache
def _icon_text() -> str:
    return resources.files("leadflow.dashboard").joinpath("static/icon.svg").read_text()


async def icon() -> Response:
    """The pages' icon: declared by each page, so a browser does not ask for /favicon.ico
    (a 404 on every page in the log) and shows the tab with leadflow's own mark."""
    headers = {"Cache-Control": "max-age=86400", "X-Content-Type-Options": "nosniff"}
    return Response(_icon_text(), media_type="image/svg+xml", headers=headers)


def _business(value: timedelta | None, overdue: bool) -> str:
    """Business time left before a due time, or past it, in hours and minutes.

    ``overdue`` is by the clock: a timer due before its calendar opens, or at Friday's closing,
    is overdue by no business time yet, not "left".
    """
    if value is None:
        return "-"
    minutes = int(abs(value).total_seconds()) // 60
    spelled = f"{minutes // 60}h {minutes % 60:02d}m"
    return f"{spelled} overdue" if overdue else f"{spelled} left"


def _seconds(value: float) -> str:
    """A computation's time as people read it: ``0.4 s``, ``17 s``."""
    return f"{value:.1f} s" if value < 10 else f"{value:,.0f} s"


def _clock_time(value: datetime) -> str:
    """``2026-03-02 09:14 UTC``: the day always, as the report says it. "09:14 UTC" alone
    read as today's while ``dashboard serve --now`` held the clock in 2017."""
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _report_now(value: datetime) -> str:
    """The instant as ``leadflow report --now`` takes it, to the microsecond when it has
    them: ``2026-12-02T00:36:51.094733Z``; the page's figures equal that report's."""
    shown = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{shown}.{value.microsecond:06d}Z" if value.microsecond else f"{shown}Z"


def _json_text(value: object) -> str:
    """A list or mapping of the audit as JSON people read: quotes and accents as they are.

    Jinja's ``tojson`` is for a ``<script>``: it writes ``'`` as ``\\u0027`` and marks the text
    safe. This is plain text, so autoescaping makes it safe for HTML as any other value."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")
