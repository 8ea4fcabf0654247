"""A rule whose evaluation the database cut off stays due, and its recorded error is one line.

Found by freezing the PostgreSQL backend of a leader's evaluation: the run failed after 65 s,
the database answered again before the run was recorded, and ``rule_runs`` took the failed run
as the rule's last start. The new leader's catch-up (``rule_jobs_caught_up``) then left the
rule out, and its unmatched leads waited a whole period (a day for a daily rule); ``leadflow
status`` showed the failed statement with its parameters (the leads' data), some 60 lines.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import Engine, select, text

from leadflow.cli.status_command import render_rules, rules_view
from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.store.database import create_store_engine
from leadflow.store.status import collect_status
from leadflow.store.tables import LEADS, RULE_RUNS
from tests.test_funnel_scenario import REPO, T0, seed

pytestmark = pytest.mark.postgres


@pytest.fixture
def store_url(postgres_url: str) -> str:
    """PostgreSQL only: a table lock and a one-second statement timeout make the real failure."""
    engine = create_store_engine(postgres_url)
    with engine.begin() as connection:
        names = ", ".join(
            f'"{name}"'
            for (name,) in connection.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
            if name != "alembic_version"
        )
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return postgres_url


def _runtime(url: str, make_settings: Any, clock: SettableClock) -> Runtime:
    settings = make_settings(
        **{
            "paths.rules": str(REPO / "tests" / "fixtures" / "funnel_rules"),
            "paths.templates": str(REPO / "templates"),
            "calendar.timezone": "UTC",
            "attributes.leads": {"region": "string"},
        }
    )
    engine = create_store_engine(url, statement_timeout=1.0)
    return Runtime.build(engine, settings, clock)


def _stages(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        return dict(connection.execute(select(LEADS.c.external_id, LEADS.c.stage)).all())


def test_a_run_the_database_cut_off_is_due_again(store_url: str, make_settings: Any) -> None:
    clock = SettableClock(T0)
    runtime = _runtime(store_url, make_settings, clock)
    seed(runtime.engine)
    rule_set = runtime.load_rules()
    before = _stages(runtime.engine)
    # Another session holds the leads table (a long migration, a hung backend): the evaluation's
    # statements wait for it until the statement timeout cancels them.
    blocker = create_store_engine(store_url)
    holding, release = threading.Event(), threading.Event()

    def hold_the_leads() -> None:
        with blocker.begin() as connection:
            connection.execute(text("SET LOCAL statement_timeout = 0"))
            connection.execute(text("LOCK TABLE leads IN ACCESS EXCLUSIVE MODE"))
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=hold_the_leads)
    thread.start()
    try:
        assert holding.wait(10)
        failed = run_due_rules(runtime, rule_set, T0, only=["mql-assignment"])
    finally:
        release.set()
        thread.join()
        blocker.dispose()
    [outcome] = failed
    assert outcome.error == (
        "OperationalError: (psycopg.errors.QueryCanceled) "
        "canceling statement due to statement timeout"
    )
    assert _stages(runtime.engine) == before  # nothing half applied
    with runtime.engine.connect() as connection:
        run = connection.execute(select(RULE_RUNS)).one()
    assert (run.rule_id, run.last_status, run.last_started_at, run.last_finished_at) == (
        "mql-assignment",
        "failed",
        None,
        T0,
    )
    assert run.last_error == outcome.error

    status = collect_status(runtime.engine)
    console = Console(width=300, record=True)
    clock.set(T0 + timedelta(minutes=1))
    render_rules(rules_view(runtime, status), console)
    [line] = [line for line in console.export_text().splitlines() if "mql-assignment" in line]
    assert line.split() == [
        "mql-assignment",
        "every",
        "5m",
        "2026-03-02",
        "09:00",  # the failed run
        "due",  # not at 09:05
        "now",
        "failed",
        "0",
        rule_set.version,
        "OperationalError:",
        "(psycopg.errors.QueryCanceled)",
        "canceling",
        "statement",
        "due",
        "to",
        "statement",
        "timeout",
    ]

    # One minute later the database answers: the rule is due and finishes its work.
    [outcome] = run_due_rules(runtime, rule_set, T0 + timedelta(minutes=1), only=["mql-assignment"])
    assert (outcome.error, outcome.matched) == (None, 3)
    after = _stages(runtime.engine)
    assert {lead for lead, stage in after.items() if stage != before[lead]} == {"L1", "L3", "L4"}
    with runtime.engine.connect() as connection:
        run = connection.execute(select(RULE_RUNS)).one()
    assert (run.last_status, run.last_started_at, run.last_error) == (
        "ok",
        T0 + timedelta(minutes=1),
        None,
    )
    runtime.engine.dispose()
