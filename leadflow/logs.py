"""structlog, configured once: JSON when not on a terminal, readable on one.

Libraries that log through the standard library (APScheduler, uvicorn, alembic) are routed
into the same structlog pipeline: on a JSON log every line is one JSON event, whoever wrote it.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def _current_stderr(*_args: object) -> structlog.PrintLogger:
    # sys.stderr is looked up at each log call, not at configuration: a stream swapped since
    # (pytest's capture, a daemonised process) must not leave loggers writing to a closed file.
    return structlog.PrintLogger(sys.stderr)


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_CHATTY = {
    "apscheduler": logging.WARNING,
    "alembic": logging.WARNING,
    "watchfiles": logging.WARNING,
}
"""Libraries whose INFO lines (every job added or run, every migration context, every file
change batch: the reload events say what matters) say nothing an
operator needs."""


class _StandardLibraryRecords(logging.Handler):
    """Hands a standard-library log record to structlog, so it is rendered like our events:
    before, APScheduler wrote plain text into the JSON log, once in the middle of a JSON line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            extra: dict[str, object] = {"logger": record.name}
            if record.exc_info and record.exc_info[0] is not None:
                extra["exc_info"] = record.exc_info
            structlog.get_logger().log(record.levelno, record.getMessage(), **extra)
        except Exception:  # logging must never raise into the code that logged
            self.handleError(record)


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog to ``stream`` (stderr by default) as JSON or as coloured lines."""
    out = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info
            if as_json
            else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.ERROR)),
        logger_factory=structlog.PrintLoggerFactory(stream) if stream else _current_stderr,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    release_standard_library()
    root.addHandler(_StandardLibraryRecords())
    root.setLevel(_LEVELS.get(level, logging.ERROR))
    for name, floor in _CHATTY.items():
        logging.getLogger(name).setLevel(max(floor, root.level))


def release_standard_library() -> None:
    """Stop routing standard-library records into structlog (a test's clean slate)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StandardLibraryRecords):
            root.removeHandler(handler)
