"""The report as one self-contained HTML file: four charts and every section's table.

The charts (:mod:`leadflow.funnel.charts`) are drawn by matplotlib as SVG and inlined, with
their text kept as text: the file needs no script, no font and no network to open (no CDN),
prints well and stays small. The figures come from the same sections as the table, CSV and
JSON renderings.
"""

from __future__ import annotations

import html

from leadflow.funnel.charts import CHARTS
from leadflow.funnel.report import Report
from leadflow.funnel.sections import Row
from leadflow.funnel.text import (
    TEXT_COLUMNS,
    TITLES,
    as_of_text,
    for_people,
    for_reading,
    read_text,
    shown,
)

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{margin-bottom:.2em}.period{color:#555;margin-top:0}
h1,h2,.period{overflow-wrap:anywhere}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,26em),1fr));gap:1.5em}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:.5em}
figcaption{font-weight:600;margin-bottom:.3em}svg{width:100%;height:auto}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border-bottom:1px solid #e5e5e5;padding:.25em .6em;text-align:right}
th{background:#f5f5f5}td.text,th.text{text-align:left;overflow-wrap:anywhere;min-width:8em}
.wide{overflow-x:auto}
.note{color:#555;font-size:.85em;margin-top:-1em}
"""


def render_html(report: Report, sections: dict[str, list[Row]]) -> str:
    """The whole page."""
    period = report.period
    figures = "".join(
        f"<figure><figcaption>{html.escape(chart.title)}</figcaption>"
        f"{chart.svg(chart.data(report, sections))}</figure>"
        for chart in CHARTS
    )
    tables = "".join(
        f"<h2>{html.escape(TITLES.get(name, name))}</h2>{_table(*for_people(name, rows))}"
        for name, rows in for_reading(report, sections).items()
    )
    heading = (
        f"<h1>Funnel report</h1><p class=period>{period.start.isoformat()} to "
        f"{period.end.isoformat()} (end excluded), {period.grouping_text()}; "
        f"{html.escape(read_text(report))}. Definitions: docs/report.md.</p>"
    )
    if period.ends_later:
        heading += f"<p class=as-of>{html.escape(as_of_text(period))}</p>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>Funnel report</title><style>{STYLE}</style></head><body>{heading}"
        f"<div class=charts>{figures}</div>{tables}</body></html>\n"
    )


def _table(rows: list[Row], notes: list[str]) -> str:
    if not rows:
        return "<p>Nothing in the period.</p>"
    note = "".join(f"<p class=note>{html.escape(text)}</p>" for text in notes)
    columns = list(rows[0])

    def cell(tag: str, column: str, value: str) -> str:
        kind = " class=text" if column in TEXT_COLUMNS else ""
        return f"<{tag}{kind}>{html.escape(value)}</{tag}>"

    head = "".join(cell("th", c, c.replace("_", " ")) for c in columns)
    body = "".join(
        "<tr>" + "".join(cell("td", c, shown(r.get(c), c)) for c in columns) + "</tr>" for r in rows
    )
    # A table wider than the window scrolls in its own box; the headings keep the window's width.
    return f"<div class=wide><table><tr>{head}</tr>{body}</table></div>{note}"
