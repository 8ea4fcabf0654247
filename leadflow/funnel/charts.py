"""The report's four charts, each as its data, an SVG drawing of it and a sentence saying it.

The HTML report inlines the SVGs; the dashboard's Funnel page serves them as images and uses
the sentence as their text alternative. Each chart is split in three so that both show the
same figures from one implementation: ``data`` picks the chart's figures out of the report
and its sections (plain values, so a caller can key a cache by them), ``svg`` draws them with
matplotlib (text kept as text: no font, no script, no network) and ``describe`` writes them
as the report's table prints them.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from leadflow.funnel.period import ALL
from leadflow.funnel.report import Report
from leadflow.funnel.sections import Row, deal_stage_order
from leadflow.funnel.sla import ENDINGS
from leadflow.funnel.text import shown

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

ChartData = Any
"""A chart's figures: lists, dicts, strings and numbers only (JSON-able)."""

COLOURS = {
    "met": "#2e7d32",
    "met_late": "#f9a825",
    "breached": "#c62828",
    "reassigned": "#6a1b9a",
    "cancelled": "#90a4ae",
}
NOTHING = "Nothing in the period."


@dataclass(frozen=True)
class Chart:
    name: str
    """Its name in a URL (``/ui/funnel/charts/NAME.svg``)."""
    title: str
    data: Callable[[Report, dict[str, list[Row]]], ChartData]
    svg: Callable[[ChartData], str]
    """An ``<svg>`` element, or ``<p>`` saying there is nothing to draw."""
    describe: Callable[[ChartData], str]


def svg_chart(draw: Callable[[Axes], bool], height: float = 3.2) -> str:
    """An SVG of one chart (``draw`` returns False when there is nothing to draw)."""

    def one(figure: Figure) -> bool:
        axes = figure.add_subplot()
        axes.spines[["top", "right"]].set_visible(False)
        return draw(axes)

    return svg_figure(one, height)


def svg_figure(draw: Callable[[Figure], bool], height: float = 3.2) -> str:
    """An SVG of a figure ``draw`` fills (one chart, or several small ones), or a ``<p>``
    saying there is nothing to draw when it returns False."""
    # Its info lines (a font cache built on the first import, week labels read as categories)
    # are not the user's: quiet before the import, which builds the cache on a new machine.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "leadflow", "font.size": 9}):
        figure = Figure(figsize=(5.6, height), layout="constrained")
        if not draw(figure):
            return f"<p>{NOTHING}</p>"
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg") :]


LABEL_LENGTH = 24
"""Longest name a chart writes whole: a rep's name of 300 letters (a garbled CRM export) took
the whole figure and collapsed the drawing; the chart's words keep the full name."""


def short_labels(names: list[str]) -> list[str]:
    """``names`` cut to :data:`LABEL_LENGTH` with an ellipsis, still one label per name (bars
    with the same category label would be drawn as one)."""
    labels: list[str] = []
    for name in names:
        label = name if len(name) <= LABEL_LENGTH else name[: LABEL_LENGTH - 1] + "…"
        base, number = label, 2
        while label in labels:
            label, number = f"{base} ({number})", number + 1
        labels.append(label)
    return labels


