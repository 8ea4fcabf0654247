"""The report as one self-contained HTML file (charts come next)."""

from __future__ import annotations

import html

from leadflow.funnel.report import Report
from leadflow.funnel.sections import Row
from leadflow.funnel.text import TITLES, shown


def render_html(report: Report, sections: dict[str, list[Row]]) -> str:
    parts = ["<h1>Funnel report</h1>"]
    for name, rows in sections.items():
        parts.append(f"<h2>{html.escape(TITLES.get(name, name))}</h2>")
        parts.append(_table(rows))
    return "<!doctype html><meta charset=utf-8><body>" + "".join(parts) + "</body>"


def _table(rows: list[Row]) -> str:
    if not rows:
        return "<p>Nothing in the period.</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(shown(r.get(c), c))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
