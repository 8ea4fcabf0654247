"""The JSON log is one JSON event per line, whoever logged: structlog events and libraries."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from leadflow.logs import configure_logging


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Logging configured as JSON into a buffer; the root logger's handlers restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("apscheduler", "alembic", "watchfiles"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def events(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestOneEventPerLine:
    """Standard-library records become JSON events; chatty INFO from APScheduler is dropped."""

    def test_library_warning_is_a_json_event(self, json_log: io.StringIO) -> None:
        structlog.get_logger().info("rule_evaluated", rule_id="mql")
        logging.getLogger("apscheduler.scheduler").info("Added job 'mql' to job store")
        logging.getLogger("apscheduler.executors.default").warning(
            "Run time of job 'mql' was missed by 0:00:03"
        )
        logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
        logging.getLogger("uvicorn.error").info("Started server process [42]")
        found = [
            {key: value for key, value in event.items() if key != "timestamp"}
            for event in events(json_log)
        ]
        assert found == [
            {"rule_id": "mql", "event": "rule_evaluated", "level": "info"},
            {
                "logger": "apscheduler.executors.default",
                "event": "Run time of job 'mql' was missed by 0:00:03",
                "level": "warning",
            },
            {
                "logger": "uvicorn.error",
                "event": "Started server process [42]",
                "level": "info",
            },
        ]

    def test_library_error_keeps_its_traceback_inside_the_line(self, json_log: io.StringIO) -> None:
        try:
            raise ValueError("boom")  # noqa: TRY301 (a real exception for the record)
        except ValueError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        [event] = events(json_log)
        assert event["event"] == "Exception in ASGI application"
        assert event["level"] == "error"
        assert "ValueError: boom" in str(event["exception"])