def _counts_on(axis: Any) -> None:
    """Whole ticks on an axis of counts: no 0.25 entries or 0.2 timers between 0 and 1."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


# --- entries into each stage ------------------------------------------------------------


ENTRIES_LABEL = {"lead": "entries in the period", "deal": "deal entries in the period"}


def funnel_data(report: Report, sections: dict[str, list[Row]]) -> dict[str, Any]:
    """Entries per stage over every group: the leads', in the configured stage order; the
    deals' (open stages, then outcomes) when no lead entered a stage (a CRM export of deals
    alone)."""
    subject, found, order = "lead", report.entries, list(report.stages)
    if not found and report.deal_entries:
        subject, found = "deal", report.deal_entries
        order = deal_stage_order({stage for _, stage in found})
    totals: dict[str, int] = defaultdict(int)
    for (_group, stage), count in found.items():
        totals[stage] += count
    return {"subject": subject, "stages": [[s, totals[s]] for s in order if s in totals]}


def funnel_svg(data: dict[str, Any]) -> str:
    lines = data["stages"]

    def draw(axes: Axes) -> bool:
        if not lines:
            return False
        stages = [stage for stage, _ in lines]
        values = [count for _, count in lines]
        bars = axes.barh(stages[::-1], values[::-1], color="#1565c0")
        axes.bar_label(bars, padding=3, fmt="{:,.0f}")  # 7,942 as the tables write it
        axes.set_xlabel(ENTRIES_LABEL[data["subject"]])
        _counts_on(axes.xaxis)
        return True

    return svg_chart(draw)


def funnel_text(data: dict[str, Any]) -> str:
    if not data["stages"]:
        return NOTHING
    entries = ", ".join(f"{s} {shown(n, 'entered')}" for s, n in data["stages"])
    return f"{ENTRIES_LABEL[data['subject']].capitalize()}: {entries}"


# --- period conversion by week ----------------------------------------------------------


def weekly_data(report: Report, sections: dict[str, list[Row]]) -> dict[str, dict[str, float]]:
    """Pair ("lead → mql") -> week -> period conversion rate (a fraction)."""
    series: dict[str, dict[str, float]] = defaultdict(dict)
    for row in sections["weekly_conversion"]:
        if row["rate"] is not None and row["base"]:
            series[f"{row['from_stage']} → {row['to_stage']}"][str(row["group"])] = row["rate"]
    return {name: series[name] for name in sorted(series)}


def weekly_svg(series: dict[str, dict[str, float]]) -> str:
    weeks = sorted({week for points in series.values() for week in points})

    def draw(axes: Axes) -> bool:
        if not series:
            return False
        for name, points in series.items():
            shown_weeks = [w for w in weeks if w in points]
            rates = [points[w] * 100 for w in shown_weeks]
            # Unclipped: a 0% point sits on the axis whole, not as half a dot.
            axes.plot(shown_weeks, rates, marker="o", label=name, clip_on=False)
        # Rates are never negative; a lone 0% would otherwise sit mid-axis between -0.04 and 0.04.
        highest = max(rate for points in series.values() for rate in points.values()) * 100
        axes.set_ylim(0, max(highest * 1.15, 10.0))
        axes.set_ylabel("entries B / entries A (%)")
        axes.set_xlabel("week (Monday)")
        axes.tick_params(axis="x", labelrotation=45)
        axes.legend(fontsize=7)
        return True

    return svg_chart(draw)


def weekly_text(series: dict[str, dict[str, float]]) -> str:
    if not series:
        return NOTHING
    return "Period conversion by week (Monday): " + "; ".join(
        f"{name}: " + ", ".join(f"{week} {shown(rate, 'rate')}" for week, rate in points.items())
        for name, points in series.items()
    )


# --- SLA endings by rep -----------------------------------------------------------------


def sla_data(report: Report, sections: dict[str, list[Row]]) -> list[tuple[str, list[int]]]:
    """Rep -> the count of each ending (``ENDINGS`` order) of their timers ended."""
    return [
        (str(row["group"]), [int(row[ending]) for ending in ENDINGS])
        for row in sections["sla"]
        if row["by"] == "rep"
    ]


def _none_ended(reps: list[tuple[str, list[int]]]) -> bool:
    """No timer ended (only running ones, or none): bars of zero would draw an empty axis
    around 0 with negative ticks."""
    return not any(any(counts) for _, counts in reps)


def sla_svg(reps: list[tuple[str, list[int]]]) -> str:
    def draw(axes: Axes) -> bool:
        if _none_ended(reps):
            return False
        names = short_labels([name for name, _ in reps])
        left = [0.0] * len(reps)
        for index, ending in enumerate(ENDINGS):
            values = [float(counts[index]) for _, counts in reps]
            axes.barh(names, values, left=left, color=COLOURS[ending], label=ending)
            left = [a + b for a, b in zip(left, values, strict=True)]
        axes.set_xlabel("SLA timers ended")
        _counts_on(axes.xaxis)
        axes.legend(fontsize=7, ncols=5, loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False)
        return True

    return svg_chart(draw, height=max(2.4, 0.35 * len(reps) + 1.4))


def sla_text(reps: list[tuple[str, list[int]]]) -> str:
    if _none_ended(reps):
        return NOTHING
    return "SLA timers ended, by rep: " + "; ".join(
        f"{name}: "
        + ", ".join(
            f"{ending.replace('_', ' ')} {count}"
            for ending, count in zip(ENDINGS, counts, strict=True)
        )
        for name, counts in reps
    )


# --- time in stage ----------------------------------------------------------------------


MOST_GROUPS = 6
"""Groups the time-in-stage chart draws at most, one small chart each: those with the most
ended stays (a report by rep on the Maven export has 35 groups); the title says how many of
how many, and the table lists every one."""

P90_LABEL = "p90 (9 of 10 stays ended within)"


def velocity_data(report: Report, sections: dict[str, list[Row]]) -> dict[str, Any]:
    """Median and p90 days per stage of the leads, or of the deals when no lead stay ended
    (a CRM export of deals alone); per group, up to :data:`MOST_GROUPS` of them, those whose
    ended stays are the most first (by name on a tie), with ``groups``, how many there are."""
    measured = [r for r in sections["time_in_stage"] if r["median_days"] is not None]
    subject = "lead" if any(r["subject"] == "lead" for r in measured) else "deal"
    rows = [r for r in measured if r["subject"] == subject]
    stays: dict[str, int] = {}
    for row in rows:
        stays[str(row["group"])] = stays.get(str(row["group"]), 0) + int(row["left"])
    ranked = sorted(stays, key=lambda name: (-stays[name], name))
    return {
        "subject": subject,
        "groups": len(ranked),
        "drawn": [
            [
                group,
                [
                    [r["stage"], r["median_days"], r["p90_days"]]
                    for r in rows
                    if r["group"] == group
                ],
            ]
            for group in ranked[:MOST_GROUPS]
        ],
    }


def velocity_title(data: dict[str, Any]) -> str:
    """What the chart draws: ``deals``, ``leads, 6 of 35 groups (the most ended stays)``."""
    title, drawn, groups = f"{data['subject']}s", len(data["drawn"]), data["groups"]
    if drawn == 1 and data["drawn"][0][0] == ALL:
        return title
    if drawn < groups:
        return f"{title}, {drawn} of {groups} groups (the most ended stays; all in the table)"
    return f"{title}, {groups} group{'s' if groups != 1 else ''}"


def velocity_svg(data: dict[str, Any]) -> str:
    drawn = data["drawn"]
    columns = 1 if len(drawn) == 1 else 2
    rows = -(-len(drawn) // columns)

    def draw(figure: Figure) -> bool:
        if not drawn:
            return False
        grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
        every = list(grid.flat)
        highest = max(max(m, p) for _, lines in drawn for _, m, p in lines)
        for axes, (group, lines) in zip(every, drawn, strict=False):
            _stage_bars(axes, lines, highest)
            if group != ALL:
                (label,) = short_labels([str(group)])
                axes.set_title(label, fontsize=8, loc="left")
        for spare in every[len(drawn) :]:
            # An odd count leaves the last cell empty: the one above it shows the stages.
            spare.remove()
            every[every.index(spare) - columns].xaxis.set_tick_params(labelbottom=True)
        handles, labels = every[0].get_legend_handles_labels()
        median_first = sorted(range(len(labels)), key=lambda n: labels[n] != "median")
        figure.legend(
            [handles[n] for n in median_first],
            [labels[n] for n in median_first],
            fontsize=7,
            loc="outside lower center",
            ncols=2,
        )
        figure.suptitle(velocity_title(data), fontsize=8, x=0.02, ha="left")
        figure.supylabel("days in stage", fontsize=9)
        return True

    return svg_figure(draw, height=1.3 + (1.9 if rows == 1 else 1.6) * rows)


def _stage_bars(axes: Axes, lines: list[list[Any]], highest: float) -> None:
    """One group's stages: the median as a bar labelled with its days, the p90 as a mark."""
    stages = [stage for stage, _, _ in lines]
    bars = axes.bar(stages, [m for _, m, _ in lines], color="#00838f", label="median")
    p90s = [p for _, _, p in lines]
    axes.scatter(stages, p90s, color="#e65100", marker="_", s=400, label=P90_LABEL, zorder=3)
    # Stays shorter than a day (an MQL taken within the hour) would all read 0.0.
    axes.bar_label(bars, fmt=lambda days: f"{days:.1f}" if days >= 1 else f"{days:.2f}", padding=2)
    # Left to itself the axis spans the data: medians of 0.00 days got an axis of -0.04 to 0.04
    # (or 0 to 0.0002), and a stay of minutes a full-height bar. At least one day, and room
    # above the highest p90 mark of every group (the groups share the axis).
    axes.set_ylim(0, max(1.0, highest * 1.1))
    axes.spines[["top", "right"]].set_visible(False)
    if len(stages) > 3:
        axes.tick_params(axis="x", labelrotation=30)


def velocity_text(data: dict[str, Any]) -> str:
    drawn = data["drawn"]
    if not drawn:
        return NOTHING

    def stages(lines: list[list[Any]]) -> str:
        return "; ".join(
            f"{stage} median {shown(median, 'days')}, p90 {shown(p90, 'days')}"
            for stage, median, p90 in lines
        )

    if data["groups"] == 1:
        ((group, lines),) = drawn
        return f"Days in stage, {data['subject']}s (group {group}): {stages(lines)}"
    return f"Days in stage, {velocity_title(data)}: " + " ".join(
        f"(group {group}) {stages(lines)}." for group, lines in drawn
    )


CHARTS = (
    Chart(
        "funnel",
        "Funnel: entries into each stage",
        funnel_data,
        funnel_svg,
        funnel_text,
    ),
    Chart(
        "weekly-conversion",
        "Period conversion by week",
        weekly_data,
        weekly_svg,
        weekly_text,
    ),
    Chart("sla-by-rep", "SLA compliance by rep", sla_data, sla_svg, sla_text),
    Chart(
        "time-in-stage",
        "Time in stage (median and p90 days)",
        velocity_data,
        velocity_svg,
        velocity_text,
    ),
)
"""In the order the report shows them."""
