"""Every audit row of nurture carries the rule-set version, and the audit table shows a recycled
deal's average sales cycle whole (two places) while the JSON keeps the exact value used."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update

from leadflow.cli import main
from leadflow.engine.nurture import run_nurture_steps
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.store.tables import AUDIT, DEALS, LEADS
from tests.test_funnel_scenario import T0, open_gtx_deal, seed, won_gtx_deals
from tests.test_funnel_scenario import runtime as funnel_runtime
from tests.test_run_command import config

runtime = funnel_runtime
"""The funnel's runtime: its fixture rules on the test's store, its clock at :data:`T0`."""


def nurture_versions(engine: Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(AUDIT.c.action, AUDIT.c.rule_version)
            .where(AUDIT.c.source == "nurture")
            .order_by(AUDIT.c.id)
        )
        return [(action, version) for action, version in rows]


def test_a_completed_stream_records_the_rule_version(runtime: Runtime) -> None:
    """``nurture_completed`` names the rule-set version, as the steps before it do."""
    seed(runtime.engine)
    rule_set = runtime.load_rules()
    run_due_rules(runtime, rule_set, T0)
    run_nurture_steps(runtime, rule_set, T0)
    run_nurture_steps(runtime, rule_set, T0 + timedelta(days=5))
    version = rule_set.version
    assert nurture_versions(runtime.engine) == [
        ("nurture_step", version),
        ("nurture_step", version),
        ("nurture_completed", version),
    ]


def test_an_exit_records_the_rule_version(runtime: Runtime) -> None:
    """A lead that became an MQL leaves its stream: ``nurture_exited`` names the version."""
    seed(runtime.engine)
    rule_set = runtime.load_rules()
    run_due_rules(runtime, rule_set, T0)
    run_nurture_steps(runtime, rule_set, T0)
    with runtime.engine.begin() as connection:
        connection.execute(update(LEADS).where(LEADS.c.external_id == "L2").values(stage="mql"))
    run_nurture_steps(runtime, rule_set, T0 + timedelta(days=5))
    assert nurture_versions(runtime.engine)[-1] == ("nurture_exited", rule_set.version)


def test_the_audit_table_shows_the_average_cycle_to_two_places(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cycles of 10 days and 10 days 1 hour: the table says ``average_cycle_days=10.02`` (it
    cut ``10.020833333333…``); ``--format jsonl`` keeps 10 + 1/48, the value compared against."""
    seed(engine)
    deals = won_gtx_deals()
    for index, deal in enumerate(deals):
        if index % 2:
            deal["engaged_at"] -= timedelta(hours=1)
    deals.append(
        open_gtx_deal(external_id="D-idle", lead_id=1, last_activity_at=T0 - timedelta(days=21))
    )
    with engine.begin() as connection:
        connection.execute(insert(DEALS), deals)
    args = ["-c", config(tmp_path, store_url)]
    run = [*args, "run", "--once", "--rule", "recycle-idle-deals", "--all"]
    assert main([*run, "--now", "2026-03-02T09:00:00Z"]) == 0
    capsys.readouterr()
    assert main([*args, "audit", "--rule", "recycle-idle-deals"]) == 0
    table = capsys.readouterr().out
    recycled = " ".join(table.split())  # the cells wrap at the console's width
    assert "average_cycle_days=10.02," in recycled
    assert "idle_threshold_days=20.04" in recycled
    assert "10.0208" not in table
    assert main([*args, "audit", "--rule", "recycle-idle-deals", "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    evidence = next(line["evidence"] for line in lines if line["action"] == "deal_recycled")
    assert evidence["average_cycle_days"] == pytest.approx(10 + 1 / 48, abs=1e-9)
    assert evidence["average_cycle_days"] != round(10 + 1 / 48, 2)
