"""structlog, configured once: JSON when not on a terminal, readable on one.

Libraries that log through the standard library (APScheduler, uvicorn, alembic) are routed
into the same structlog pipeline: on a JSON log every line is one JSON event, whoever wrote it.
"""

from __future__ import annotations

import logging
import sys
from functools import cache
from typing import Any, TextIO

import structlog

from leadflow.errors import DatabaseUnavailableError, UserInputError


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
        structlog.processors.JSONRenderer()
        if as_json
        # Tracebacks without local variables: they would print leads' data into the log, and
        # take seconds each to render.
        else structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False)
        )
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


@cache
def _outages() -> tuple[type[BaseException], ...]:
    """What an unreachable or silent database raises, through SQLAlchemy or psycopg directly.

    Imported on the first question, not with this module: every command configures logging,
    and ``leadflow check`` or ``--help`` must not load the database drivers to do so.
    """
    import psycopg
    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    return (
        OperationalError,
        InterfaceError,
        PoolTimeoutError,
        psycopg.OperationalError,
        psycopg.InterfaceError,
        DatabaseUnavailableError,
        TimeoutError,
        ConnectionError,
    )


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database could not be reached or did not answer in time.

    Such a failure is expected (a restart, a failover, a network cut) and the daemon retries;
    everything else is a bug. The one place that tells them apart, for every error boundary.
    """
    if isinstance(exc, _outages()):
        return True
    from sqlalchemy.exc import DBAPIError, PendingRollbackError

    if isinstance(exc, PendingRollbackError) and "reconnect" in str(exc):
        return True  # a statement after the connection of its transaction was lost
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, stripped ("" when it has none)."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else ""


def error_text(exc: BaseException) -> str:
    """``Type: first line of the message``: what a one-line log event says about ``exc``."""
    first = first_line(exc)
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def log_failure(
    logger: Any, event: str, exc: BaseException, *, level: str = "error", **fields: Any
) -> None:
    """Log ``exc`` at an error boundary: an outage or a mistake in the user's input (a template
    that cannot render for one lead) as one line (``error`` names it, the traceback only at
    debug level), anything else with its traceback, as a bug deserves."""
    if is_outage(exc) or isinstance(exc, UserInputError):
        # The traceback of an expected outage says nothing new; on a debug log it may help.
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            fields["exc_info"] = exc
        getattr(logger, level)(event, error=error_text(exc), **fields)
    else:
        logger.exception(event, error=error_text(exc), exc_info=exc, **fields)
