"""The report's charts when a period has little to draw."""

from __future__ import annotations

from leadflow.funnel.charts import NOTHING, sla_svg, sla_text


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
