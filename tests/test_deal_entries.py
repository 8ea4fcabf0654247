"""Deals entering each stage: a CRM export of deals alone (no lead history, like the Maven
data) shows its flow in the report, counted from the deals' history as the import wrote it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from import_support import FIXTURES, write
from sqlalchemy import Engine

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.funnel.charts import funnel_data, funnel_text
from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.report import build_report
from leadflow.funnel.sections import sections
from leadflow.ingest import import_file

# Engaged and closed dates (day-first, Europe/Berlin midnight, as the Maven-like mapping reads
# them): March has two engagements, April one; a deal engaged in February is won in March.
PIPELINE = """opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value
D1,Moses Frase,GTXPro,Acme Corporation,Won,10-02-2017,06-03-2017,100
D2,Anna Snelling,GTXPro,Betatech,Lost,07-03-2017,14-03-2017,0
D3,Anna Snelling,MG Advanced,Betatech,Engaging,15-03-2017,,
D4,Moses Frase,MG Advanced,Acme Corporation,Won,03-04-2017,10-04-2017,500
D5,Anna Snelling,GTX Basic,,Prospecting,,,
"""


def _imported(engine: Engine, store_url: str, tmp_path: Path, clock: SettableClock) -> Period:
    export = FIXTURES / "maven_like"
    settings = load_settings(
        export / "config.yaml", env={}, overrides={"database.url": store_url}
    ).settings
    pipeline = write(tmp_path, "pipeline.csv", PIPELINE)
    for kind, path in [
        ("reps", export / "sales_teams.csv"),
        ("leads", export / "accounts.csv"),
        ("deals", pipeline),
    ]:
        assert import_file(engine, settings, kind, path, clock=clock).problems == []  # type: ignore[arg-type]
    return Period(datetime(2017, 3, 1, tzinfo=UTC), datetime(2017, 5, 1, tzinfo=UTC))


def _entries(engine: Engine, store_url: str, period: Period) -> list[tuple[str, str, int]]:
    settings = load_settings(None, env={}, overrides={"database.url": store_url}).settings
    report = build_report(engine, settings, period, period.end)
    return [(r["group"], r["stage"], r["entered"]) for r in sections(report)["deal_stage_entries"]]


def test_deal_entries_by_stage_product_and_week(
    engine: Engine, store_url: str, tmp_path: Path, clock: SettableClock
) -> None:
    """March-April 2017: D2, D3, D4 engaged (D1 in February, D5 never: no entry in the
    period); D1 and D4 won, D2 lost; open stages first, then the outcomes."""
    period = _imported(engine, store_url, tmp_path, clock)
    assert _entries(engine, store_url, period) == [
        ("all", "Engaging", 3),
        ("all", "won", 2),
        ("all", "lost", 1),
    ]
    by_product = Period(period.start, period.end, Grouping.product)
    assert _entries(engine, store_url, by_product) == [
        ("GTX Pro", "Engaging", 1),
        ("GTX Pro", "won", 1),
        ("GTX Pro", "lost", 1),
        ("MG Advanced", "Engaging", 2),
        ("MG Advanced", "won", 1),
    ]
    # Europe/Berlin midnight is the day before in UTC (23:00, 22:00 in summer time): 07-03 is
    # Monday 6 March, 06-03 (D1 won) Sunday 5 March, in the week of Monday 27 February, and
    # 03-04 (D4 engaged) Sunday 2 April, in the week of 27 March.
    by_week = Period(period.start, period.end, Grouping.week)
    assert _entries(engine, store_url, by_week) == [
        ("2017-02-27", "won", 1),
        ("2017-03-06", "Engaging", 1),
        ("2017-03-13", "Engaging", 1),
        ("2017-03-13", "lost", 1),
        ("2017-03-27", "Engaging", 1),
        ("2017-04-03", "won", 1),
    ]


def test_the_funnel_chart_of_deals_alone_draws_the_deals(
    engine: Engine, store_url: str, tmp_path: Path, clock: SettableClock
) -> None:
    """No lead entered a stage in the period: the funnel chart draws the deals' entries (it
    said "nothing in the period" for a deals-only export)."""
    period = _imported(engine, store_url, tmp_path, clock)
    settings = load_settings(None, env={}, overrides={"database.url": store_url}).settings
    report = build_report(engine, settings, period, period.end)
    assert report.entries == {}
    data = funnel_data(report, sections(report))
    assert data == {"subject": "deal", "stages": [["Engaging", 3], ["won", 2], ["lost", 1]]}
    assert funnel_text(data) == "Deal entries in the period: Engaging 3, won 2, lost 1"
