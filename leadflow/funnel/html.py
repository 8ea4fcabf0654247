"""The report as one self-contained HTML file: four charts and every section's table.

The charts are drawn by matplotlib as SVG and inlined, with their text kept as text: the file
needs no script, no font and no network to open (no CDN), prints well and stays small. The
figures come from the same sections as the table, CSV and JSON renderings.
"""

from __future__ import annotations

import html
import io
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

from leadflow.funnel.report import Report
from leadflow.funnel.sections import Row
from leadflow.funnel.sla import ENDINGS
from leadflow.funnel.text import TITLES, shown

if TYPE_CHECKING:
    from matplotlib.axes import Axes

COLOURS = {
    "met": "#2e7d32",
    "met_late": "#f9a825",
    "breached": "#c62828",
    "reassigned": "#6a1b9a",
    "cancelled": "#90a4ae",
}
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{margin-bottom:.2em}.period{color:#555;margin-top:0}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:1.5em}
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:.5em}
figcaption{font-weight:600;margin-bottom:.3em}svg{width:100%;height:auto}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}
th,td{border-bottom:1px solid #e5e5e5;padding:.25em .6em;text-align:right}
th{background:#f5f5f5}td.text,th.text{text-align:left}
"""


def render_html(report: Report, sections: dict[str, list[Row]]) -> str:
    """The whole page."""
    period = report.period
    charts = [
        ("Funnel: entries into each stage", _funnel(report)),
        ("Period conversion by week", _weekly(sections["weekly_conversion"])),
        ("SLA compliance by rep", _sla(sections["sla"])),
        ("Time in stage (median and p90 days, leads)", _velocity(sections["time_in_stage"])),
    ]
    figures = "".join(
        f"<figure><figcaption>{html.escape(title)}</figcaption>{svg}</figure>"
        for title, svg in charts
    )
    tables = "".join(
        f"<h2>{html.escape(TITLES.get(name, name))}</h2>{_table(rows)}"
        for name, rows in sections.items()
    )
    heading = (
        f"<h1>Funnel report</h1><p class=period>{period.start.isoformat()} to "
        f"{period.end.isoformat()} (end excluded), grouped by {period.by.value}; generated "
        f"{report.generated_at.isoformat()}. Definitions: docs/report.md.</p>"
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>Funnel report</title><style>{STYLE}</style></head><body>{heading}"
        f"<div class=charts>{figures}</div>{tables}</body></html>\n"
    )


def _table(rows: list[Row]) -> str:
    if not rows:
        return "<p>Nothing in the period.</p>"
    columns = list(rows[0])
    text = {c for c in columns if all(isinstance(r.get(c), str | None) for r in rows)}

    def cell(tag: str, column: str, value: str) -> str:
        kind = " class=text" if column in text else ""
        return f"<{tag}{kind}>{html.escape(value)}</{tag}>"

    head = "".join(cell("th", c, c.replace("_", " ")) for c in columns)
    body = "".join(
        "<tr>" + "".join(cell("td", c, shown(r.get(c), c)) for c in columns) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _chart(draw: Callable[[Axes], bool], height: float = 3.2) -> str:
    """An SVG of one chart (``draw`` returns False when there is nothing to draw)."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    # Its info lines (a font cache built, week labels read as categories) are not the user's.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)

    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "leadflow", "font.size": 9}):
        figure = Figure(figsize=(5.6, height), layout="constrained")
        axes = figure.add_subplot()
        if not draw(axes):
            return "<p>Nothing in the period.</p>"
        axes.spines[["top", "right"]].set_visible(False)
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg") :]


def _funnel(report: Report) -> str:
    totals: dict[str, int] = defaultdict(int)
    for (_group, stage), count in report.entries.items():
        totals[stage] += count
    stages = [s for s in report.stages if s in totals]

    def draw(axes: Axes) -> bool:
        if not stages:
            return False
        values = [totals[s] for s in stages]
        bars = axes.barh(stages[::-1], values[::-1], color="#1565c0")
        axes.bar_label(bars, padding=3)
        axes.set_xlabel("entries in the period")
        return True

    return _chart(draw)


def _weekly(rows: list[Row]) -> str:
    series: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        if row["rate"] is not None and row["base"]:
            series[f"{row['from_stage']} → {row['to_stage']}"][row["group"]] = row["rate"] * 100
    weeks = sorted({week for points in series.values() for week in points})

    def draw(axes: Axes) -> bool:
        if not series:
            return False
        for name, points in sorted(series.items()):
            shown_weeks = [w for w in weeks if w in points]
            axes.plot(shown_weeks, [points[w] for w in shown_weeks], marker="o", label=name)
        axes.set_ylabel("entries B / entries A (%)")
        axes.set_xlabel("week (Monday)")
        axes.tick_params(axis="x", labelrotation=45)
        axes.legend(fontsize=7)
        return True

    return _chart(draw)


def _sla(rows: list[Row]) -> str:
    reps = [r for r in rows if r["by"] == "rep"]

    def draw(axes: Axes) -> bool:
        if not reps:
            return False
        names = [str(r["group"]) for r in reps]
        left = [0.0] * len(reps)
        for ending in ENDINGS:
            values = [float(r[ending]) for r in reps]
            axes.barh(names, values, left=left, color=COLOURS[ending], label=ending)
            left = [a + b for a, b in zip(left, values, strict=True)]
        axes.set_xlabel("SLA timers ended")
        axes.legend(fontsize=7, ncols=5, loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False)
        return True

    return _chart(draw, height=max(2.4, 0.35 * len(reps) + 1.4))


def _velocity(rows: list[Row]) -> str:
    leads = [r for r in rows if r["subject"] == "lead" and r["median_days"] is not None]
    # A grouped report has a line per group and stage: the chart shows the first group's.
    group = leads[0]["group"] if leads else None
    totals = {r["stage"]: (r["median_days"], r["p90_days"]) for r in leads if r["group"] == group}

    def draw(axes: Axes) -> bool:
        if not totals:
            return False
        stages = list(totals)
        medians = [totals[s][0] for s in stages]
        p90s = [totals[s][1] for s in stages]
        bars = axes.bar(stages, medians, color="#00838f", label="median")
        axes.scatter(stages, p90s, color="#e65100", marker="_", s=400, label="p90", zorder=3)
        axes.bar_label(bars, fmt="%.1f", padding=2)
        axes.set_ylabel("days in stage")
        axes.set_title(f"group: {group}", fontsize=8, loc="left")
        axes.legend(fontsize=7)
        return True

    return _chart(draw)
