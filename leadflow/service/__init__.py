"""The long-running service (``leadflow daemon``): scheduler, outbox sender, rule watcher."""

from leadflow.service.daemon import Daemon, run_daemon
from leadflow.service.daemon_ticks import DaemonCounters, Evaluator

__all__ = ["Daemon", "DaemonCounters", "Evaluator", "run_daemon"]
