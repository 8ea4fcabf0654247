"""The Funnel page's charts: the funnel report's own (:mod:`leadflow.funnel.charts`), each served
as an SVG image of its own URL.

Why images and not SVG inline in the page: matplotlib's SVG styles its shapes with ``style``
attributes and a ``<style>`` element, which the dashboard's Content-Security-Policy
(``style-src 'self'``) rightly refuses inside the page; an image is a document of its own.
And drawing costs tens of milliseconds a chart, which the page's answer should not wait for.

The page computes each chart's figures with the report (a cheap part of it) and names them by
a digest of those figures in the image's URL; the image request draws exactly the figures the
page was built from, once: what it draws is kept by digest, so the same period over an
unchanged store is drawn once however often it is shown. A digest no longer kept (another
process, a restart, many periods since) is computed again from the period.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from leadflow.funnel.charts import Chart
    from leadflow.funnel.report import Report
    from leadflow.funnel.sections import Row

ChartData = Any
"""As :data:`leadflow.funnel.charts.ChartData` (that package is imported on first use)."""
Kept = TypeVar("Kept")

KEPT = 64
"""Charts kept (figures and drawings): a few periods' worth for the people looking."""


@dataclass(frozen=True)
class ChartView:
    """One chart as the page shows it: the image's name and digest, the figures in words."""

    name: str
    title: str
    text: str
    digest: str
    data: ChartData
    drawn: bool
    """False when the period has nothing to draw (the words say so)."""


def chart_views(report: Report, sections: dict[str, list[Row]]) -> list[ChartView]:
    """The report's charts, each with its figures, their sentence and their digest."""
    from leadflow.funnel.charts import CHARTS, NOTHING

    views = []
    for chart in CHARTS:
        data = chart.data(report, sections)
        encoded = json.dumps([chart.name, data], sort_keys=True, default=str)
        digest = hashlib.sha256(encoded.encode()).hexdigest()[:20]
        text = chart.describe(data)
        views.append(ChartView(chart.name, chart.title, text, digest, data, text != NOTHING))
    return views


def chart_named(name: str) -> Chart | None:
    from leadflow.funnel.charts import CHARTS

    return next((chart for chart in CHARTS if chart.name == name), None)


class ChartDrawings:
    """The figures the pages were built from and their drawings, by (name, digest), bounded."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._data: OrderedDict[tuple[str, str], ChartData] = OrderedDict()
        self._svg: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()
        # matplotlib's settings are process-wide (rc_context): one drawing at a time.
        self._drawing = threading.Lock()

    def remember(self, views: list[ChartView]) -> None:
        with self._lock:
            for view in views:
                _put(self._data, (view.name, view.digest), view.data, self.kept)

    def svg(self, name: str, digest: str) -> str | None:
        """The drawing of the figures remembered under ``digest``; None when not remembered."""
        key = (name, digest)
        with self._lock:
            drawn = self._svg.get(key)
            known = key in self._data
            data = self._data.get(key)
        if drawn is not None:
            return drawn
        chart = chart_named(name)
        if chart is None or not known:
            return None
        with self._drawing:
            drawn = chart.svg(data)
        with self._lock:
            _put(self._svg, key, drawn, self.kept)
        return drawn


def _put(
    kept: OrderedDict[tuple[str, str], Kept], key: tuple[str, str], value: Kept, size: int
) -> None:
    kept[key] = value
    kept.move_to_end(key)
    while len(kept) > size:
        kept.popitem(last=False)
