"""A whole funnel report: every metric family for one period and grouping, read at one instant
(so the families agree with each other) by two connections at once, as a plain object the
renderers and the dashboard read.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from leadflow.engine.business_hours import calendar_named
from leadflow.funnel.amounts import refuse_absurd_amounts
from leadflow.funnel.attribution import Attribution, attribution
from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.pipeline import PipelineLine, open_value_by_stage, pipeline
from leadflow.funnel.sla import SlaLine, sla_compliance
from leadflow.funnel.snapshot import two_readers
from leadflow.funnel.stages import (
    Conversion,
    conversions,
    conversions_and_requalified,
    deal_entries_by_stage,
    entries_and_weekly,
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
    open_by_stage: dict[str, tuple[int, float | None]]
    sla: list[SlaLine]
    attribution: list[Attribution]
    weekly_conversions: list[Conversion] = field(default_factory=list)
    deal_entries: dict[tuple[str, str], int] = field(default_factory=dict)


def build_report(
    engine: Engine,
    settings: Settings,
    period: Period,
    now: datetime,
    *,
    generated_at: datetime | None = None,
) -> Report:
    """Every metric of docs/report.md over ``period``, read at one instant (see
    :mod:`leadflow.funnel.snapshot`): the times in stage (and on SQLite the SLA) on a second
    connection at the same time as the other families. What is still open is measured at
    ``now`` when the period ends later (:attr:`Period.as_of`), unless ``period`` says its own
    now (a simulation's clock). ``generated_at``: the wall-clock time the report is made (a
    ``--now`` in 2017 is no time the report was made at); ``now`` when not given."""
    generated = now if generated_at is None else generated_at
    if period.now is None:
        period = replace(period, now=now)
    with two_readers(engine) as (connection, other), ThreadPoolExecutor(1) as pool:
        refuse_absurd_amounts(connection)
        # Each connection's share about the same at a million leads: the times in stage
        # alone take about as long as the entries, conversions, attribution and SLA
        # together (on SQLite, once the period's entries came from its weeks and the readers
        # mapped the file, 3.5 s of CPU against 3.3 s), so the SLA joins the first
        # connection on either store and the deals' families (pipeline, open value, deal
        # entries: 0.3 s) go with the times in stage.
        if other is None:
            found = _first_families(connection, settings, period)
            rest = _second_families(connection, period, settings.stages.progression)
            return Report(**found, **rest, generated_at=generated)
        timed = pool.submit(_second_families, other, period, settings.stages.progression)
        found = _first_families(connection, settings, period)
        return Report(**found, **timed.result(), generated_at=generated)


def _first_families(connection: Connection, settings: Settings, period: Period) -> dict[str, Any]:
    """The families of leads: entries, conversions, attribution, SLA."""
    stages = settings.stages
    pairs = list(itertools.pairwise(stages.progression))
    weekly = replace(period, by=Grouping.week)
    entries, weekly_entries = entries_and_weekly(connection, period)
    found, again = conversions_and_requalified(
        connection, period, pairs, (RECYCLED, stages.mql), entries
    )
    return {
        "period": period,
        "stages": stages.all(),
        "entries": entries,
        "conversions": found,
        "requalified": again,
        "attribution": attribution(connection, period, stages.mql),
        "weekly_conversions": conversions(
            connection, weekly, pairs, counts=weekly_entries, cohorts=False
        ),
        "sla": sla_compliance(connection, period, lambda name: calendar_named(settings, name)),
    }


def _second_families(
    connection: Connection, period: Period, order: tuple[str, ...]
) -> dict[str, Any]:
    """The times in stage of leads and deals (``order``: the lead stages' progression), and
    the families of deals: entries, pipeline, open value."""
    grouped = pipeline(connection, period)
    by_product = replace(period, by=Grouping.product)
    return {
        "lead_times": stage_times(connection, period, "lead", (order[-1], "disqualified")),
        "deal_times": stage_times(connection, period, "deal", DEAL_OUTCOMES),
        "deal_entries": deal_entries_by_stage(connection, period),
        "pipeline": grouped,
        "pipeline_by_product": (
            grouped if period.by is Grouping.product else pipeline(connection, by_product)
        ),
        "open_by_stage": open_value_by_stage(connection, period),
    }
