"""A whole funnel report: every metric family for one period and grouping, in one transaction
(so the families agree with each other), as a plain object the renderers and the dashboard read.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from leadflow.engine.business_hours import calendar_named
from leadflow.funnel.attribution import Attribution, attribution
from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.pipeline import PipelineLine, open_value_by_stage, pipeline
from leadflow.funnel.sla import SlaLine, sla_compliance
from leadflow.funnel.sql import settings_for_report
from leadflow.funnel.stages import (
    Conversion,
    conversions,
    conversions_and_requalified,
    entries_by_stage,
)
from leadflow.funnel.time_in_stage import StageTime, stage_times
from leadflow.settings import Settings

RECYCLED = "recycled"
DEAL_OUTCOMES = ("won", "lost", "recycled")
"""A deal's last stage in the history: where its stays end for good."""


@dataclass(frozen=True)
class Report:
    period: Period
    generated_at: datetime
    stages: tuple[str, ...]
    entries: dict[tuple[str, str], int]
    conversions: list[Conversion]
    requalified: list[Conversion]
    lead_times: list[StageTime]
    deal_times: list[StageTime]
    pipeline: list[PipelineLine]
    pipeline_by_product: list[PipelineLine]
    open_by_stage: dict[str, tuple[int, float]]
    sla: list[SlaLine]
    attribution: list[Attribution]
    weekly_conversions: list[Conversion] = field(default_factory=list)


def build_report(engine: Engine, settings: Settings, period: Period, now: datetime) -> Report:
    """Every metric of docs/report.md over ``period``."""
    stages = settings.stages
    order = stages.progression
    pairs = list(itertools.pairwise(order))
    weekly = Period(period.start, period.end, Grouping.week)
    by_product = Period(period.start, period.end, Grouping.product)
    with engine.connect() as connection, connection.begin():
        settings_for_report(connection)
        entries = entries_by_stage(connection, period)
        found, again = conversions_and_requalified(
            connection, period, pairs, (RECYCLED, stages.mql), entries
        )
        return Report(
            period=period,
            generated_at=now,
            stages=stages.all(),
            entries=entries,
            conversions=found,
            requalified=again,
            lead_times=stage_times(connection, period, "lead", (order[-1], "disqualified")),
            deal_times=stage_times(connection, period, "deal", DEAL_OUTCOMES),
            pipeline=pipeline(connection, period),
            pipeline_by_product=pipeline(connection, by_product),
            open_by_stage=open_value_by_stage(connection, period),
            sla=sla_compliance(connection, period, lambda name: calendar_named(settings, name)),
            attribution=attribution(connection, period, stages.mql),
            weekly_conversions=conversions(connection, weekly, pairs, cohorts=False),
        )
