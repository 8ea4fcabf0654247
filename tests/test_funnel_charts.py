"""The report's charts when a period has little to draw."""

from __future__ import annotations

from typing import Any

from leadflow.funnel.charts import (
    NOTHING,
    sla_svg,
    sla_text,
    velocity_data,
    velocity_svg,
    velocity_text,
)


def test_sla_chart_with_only_running_timers_says_nothing_ended() -> None:
    """Timers started in the period but none ended: every rep's bars are zero, which drew an
    empty axis around 0 (ticks -0.04 to 0.04); the chart and its words say nothing ended."""
    running_only = [("Rep 03", [0, 0, 0, 0, 0]), ("Rep 04", [0, 0, 0, 0, 0])]
    assert sla_svg(running_only) == f"<p>{NOTHING}</p>"
    assert sla_text(running_only) == NOTHING
    assert sla_svg([]) == f"<p>{NOTHING}</p>"


def test_sla_chart_draws_when_one_timer_ended() -> None:
    reps = [("Rep 03", [0, 0, 0, 0, 0]), ("Rep 04", [1, 0, 0, 0, 0])]
    assert sla_svg(reps).startswith("<svg")
    assert sla_text(reps) == (
        "SLA timers ended, by rep: Rep 03: met 0, met late 0, breached 0, reassigned 0, "
        "cancelled 0; Rep 04: met 1, met late 0, breached 0, reassigned 0, cancelled 0"
    )


def _stay(group: str, stage: str, left: int, median: float | None) -> dict[str, Any]:
    return {
        "subject": "lead",
        "group": group,
        "stage": stage,
        "left": left,
        "median_days": median,
        "p90_days": median,
    }


def test_time_in_stage_chart_of_a_grouped_report_draws_every_group() -> None:
    """By rep: Rep 02 has 9 ended stays (4 + 5), "(none)" 3, Rep 01 2: all three are drawn,
    the most stays first (it drew Rep 02 alone, and said so only in small print); a deal's
    stays and stages with no median do not count. The p90 mark is named in the legend."""
    rows = [
        _stay("(none)", "recycled", 3, 1.5),
        _stay("Rep 01", "mql", 2, 0.5),
        _stay("Rep 02", "lead", 4, 6.0),
        _stay("Rep 02", "mql", 5, 0.25),
        _stay("Rep 03", "mql", 0, None),
        {**_stay("Rep 01", "Engaging", 40, 30.0), "subject": "deal"},
    ]
    data = velocity_data(None, {"time_in_stage": rows})  # type: ignore[arg-type]  # unused
    assert data == {
        "subject": "lead",
        "groups": 3,
        "drawn": [
            ["Rep 02", [["lead", 6.0, 6.0], ["mql", 0.25, 0.25]]],
            ["(none)", [["recycled", 1.5, 1.5]]],
            ["Rep 01", [["mql", 0.5, 0.5]]],
        ],
    }
    assert velocity_text(data) == (
        "Days in stage, leads, 3 groups: (group Rep 02) lead median 6.00, p90 6.00; mql median "
        "0.25, p90 0.25. (group (none)) recycled median 1.50, p90 1.50. (group Rep 01) mql "
        "median 0.50, p90 0.50."
    )
    texts = _texts(velocity_svg(data))
    assert [t for t in texts if t.startswith(("Rep", "(none)"))] == ["Rep 02", "(none)", "Rep 01"]
    assert texts[-4:] == [
        "leads, 3 groups",
        "days in stage",
        "median",
        "p90 (9 of 10 stays ended within)",
    ]


def test_time_in_stage_chart_draws_the_six_groups_with_most_stays_and_says_so() -> None:
    """Eight reps: the six with the most ended stays are drawn (Rep 8 down to Rep 3), and the
    title says 6 of 8, every one being in the table."""
    rows = [_stay(f"Rep {n}", "mql", n, float(n)) for n in range(1, 9)]
    data = velocity_data(None, {"time_in_stage": rows})  # type: ignore[arg-type]  # unused
    assert (data["groups"], [group for group, _ in data["drawn"]]) == (
        8,
        ["Rep 8", "Rep 7", "Rep 6", "Rep 5", "Rep 4", "Rep 3"],
    )
    title = "leads, 6 of 8 groups (the most ended stays; all in the table)"
    assert title in _texts(velocity_svg(data))
    assert velocity_text(data).startswith(f"Days in stage, {title}: (group Rep 8) mql median 8.00")


