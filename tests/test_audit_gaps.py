"""Every audit row of nurture carries the rule-set version, and the audit table shows a recycled
deal's average sales cycle whole (two places) while the JSON keeps the exact value used."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, select, update

from leadflow.engine.nurture import run_nurture_steps
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.store.tables import AUDIT, LEADS
from tests.test_funnel_scenario import T0, seed
from tests.test_funnel_scenario import runtime as funnel_runtime

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
