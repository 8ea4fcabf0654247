"""An expected outage is one log line naming the error; a bug keeps its traceback.

The database failures here are real: an engine pointed at a port nobody listens on.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import structlog
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from structlog.testing import capture_logs

from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.errors import DatabaseUnavailableError
from leadflow.logs import error_text, is_outage, log_failure
from leadflow.outbox.delivery import drain
from leadflow.rule_language.model import RuleSet
from leadflow.service.daemon_ticks import Evaluator
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.store.database import create_store_engine
from tests import test_daemon
from tests.mail_support import free_port


def refused_error() -> OperationalError:
    """What SQLAlchemy raises when the database refuses the connection."""
    dead = create_store_engine(f"postgresql+psycopg://leadflow@127.0.0.1:{free_port()}/x")
    try:
        with dead.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        return exc
    finally:
        dead.dispose()
    raise AssertionError("a closed port accepted a connection")


def test_outages_and_bugs_are_told_apart() -> None:
    assert is_outage(refused_error())
    assert is_outage(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert is_outage(DatabaseUnavailableError("cannot claim"))
    assert is_outage(TimeoutError())
    assert not is_outage(ProgrammingError("SELECT x", {}, Exception("no such column")))
    assert not is_outage(KeyError("owner"))
    assert error_text(ValueError("first\nsecond")) == "ValueError: first"
    assert error_text(TimeoutError()) == "TimeoutError"


def test_an_outage_is_one_line_a_bug_a_traceback() -> None:
    outage = refused_error()
    with capture_logs() as logs:
        log_failure(_logger(), "rule_failed", outage, rule_id="r")
        try:
            {}["owner"]
        except KeyError as bug:
            log_failure(_logger(), "rule_failed", bug, rule_id="r")
    first, second = logs
    assert "exc_info" not in first
    assert first["error"].startswith("OperationalError: (psycopg.OperationalError) connection")
    assert "\n" not in first["error"]
    assert isinstance(second["exc_info"], KeyError)
    assert second["error"] == "KeyError: 'owner'"


@pytest.mark.postgres
def test_evaluation_against_an_unreachable_database_logs_one_line_each(
    tmp_path: Path, make_settings: Any, engine: Engine
) -> None:
    rule_set = test_daemon.TestStartupCatchUp()._rule_set(tmp_path, make_settings, engine)
    dead = create_store_engine(
        f"postgresql+psycopg://leadflow@127.0.0.1:{free_port()}/x", connect_timeout=1
    )
    # Built on the live store (it reads the stored unsubscribe key), then pointed at the dead one.
    runtime = replace(
        Runtime.build(engine, make_settings(), SettableClock(test_daemon.NOW)), engine=dead
    )
    holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=runtime.clock)
    holder.record_success(rule_set)
    try:
        with capture_logs() as logs:
            outcome = asyncio.run(Evaluator(runtime, holder, steps=[]).evaluate("warm-up"))
    finally:
        dead.dispose()
    assert outcome is not None
    assert outcome.error is not None
    failures = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in failures] == ["rule_failed", "rule_run_not_recorded"]
    for event in failures:
        assert "exc_info" not in event
        assert event["error"].startswith("OperationalError: ")


def _logger() -> Any:
    return structlog.get_logger("test")


def test_sender_polling_a_dead_database_logs_once_not_per_poll(make_settings: Any) -> None:
    """Thirty-one failed claims (a poll every 10 ms against a closed port) are two lines, not
    thirty-one: the first, and the thirty-first with the count."""
    dead = create_store_engine(
        f"postgresql+psycopg://leadflow@127.0.0.1:{free_port()}/x", connect_timeout=1
    )
    base = make_settings()
    quick = base.mail.model_copy(update={"poll_interval": timedelta(milliseconds=10)})
    settings = base.model_copy(update={"mail": quick})
    stop = asyncio.Event()

    async def stop_after_the_second_line() -> None:
        async with asyncio.timeout(30):
            # Polling the captured log: nothing in the sender signals a line it wrote.
            while len([e for e in logs if e["event"] == "outbox_claim_failed"]) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        stop.set()

    async def scenario() -> None:
        await asyncio.gather(
            drain(dead, settings, SettableClock(test_daemon.NOW), [], once=False, stop=stop),
            stop_after_the_second_line(),
        )

    try:
        with capture_logs() as logs:
            asyncio.run(scenario())
    finally:
        dead.dispose()
    failed = [e for e in logs if e["event"] == "outbox_claim_failed"]
    assert [e["failures"] for e in failed] == [1, 31]
    assert all(e["error"].startswith("OperationalError: ") for e in failed)