def test_time_in_stage_chart_of_deals_alone_draws_the_deals() -> None:
    """A CRM export of deals alone has no lead stay: the chart draws the deals' stages."""
    rows = [
        {**_stay("all", "Engaging", 6711, 45.0), "subject": "deal", "p90_days": 104.0},
        _stay("all", "mql", 0, None),
    ]
    data = velocity_data(None, {"time_in_stage": rows})  # type: ignore[arg-type]  # unused
    assert data == {"subject": "deal", "groups": 1, "drawn": [["all", [["Engaging", 45.0, 104.0]]]]}
    assert velocity_text(data) == (
        "Days in stage, deals (group all): Engaging median 45.00, p90 104.00"
    )


def _ungrouped(stages: list[list[Any]]) -> dict[str, Any]:
    return {"subject": "lead", "groups": 1, "drawn": [["all", stages]]}


def _texts(svg: str) -> list[str]:
    """The words and numbers an SVG chart writes (matplotlib keeps them as text)."""
    import re

    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def test_charts_of_counts_tick_whole_numbers_and_short_stays_keep_two_decimals() -> None:
    """One or two entries, one or two timers: the axis reads 0, 1, 2, never 0.25 or 0.5; a
    median stay of an hour is labelled 0.04 days, not 0.0."""
    from leadflow.funnel.charts import funnel_svg

    funnel = _texts(funnel_svg({"subject": "lead", "stages": [["lead", 1], ["mql", 2]]}))
    assert [text for text in funnel if text[:1].isdigit()] == ["0", "1", "2", "2", "1"]
    sla = _texts(sla_svg([("Rep 04", [1, 0, 1, 0, 0])]))
    assert [text for text in sla if text[:1].isdigit()] == ["0", "1", "2"]
    texts = _texts(velocity_svg(_ungrouped([["mql", 0.04, 0.04]])))
    bar_labels = texts[texts.index("1.0") + 1 : texts.index("leads")]  # after the axis' ticks
    assert bar_labels == ["0.04"]


def test_funnel_bars_are_labelled_as_the_tables_write_counts() -> None:
    """7,942 deals engaged (the Maven export's 2017), not 7942; the axis names the deals."""
    from leadflow.funnel.charts import funnel_svg

    drawn = funnel_svg({"subject": "deal", "stages": [["Engaging", 7942], ["won", 4238]]})
    assert ">7,942</text>" in drawn
    assert ">4,238</text>" in drawn
    assert ">deal entries in the period</text>" in drawn


def test_time_in_stage_axis_spans_at_least_a_day() -> None:
    """Medians of 0.00 days (every stay ended within minutes) drew full-height bars on an axis
    of -0.04 to 0.04 days: the axis now runs from 0 to at least 1 day, whatever the stays."""

    def ticks(median: float, p90: float) -> list[str]:
        texts = _texts(velocity_svg(_ungrouped([["mql", median, p90]])))
        return texts[1 : texts.index("leads") - 1]  # the stage first, the bar's label last

    day = ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    assert ticks(0.0, 0.0) == day
    assert ticks(0.0, 0.0002) == day
    assert ticks(0.04, 0.04) == day
    assert ticks(3.0, 3.0) == ["0.0", "0.5", "1.0", "1.5", "2.0", "2.5", "3.0"]


def test_a_long_rep_name_is_cut_in_the_chart_and_whole_in_its_words() -> None:
    """A rep named by a 300-letter word collapsed the SLA chart's drawing (matplotlib: "axes
    sizes collapsed to zero"): the chart writes it cut to 24 characters, two names cut alike
    stay two bars, and the chart's words keep every name whole."""
    long = "W" * 300
    reps = [(long, [1, 0, 0, 0, 0]), (long + "X", [0, 1, 0, 0, 0]), ("Sam", [0, 0, 1, 0, 0])]
    texts = _texts(sla_svg(reps))
    cut = "W" * 23 + "…"
    assert [cut, f"{cut} (2)", "Sam"] == [t for t in texts if t.startswith(("W", "Sam"))]
    assert long + "X: met 0, met late 1" in sla_text(reps)
