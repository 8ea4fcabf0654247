"""Nurture steps whose email was not queued are counted as skipped, not sent: in the enrollment's
completion reason, ``run --once``'s text and JSON, and ``simulate``'s ``nurture_emails``."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from leadflow.cli import main
from leadflow.clock import SettableClock
from leadflow.engine.nurture import run_nurture_steps
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.store.tables import AUDIT, LEADS, NURTURE, OUTBOX
from tests.test_funnel_scenario import REPO, T0, seed
from tests.test_funnel_scenario import runtime as funnel_runtime
from tests.test_run_command import config
from tests.test_simulate import config as simulate_config

runtime = funnel_runtime
"""The funnel's runtime: its fixture rules on the test's store, its clock at :data:`T0`."""


def without_address(engine: Engine) -> None:
    """The seeded funnel, its nurtured lead L2 without an email address (a CRM export's)."""
    seed(engine)
    with engine.begin() as connection:
        connection.execute(update(LEADS).where(LEADS.c.external_id == "L2").values(email=None))


def completions(engine: Engine) -> list[tuple[str, str | None]]:
    with engine.connect() as connection:
        rows = connection.execute(select(NURTURE.c.status, NURTURE.c.exit_reason))
        return [(status, reason) for status, reason in rows]


def marketing(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(OUTBOX.c.recipient).where(OUTBOX.c.category == "marketing")
        )
        return list(rows.scalars())


def test_a_stream_gone_through_unmailed_is_done_not_sent(runtime: Runtime) -> None:
    """Both steps of L2's stream are skipped: it completes with ``all steps done (2 skipped:
    no email address)``, each step's audit row says ``skipped``, and no marketing email waits."""
    without_address(runtime.engine)
    rule_set = runtime.load_rules()
    run_due_rules(runtime, rule_set, T0)
    run_nurture_steps(runtime, rule_set, T0)
    run_nurture_steps(runtime, rule_set, T0 + timedelta(days=5))
    assert completions(runtime.engine) == [
        ("completed", "all steps done (2 skipped: no email address)")
    ]
    with runtime.engine.connect() as connection:
        rows = connection.execute(
            select(AUDIT.c.action, AUDIT.c.params)
            .where(AUDIT.c.action.in_(["nurture_step", "nurture_completed"]))
            .order_by(AUDIT.c.id)
        )
        audited = [(action, params.get("step"), params.get("skipped")) for action, params in rows]
    assert audited == [
        ("nurture_step", 1, "no email address"),
        ("nurture_step", 2, "no email address"),
        ("nurture_completed", None, None),
    ]
    assert marketing(runtime.engine) == []


def test_a_stream_emailed_throughout_is_sent(runtime: Runtime) -> None:
    """With an address, both emails are queued and the stream completes ``all steps sent``."""
    seed(runtime.engine)
    rule_set = runtime.load_rules()
    run_due_rules(runtime, rule_set, T0)
    run_nurture_steps(runtime, rule_set, T0)
    run_nurture_steps(runtime, rule_set, T0 + timedelta(days=5))
    assert completions(runtime.engine) == [("completed", "all steps sent")]
    assert marketing(runtime.engine) == ["bob@beta.test", "bob@beta.test"]


def test_run_once_counts_queued_and_skipped_steps(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run --once`` says the step was skipped and why, in its text and its JSON."""
    without_address(engine)
    path = config(tmp_path, store_url)
    assert main(["-c", path, "run", "--once", "--now", "2026-03-02T09:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        "SLA timers handled: 0; nurture steps: 1 (0 emails queued, 1 skipped: no email address)"
    )
    args = ["-c", path, "run", "--once", "--format", "json", "--all"]
    assert main([*args, "--now", "2026-03-07T09:00:00Z"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["funnel"], document["nurture_steps"]) == (
        {"sla": 2, "nurture": 1},
        {"steps": 1, "emails_queued": 0, "skipped": {"no email address": 1}},
    )


def test_simulate_counts_only_queued_nurture_emails(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``nurture_emails`` are the steps whose email was queued; ``nurture_skipped`` the others."""
    without_address(engine)
    path = str(simulate_config(tmp_path, store_url))
    range_ = ["--from", "2026-03-02T09:00:00Z", "--to", "2026-03-08T00:00:00Z", "--step", "1d"]
    assert main(["-c", path, "simulate", *range_, "--format", "json"]) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert (totals["nurture_emails"], totals["nurture_skipped"]) == (0, 2)


def test_a_step_the_frequency_cap_holds_back_is_skipped(engine: Engine, make_settings: Any) -> None:
    """A cap of one marketing email a week: step 2, five days after step 1, is suppressed; the
    stream completes ``all steps done (1 skipped: frequency cap)``."""
    settings = make_settings(
        **{
            "paths.rules": str(REPO / "tests" / "fixtures" / "funnel_rules"),
            "paths.templates": str(REPO / "templates"),
            "calendar.timezone": "UTC",
            "attributes.leads": {"region": "string"},
            "mail.frequency_cap": {"messages": 1, "window": "7d"},
        }
    )
    capped = Runtime.build(engine, settings, SettableClock(T0))
    seed(engine)
    rule_set = capped.load_rules()
    run_due_rules(capped, rule_set, T0)
    run_nurture_steps(capped, rule_set, T0)
    run_nurture_steps(capped, rule_set, T0 + timedelta(days=5))
    assert completions(engine) == [("completed", "all steps done (1 skipped: frequency cap)")]
    with engine.connect() as connection:
        rows = connection.execute(
            select(AUDIT.c.params).where(AUDIT.c.action == "nurture_step").order_by(AUDIT.c.id)
        )
        steps = [(p["step"], p["email"], p.get("skipped")) for p in rows.scalars()]
    assert steps == [(1, "pending", None), (2, "suppressed", "frequency cap")]
