"""A report as sections of flat rows (column -> value): what the table, CSV, JSON and HTML
renderings print, so they always show the same figures. Rates are fractions (0.25), days and
hours are decimal numbers, unrounded (the renderings round for people, never the JSON)."""

from __future__ import annotations

from typing import Any

from leadflow.funnel.report import DEAL_OUTCOMES, Report
from leadflow.funnel.sla import ENDINGS

Row = dict[str, Any]


def sections(report: Report) -> dict[str, list[Row]]:
    """Section name -> rows, in the order the report shows them."""
    return {
        "stage_entries": _entries(report),
        "deal_stage_entries": _deal_entries(report),
        "conversion": _conversions(report.conversions),
        "requalified": _conversions(report.requalified),
        "time_in_stage": _times(report),
        "pipeline": _pipeline(report.pipeline),
        "pipeline_by_product": _pipeline(report.pipeline_by_product),
        "open_value_by_stage": [
            {"stage": stage, "open_deals": count, "open_value": value}
            for stage, (count, value) in report.open_by_stage.items()
        ],
        "sla": _sla(report),
        "attribution": [
            {
                "model": a.model,
                "conversion": a.kind,
                "group": a.group,
                "conversions": a.conversions,
                "amount": a.amount,
            }
            for a in report.attribution
        ],
        "weekly_conversion": _conversions(report.weekly_conversions),
    }


def _entries(report: Report) -> list[Row]:
    order = {stage: index for index, stage in enumerate(report.stages)}
    keys = sorted(report.entries, key=lambda k: (k[0], order.get(k[1], len(order)), k[1]))
    return [{"group": g, "stage": s, "entered": report.entries[(g, s)]} for g, s in keys]


def deal_stage_order(stages: set[str]) -> list[str]:
    """Deal stages as a pipeline reads: the open ones by name, then the outcomes (won, lost,
    recycled): deal stages are the CRM's own names, with no configured order."""
    outcomes = [stage for stage in DEAL_OUTCOMES if stage in stages]
    return sorted(stages - set(outcomes)) + outcomes


def _deal_entries(report: Report) -> list[Row]:
    order = {s: n for n, s in enumerate(deal_stage_order({s for _, s in report.deal_entries}))}
    keys = sorted(report.deal_entries, key=lambda k: (k[0], order[k[1]]))
    return [{"group": g, "stage": s, "entered": report.deal_entries[(g, s)]} for g, s in keys]


def _conversions(found: list[Any]) -> list[Row]:
    return [
        {
            "kind": c.kind,
            "group": c.group,
            "from_stage": c.from_stage,
            "to_stage": c.to_stage,
            "base": c.base,
            "converted": c.converted,
            "rate": c.rate,
        }
        for c in found
    ]


def _times(report: Report) -> list[Row]:
    return [
        {
            "subject": t.subject,
            "group": t.group,
            "stage": t.stage,
            "left": t.left,
            "median_days": t.median_days,
            "p90_days": t.p90_days,
            "open": t.open,
            "open_median_age_days": t.open_median_age_days,
            "stalled": t.stalled,
        }
        for t in [*report.lead_times, *report.deal_times]
    ]


def _pipeline(lines: list[Any]) -> list[Row]:
    return [
        {
            "group": p.group,
            "won": p.won,
            "lost": p.lost,
            "win_rate": p.win_rate,
            "won_amount": p.won_amount,
            "average_won_amount": p.average_won_amount,
            "average_won_cycle_days": p.average_won_cycle_days,
            "open_opportunities": p.open_opportunities,
            "open_value": p.open_value,
            "velocity_per_day": p.velocity_per_day,
        }
        for p in lines
    ]


def _sla(report: Report) -> list[Row]:
    rows = []
    for line in report.sla:
        row: Row = {"by": line.by, "group": line.group, "started": line.started}
        row.update({ending: line.ended[ending] for ending in ENDINGS})
        row["running"] = line.running
        row["on_time_rate"] = line.rate("met")
        row["median_business_hours_to_touch"] = line.median_business_hours_to_touch
        rows.append(row)
    return rows
