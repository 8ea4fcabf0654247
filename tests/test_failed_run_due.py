"""A rule whose evaluation the database cut off stays due, and its recorded error is one line.

Found by freezing the PostgreSQL backend of a leader's evaluation: the run failed after 65 s,
the database answered again before the run was recorded, and ``rule_runs`` took the failed run
as the rule's last start. The new leader's catch-up (``rule_jobs_caught_up``) then left the
rule out, and its unmatched leads waited a whole period (a day for a daily rule); ``leadflow
status`` showed the failed statement with its parameters (the leads' data), some 60 lines.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import Engine, select, text

from leadflow.cli.status_command import render_rules, rules_view
from leadflow.clock import SettableClock
from leadflow.engine.rule_runs import (
    UnfinishedRun,
    first_run_delay,
    last_started_times,
    next_run_at,
    record_gone_through,
    record_run,
    unfinished_run,
)
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.rule_language.schedule import Schedule
from leadflow.store.database import create_store_engine, transaction
from leadflow.store.status import collect_status
from leadflow.store.tables import LEADS, RULE_RUNS, SCORE_CHANGES
from tests.conftest import empty_every_table
from tests.test_funnel_scenario import REPO, T0, seed

pytestmark = pytest.mark.postgres


@pytest.fixture
def store_url(postgres_url: str) -> str:
    """PostgreSQL only: a table lock and a one-second statement timeout make the real failure."""
    engine = create_store_engine(postgres_url)
    empty_every_table(engine)
    engine.dispose()
    return postgres_url


@contextmanager
def _held_by_another_session(url: str, statement: str) -> Iterator[None]:
    """While the block runs, another session holds what ``statement`` locks (a hung backend,
    a long migration), without a timeout of its own."""
    blocker = create_store_engine(url)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with blocker.begin() as connection:
            connection.execute(text("SET LOCAL statement_timeout = 0"))
            connection.execute(text(statement))
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        yield
    finally:
        release.set()
        thread.join()
        blocker.dispose()


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
    with _held_by_another_session(store_url, "LOCK TABLE leads IN ACCESS EXCLUSIVE MODE"):
        [outcome] = run_due_rules(runtime, rule_set, T0, only=["mql-assignment"])
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


EVERY_TIME_RULE = """\
rules:
  - id: warm-leads
    description: Each run adds a point to every lead still in the lead stage.
    every: 5m
    reentry: every_time
    when:
      field: stage
      equals: lead
    actions:
      - adjust_score: 1
