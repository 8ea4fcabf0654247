"""``leadflow daemon``: the long-running service, until SIGTERM or Ctrl-C (then exit 0).

A configuration the daemon would refuse (the HTTP API without a token) is checked before the
store, the scheduler or the log are touched: the refusal is the one ``error:`` line, exit 1.

The stop signals are handled from the command's first line: building the runtime on a large
store takes seconds, and a SIGTERM then (a rolling restart) ended the process with 143 and no
word. Until the event loop takes the signals over (:class:`~leadflow.service.Daemon`), a signal
stops the start-up with ``daemon_stopping`` and exit 0, at once: nothing runs yet but the
start-up's own transactions, which the end of the process rolls back as a kill -9 would (the
store's guarantee). Unwinding from the signal instead ran into whatever the start-up was in:
SQLAlchemy's pool finalizer logged the exception with its traceback, and a second signal
arriving while the first unwound ended the process with a traceback or 143.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from types import FrameType

import typer

from leadflow.cli.context import cli_context
from leadflow.clock import SystemClock
from leadflow.errors import ConfigError, ExternalSystemError, StoreNotReadyError


def daemon(ctx: typer.Context) -> None:
    """Run the scheduler, the outbox sender and the rule watcher until SIGTERM or Ctrl-C."""
    _stop_start_up_on_signals()
    try:
        _start_and_run(ctx)
    finally:
        # The interpreter's exit restores the default actions: a repeat then was a 143.
        for sig in _stopping_signals():
            signal.signal(sig, signal.SIG_IGN)
        _log_repeats()


def _start_and_run(ctx: typer.Context) -> None:
    import asyncio

    from leadflow.engine.runtime import Runtime
    from leadflow.service import run_daemon

    context = cli_context(ctx)
    settings = context.settings
    if settings.http.enabled:
        from leadflow.http import check_http_settings

        check_http_settings(settings.http)
    # The dashboard's users are read again from this file when it changes (a role lowered
    # counts on the next click); the rest of the configuration is read once, here.
    config_file = context.loaded.config_file
    try:
        engine = context.engine
    except (StoreNotReadyError, ExternalSystemError, ConfigError) as exc:
        # A newer leadflow migrated the store (or one not leadflow's), the database cannot be
        # reached or refuses the URL's login: one log line a collector can read (JSON off a
        # terminal, as the daemon's every other line), not a plain ``error:`` line nor a
        # traceback, and a non-zero exit (a supervisor restarting it meets the same line):
        # 3 for a database away, 1 for the URL's or the store's mistake.
        import structlog

        structlog.get_logger("leadflow.service").error("daemon_not_started", error=str(exc))
        raise typer.Exit(3 if isinstance(exc, ExternalSystemError) else 1) from None
    runtime = Runtime.build(engine, settings, SystemClock(), config_file=config_file)
    asyncio.run(run_daemon(runtime, on_signals_taken=_signals_taken))


def _stop_start_up_on_signals() -> None:
    """Signals the daemon stops on end the start-up until its event loop installs its own
    handlers (SIGHUP only if not ignored, as the daemon does)."""
    for sig in _stopping_signals():
        signal.signal(sig, _stop_start_up)


def _stopping_signals() -> list[signal.Signals]:
    stopping = [signal.SIGTERM, signal.SIGINT]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        stopping.append(signal.SIGHUP)
    return stopping


@dataclass
class _SignalState:
    """What the command's own handler knows: whether the event loop took the signals over
    (when it gives them back, the daemon is stopping, or crashed, and a signal repeats the
    stop), and the repeats' names, logged once the command is done: a log line written from
    the handler could interrupt the same stream's write."""

    taken_by_the_loop: bool = False
    repeats: list[str] = field(default_factory=list)


_SIGNALS = _SignalState()


def _signals_taken() -> None:
    _SIGNALS.taken_by_the_loop = True


def _log_repeats() -> None:
    import structlog

    log = structlog.get_logger("leadflow.service")
    for name in _SIGNALS.repeats:
        log.info("daemon_stop_already_requested", reason=name)
    _SIGNALS.repeats.clear()


def _stop_start_up(signum: int, _frame: FrameType | None) -> None:
    if _SIGNALS.taken_by_the_loop:
        # Given back by the loop, which stopped: a second SIGTERM while the daemon closed its
        # store and threads met the default action (exit 143).
        _SIGNALS.repeats.append(signal.Signals(signum).name)
        return
    # A second signal while this one is logged is the same request: it must not interrupt it.
    for sig in _stopping_signals():
        signal.signal(sig, signal.SIG_IGN)
    try:
        import structlog

        if not structlog.is_configured():
            # Before the settings are read (their first tenth of a second) the line came out in
            # structlog's coloured console format, which a log collector cannot parse.
            from leadflow.logs import configure_logging

            configure_logging(fmt=os.environ.get("LEADFLOW_LOG__FORMAT", "auto"))
        log = structlog.get_logger("leadflow.service")
        log.info("daemon_stopping", reason=signal.Signals(signum).name, during="start-up")
        log.info("daemon_stopped", during="start-up")
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(0)