"""


def _score_changes(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(LEADS.c.external_id, SCORE_CHANGES.c.at)
            .join(LEADS, LEADS.c.id == SCORE_CHANGES.c.lead_id)
            .order_by(SCORE_CHANGES.c.id)
        )
        return [(lead, at.strftime("%H:%M")) for lead, at in rows]


def _fail_after_first_batch(runtime: Runtime, url: str, rule_set: Any, now: Any) -> Any:
    """Evaluate ``warm-leads`` while another session holds lead L3 (a hung backend): the first
    batch (L1, L2) commits, the second waits for L3 until the statement timeout cancels it."""
    with _held_by_another_session(url, "SELECT id FROM leads WHERE external_id = 'L3' FOR UPDATE"):
        [outcome] = run_due_rules(runtime, rule_set, now, only=["warm-leads"])
    return outcome


def test_a_retry_does_not_fire_again_on_leads_the_failed_run_fired(
    store_url: str, make_settings: Any, tmp_path: Path
) -> None:
    """An ``every_time`` rule that failed part-way is due again; its retry finishes the failed
    run (L3, L4) and does not fire again on L1 and L2, which the failed run's first batch fired:
    until the next scheduled time after the failed run, when every lead fires as usual."""
    rules = tmp_path / "every_time_rules"
    rules.mkdir()
    (rules / "warm.yaml").write_text(EVERY_TIME_RULE, encoding="utf-8")
    settings = make_settings(
        **{
            "paths.rules": str(rules),
            "calendar.timezone": "UTC",
            "attributes.leads": {"region": "string"},
            "scheduler.evaluation_batch": 2,
        }
    )
    runtime = Runtime.build(
        create_store_engine(store_url, statement_timeout=1.0), settings, SettableClock(T0)
    )
    seed(runtime.engine)
    rule_set = runtime.load_rules()

    failed = _fail_after_first_batch(runtime, store_url, rule_set, T0)
    assert failed.error == (
        "OperationalError: (psycopg.errors.QueryCanceled) "
        "canceling statement due to statement timeout"
    )
    assert _score_changes(runtime.engine) == [("L1", "09:00"), ("L2", "09:00")]

    [retry] = run_due_rules(runtime, rule_set, T0 + timedelta(minutes=1))
    assert (retry.error, retry.matched, retry.fired) == (None, 2, 2)
    assert _score_changes(runtime.engine)[2:] == [("L3", "09:01"), ("L4", "09:01")]

    # The retry finished the run: the rule is due at its next time after the retry, and then
    # fires on every lead again.
    assert run_due_rules(runtime, rule_set, T0 + timedelta(minutes=5)) == []
    [next_run] = run_due_rules(runtime, rule_set, T0 + timedelta(minutes=6))
    assert (next_run.error, next_run.fired) == (None, 4)
    assert _score_changes(runtime.engine)[4:] == [
        ("L1", "09:06"),
        ("L2", "09:06"),
        ("L3", "09:06"),
        ("L4", "09:06"),
    ]
    runtime.engine.dispose()


def test_only_a_successful_run_clears_the_mark_of_how_far_a_failed_one_got(
    store_url: str, make_settings: Any, tmp_path: Path
) -> None:
    """A run that failed before it could even read the mark (the database gone for a moment)
    is a fresh run with no batch committed: it cleared a live mark, and the retry after it
    fired again on the leads behind it. Only a successful run clears it now."""
    rules = tmp_path / "every_time_rules"
    rules.mkdir()
    (rules / "warm.yaml").write_text(EVERY_TIME_RULE, encoding="utf-8")
    settings = make_settings(**{"paths.rules": str(rules), "calendar.timezone": "UTC"})
    runtime = Runtime.build(create_store_engine(store_url), settings, SettableClock(T0))
    rule_set = runtime.load_rules()
    [rule] = rule_set.rules
    with transaction(runtime.engine) as session:
        record_gone_through(session, rule_set, rule, T0, 2)
    minute = T0 + timedelta(minutes=1)
    record_run(runtime.engine, rule_set, rule, minute, matched=0, error="OperationalError: gone")
    assert unfinished_run(runtime.engine, rule, minute) == UnfinishedRun(T0, 2)
    record_run(runtime.engine, rule_set, rule, minute, matched=2, error=None)
    assert unfinished_run(runtime.engine, rule, minute) is None
    runtime.engine.dispose()


def test_a_cron_rule_whose_run_failed_runs_once_at_the_daemon_start(
    store_url: str, make_settings: Any
) -> None:
    """A daily cron rule whose first run (``run --once`` at 09:00) failed is due: a daemon
    started at 13:00 runs it at once, outside its cron times; a success puts it back on them."""
    clock = SettableClock(T0)
    runtime = _runtime(store_url, make_settings, clock)
    rule_set = runtime.load_rules()
    assignment = rule_set.rule("mql-assignment")
    assert assignment is not None
    daily = dataclasses.replace(
        assignment,
        schedule=Schedule.crontab("0 9 * * *", "UTC"),
    )
    seen = T0 - timedelta(hours=23)  # first scheduled the day before, at 10:00
    record_run(runtime.engine, rule_set, daily, T0, matched=0, error="OperationalError: cut")
    start = T0 + timedelta(hours=4)
    assert first_run_delay(
        daily, last_started_times(runtime.engine).get(daily.id), start, seen
    ) == (timedelta(0))
    record_run(runtime.engine, rule_set, daily, start, matched=3, error=None)
    last = last_started_times(runtime.engine)[daily.id]
    assert next_run_at(daily, last, start + timedelta(minutes=1), seen) == T0 + timedelta(days=1)
    runtime.engine.dispose()
