"""``leadflow daemon``: one asyncio process running the scheduler, the sender and the watcher.

Lifetimes are owned: the scheduler, the mail transport and the signal handlers are entered on
an :class:`~contextlib.AsyncExitStack`, the outbox sender, the rule watcher and the job sync run
in a :class:`asyncio.TaskGroup`. SIGTERM or SIGINT stops new work at once, waits (at most
``scheduler.shutdown_grace``) for the evaluation in flight to finish its current batch and for
the sender to record what it delivered, and returns normally (exit 0). With the dashboard on,
a task keeps the Funnel page's default period computed (:meth:`Daemon._warm_funnel`). A task that fails is
logged as ``daemon_crashed``, distinct from ``daemon_stopped``, and its error is raised.

The first rule set must load: with no good set there is nothing to run, so the problems are
raised (:class:`~leadflow.errors.ProblemsError`, exit 1) instead of waiting for a fix. After
that, a broken change is refused by the watcher and the last good set keeps running.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import SQLAlchemyError

from leadflow.dashboard.funnel_page import period_days
from leadflow.dashboard.funnel_snapshots import FunnelSnapshots, funnel_snapshots
from leadflow.engine.runtime import Runtime
from leadflow.errors import UserInputError
from leadflow.logs import log_failure
from leadflow.mail.context import placeholder_unsubscribe_warning
from leadflow.mail.transports import Transport, transport_for
from leadflow.outbox.delivery import DrainReport, drain
from leadflow.rule_language.model import RuleSet
from leadflow.service.channels import channels_for
from leadflow.service.daemon_ticks import DaemonCounters, Evaluator
from leadflow.service.exit_deadline import EXIT_MARGIN_S, ExitDeadline
from leadflow.service.jobs import RuleJobs, build_scheduler
from leadflow.service.leadership import AdvisoryLockLeadership, Leadership, SingleInstance
from leadflow.service.rule_reload import LoadWarning, SnapshotHolder, watch_and_reload
from leadflow.store.evaluator_leader import record_leader

log = structlog.get_logger("leadflow.service")

SENDER = "outbox-sender"
"""The outbox sender's task name, as ``daemon_shutdown_grace_exceeded`` names it."""
_CANCEL_WAIT_S = EXIT_MARGIN_S / 4
"""How long the tasks cancelled past the grace are given to hand back what they can."""

WARM_POLL = timedelta(seconds=10)
"""How often the Funnel page's default period is checked for a snapshot gone stale."""
RELOAD_POLL = timedelta(milliseconds=200)
"""How often the job sync looks for a swapped rule set (a reload is ~50 ms after a save)."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HANGUP = signal.SIGHUP
"""Stops the daemon like SIGTERM, unless it was started ignoring it (``nohup``). Its default
action ended the process at once, with no log line, mid-batch and holding its claims: a closed
terminal, or ``kill -HUP`` sent as to other daemons to reload (the rules reload by themselves;
``config.yaml`` is read at start, its dashboard users again when it changes)."""


class Daemon:
    """The long-running service of one process; :meth:`run` returns after a clean stop."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        transport: Transport | None = None,
        on_stop: Callable[[], None] | None = None,
        on_signals_taken: Callable[[], None] | None = None,
    ) -> None:
        """``on_stop`` is called once when the stop is requested (the command's
        :class:`~leadflow.service.exit_deadline.ExitDeadline`); ``on_signals_taken`` once the
        event loop handles the stop signals: the handlers before it are restored when it
        gives them back, while the daemon stops (the command's then treat a signal as a
        repeat)."""
        self.runtime = runtime
        self._on_stop = on_stop
        self._on_signals_taken = on_signals_taken
        self.holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=runtime.clock)
        self.counters = DaemonCounters()
        self.stop_event = asyncio.Event()
        self._transport = transport
        self.leadership: Leadership | None = None
        self.funnel: FunnelSnapshots | None = None
        """The Funnel page's snapshots, when the dashboard is served."""
        self.sending = DrainReport()
        """The outbox sender's drain, counted as it goes: what it still holds leased at a
        stop past the grace is said in ``daemon_shutdown_grace_exceeded``."""

    def request_stop(self, reason: str = "requested") -> None:
        """Stop scheduling new work; :meth:`run` then winds down and returns."""
        if self.stop_event.is_set():
            log.info("daemon_stop_already_requested", reason=reason)
            return
        log.info("daemon_stopping", reason=reason)
        self.stop_event.set()
        if self._on_stop is not None:
            self._on_stop()

    async def run(self) -> None:
        """Run until :meth:`request_stop` (or SIGTERM/SIGINT); raise what made it crash."""
        try:
            await self._run()
        except UserInputError as exc:
            # The first rule set (or a configured folder) is wrong: nothing to run yet.
            log.error("daemon_not_started", error=str(exc).splitlines())  # noqa: TRY400
            raise
        except BaseException as exc:
            cause = _first_leaf(exc)
            if isinstance(cause, Exception):
                log.exception(
                    "daemon_crashed", error=f"{type(cause).__name__}: {cause}", exc_info=cause
                )
                if cause is not exc:
                    raise cause from exc
            raise
        log.info("daemon_stopped", **self._summary())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        async with AsyncExitStack() as stack:
            stopping = list(STOP_SIGNALS)
            if signal.getsignal(HANGUP) is not signal.SIG_IGN:
                stopping.append(HANGUP)
            for sig in stopping:
                stack.callback(_give_back, loop, sig, signal.getsignal(sig))
                loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
            if self._on_signals_taken is not None:
                self._on_signals_taken()
            rule_set = await asyncio.to_thread(self.runtime.load_rules)
            warned = self.warnings(rule_set)
            self.holder.record_success(rule_set, tuple(warning.text for warning in warned))
            if self.stop_event.is_set():
                return
            # Before the scheduler starts: a refused start-up then leaves no job to cancel.
            http = self._http_server(stack)
            leadership = await self._lead(stack)
            settings = self.runtime.settings.scheduler
            scheduler = build_scheduler(settings, loop)
            evaluator = Evaluator(
                self.runtime,
                self.holder,
                counters=self.counters,
                leadership=leadership,
                on_written=self._renew_funnel if self.funnel is not None else None,
            )
            jobs = RuleJobs(scheduler, evaluator)
            transport = self._transport or transport_for(
                self.runtime.settings, self.runtime.clock.now()
            )
            stack.push_async_callback(transport.close)
            scheduler.start()
            stack.callback(_shut_down, scheduler)
            await jobs.sync(rule_set)
            jobs.add_funnel_tick(settings.funnel_tick)
            jobs.add_retention(settings.retention_every)
            async with asyncio.TaskGroup() as group:
                workers = [
                    group.create_task(self._send(transport), name=SENDER),
                    group.create_task(self._watch(), name="rule-watcher"),
                    group.create_task(self._follow_reloads(jobs), name="job-sync"),
                ]
                if http is not None:
                    workers.append(group.create_task(http(), name="http-server"))
                if self.funnel is not None:
                    workers.append(group.create_task(self._warm_funnel(), name="funnel-warmer"))
                if isinstance(leadership, AdvisoryLockLeadership):
                    workers.append(
                        group.create_task(leadership.run(self.stop_event), name="leadership")
                    )
                self._log_started(rule_set, transport, warned)
                await self.stop_event.wait()
                scheduler.pause()  # no new ticks from here on
                await self._wind_down(evaluator, workers)

    async def _lead(self, stack: AsyncExitStack) -> Leadership:
        """SQLite: own the store or refuse to start. PostgreSQL: compete for the lock now, so
        a lone replica evaluates its start-up catch-up at once."""
        engine = self.runtime.engine
        if engine.dialect.name == "sqlite":
            single = SingleInstance(Path(engine.url.database or "leadflow.db"), self.runtime.clock)
            single.acquire()
            stack.callback(single.release)
            self.leadership = single
            try:
                await asyncio.to_thread(record_leader, engine, single.record())
            except SQLAlchemyError as exc:  # it leads all the same; status says so, unnamed
                log_failure(log, "leadership_not_recorded", exc, level="warning")
            return single
        shared = AdvisoryLockLeadership(
            engine.url.render_as_string(hide_password=False),
            timeout=self.runtime.settings.database.leadership_timeout,
            clock=self.runtime.clock,
        )
        await asyncio.to_thread(shared.check)
        self.leadership = shared
        return shared

    def _leading(self) -> bool:
        """Whether this replica evaluates now (``/readyz``'s ``leader``)."""
        return self.leadership is not None and self.leadership.is_leader

    async def _wind_down(self, evaluator: Evaluator, workers: list[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        grace = self.runtime.settings.scheduler.shutdown_grace.total_seconds()
        deadline = loop.time() + grace
        evaluator.stop()
        if not await evaluator.wait_idle(grace_s=grace):
            log.error("daemon_shutdown_grace_exceeded", waiting_for="evaluation", grace_s=grace)
        _, pending = await asyncio.wait(workers, timeout=max(0.0, deadline - loop.time()))
        for task in pending:
            task.cancel()
        if pending:
            # The sender hands back, as it is cancelled, what was only waiting for room; what
            # it still holds after that is what stays leased. Bounded: the exit deadline
            # (EXIT_MARGIN_S after the grace) must find this line written.
            await asyncio.wait(pending, timeout=_CANCEL_WAIT_S)
        for task in pending:
            name = task.get_name()
            if name != SENDER:
                log.error("daemon_shutdown_grace_exceeded", waiting_for=name, grace_s=grace)
                continue
            # An outcome the configuration foresees (scheduler.shutdown_grace shorter than a
            # relay's reply), not a failure: each message is sent again, with its Message-ID,
            # once its lease ends.
            until = self.sending.leased_until()
            log.warning(
                "daemon_shutdown_grace_exceeded",
                waiting_for=name,
                grace_s=grace,
                leased=len(self.sending.held),
                lease_until=until.isoformat() if until is not None else None,
                detail="deliveries cut off at the stop: their messages stay sending until "
                "lease_until, then are sent again with the same Message-ID",
            )

    def _http_server(self, stack: AsyncExitStack) -> Callable[[], Coroutine[Any, Any, None]] | None:
        """The API, probes and metrics (``http.enabled``), on a socket bound now so a taken
        port or a missing token fails the start-up rather than a task later."""
        if not self.runtime.settings.http.enabled:
            return None
        from leadflow.http import bind, create_app, serve

        if self.runtime.settings.dashboard.enabled:
            self.funnel = funnel_snapshots(self.runtime)
        app = create_app(self.runtime, self.holder, funnel=self.funnel, leading=self._leading)
        sock = bind(self.runtime.settings.http)
        stack.callback(sock.close)
        grace = self.runtime.settings.scheduler.shutdown_grace.total_seconds()
        header_timeout = self.runtime.settings.http.header_timeout.total_seconds()
        # A coroutine only once it runs.
        return partial(
            serve, app, sock, self.stop_event, grace_s=grace, header_timeout_s=header_timeout
        )

    async def _warm_funnel(self) -> None:
        """Keep the Funnel page's default period (the last seven days, today included) computed:
        at start-up, and again whenever its snapshot is older than ``dashboard.funnel_refresh``,
        so whoever opens the page gets figures at once. Each replica warms its own; a
        computation in flight at the stop is left to end with the process (it only reads)."""
        assert self.funnel is not None
        # A tenth of the refresh interval at most, so a stale snapshot is renewed promptly.
        poll = min(WARM_POLL, self.funnel.refresh / 10).total_seconds()
        while not self.stop_event.is_set():
            self._warm_default_period()
            try:
                async with asyncio.timeout(poll):
                    await self.stop_event.wait()
            except TimeoutError:
                pass
        self.funnel.close()

    def _renew_funnel(self) -> None:
        """A rule run fired or a funnel tick handled something, and committed it: the Funnel
        page's snapshots are outdated, the default period's is computed again at once (its
        as-of then includes the run's rows), another period's at its next request."""
        assert self.funnel is not None
        self.funnel.outdate()
        self._warm_default_period(cause="written")

    def _warm_default_period(self, **why: str) -> None:
        """Start computing the default period (the last seven days) unless it is fresh."""
        assert self.funnel is not None
        first, last = period_days(None, None, self.runtime.clock.now().date())
        if self.funnel.warm(first, last):
            log.info("funnel_report_warming", first=str(first), last=str(last), **why)

    async def _send(self, transport: Transport) -> None:
        runtime = self.runtime
        await drain(
            runtime.engine,
            runtime.settings,
            runtime.clock,
            channels_for(runtime.settings, transport),
            once=False,
            stop=self.stop_event,
            report=self.sending,
        )

    async def _watch(self) -> None:
        settings = self.runtime.settings
        folders = [settings.path(settings.paths.rules), settings.path(settings.paths.templates)]
        await watch_and_reload(
            folders, self.runtime.load_rules, self.holder, self.stop_event, warn=self.warnings
        )

    async def _follow_reloads(self, jobs: RuleJobs) -> None:
        """Keep the jobs in step with reloads, and catch up on due rules on becoming leader.

        Both read ``rule_runs``: while the database is unreachable the step is logged and
        tried again at the next poll, never allowed to end the daemon.
        """
        seen = self.holder.status().generation
        leading = self.leadership is not None and self.leadership.is_leader
        while not self.stop_event.is_set():
            try:
                async with asyncio.timeout(RELOAD_POLL.total_seconds()):
                    await self.stop_event.wait()
            except TimeoutError:
                pass
            if self.stop_event.is_set():
                break
            generation = self.holder.status().generation
            now_leading = self.leadership is not None and self.leadership.is_leader
            try:
                if generation != seen:
                    await jobs.sync(self.holder.current())
                    seen = generation
                if now_leading and not leading:
                    await jobs.catch_up(self.holder.current())
                leading = now_leading
            except SQLAlchemyError as exc:
                log_failure(log, "rule_jobs_sync_failed", exc, level="warning")

    def _log_started(
        self, rule_set: RuleSet, transport: Transport, warned: Sequence[LoadWarning]
    ) -> None:
        log.info(
            "daemon_started",
            pid=os.getpid(),
            rule_version=rule_set.version,
            rules=[rule.id for rule in rule_set.enabled_rules],
            database=self.runtime.engine.dialect.name,
            transport=getattr(transport, "name", type(transport).__name__),
        )
        # Said when the secret is made, not at every start with the same stored secret.
        if self.runtime.unsubscribe_secret_generated:
            log.warning(
                "unsubscribe_secret_generated",
                detail="mail.unsubscribe_secret is not set: a random secret was generated and "
                "stored in the store (table store_secrets), and unsubscribe links are signed with "
                "it; to verify links outside leadflow, set LEADFLOW_MAIL__UNSUBSCRIBE_SECRET",
            )
        for warning in warned:
            log.warning(warning.event, **warning.fields)

    def warnings(self, rule_set: RuleSet) -> list[LoadWarning]:
        """What ``rule_set`` is warned of under these settings: said at start and by a reload
        that brings it in (``leadflow check`` prints the same words), never by a tick.

        The rule files' own warnings (a value repeated in an ``in:`` list) come first, each
        ``rule_file_warning`` with its ``file``, ``line``, ``column`` and ``detail`` (which
        names the rule); the daemon said none of them, so only ``leadflow check`` did."""
        found = [
            LoadWarning(
                "rule_file_warning",
                str(warning),
                {
                    "file": warning.file,
                    "line": warning.line,
                    "column": warning.column,
                    "detail": warning.message,
                },
            )
            for warning in rule_set.warnings
        ]
        placeholder = placeholder_unsubscribe_warning(
            self.runtime.settings, rule_set.sends_marketing
        )
        if placeholder is not None:
            found.append(LoadWarning.detailed("unsubscribe_url_placeholder", placeholder))
        leaving = self._leavers(rule_set)
        if leaving:
            found.append(LoadWarning.detailed("nurture_enrollments_will_end", leaving))
        return found

    def _leavers(self, rule_set: RuleSet) -> str | None:
        """The active enrollments ``rule_set`` would end for want of their stream (a stream
        removed or renamed, or shortened), in one line; None when there is none, or when the
        store cannot say (logged: the reload goes on all the same)."""
        from leadflow.engine.stream_leavers import TO_KEEP_THEM, active_enrollments, leavers

        try:
            with self.runtime.engine.connect() as connection:
                enrolled = active_enrollments(connection)
        except SQLAlchemyError as exc:
            log_failure(log, "nurture_enrollments_not_read", exc, level="warning")
            return None
        found = leavers(enrolled, rule_set.streams)
        if not found:
            return None
        advice = f" ({TO_KEEP_THEM}: docs/rules.md, Nurture streams)"
        return "; ".join(leaving.describe() for leaving in found) + advice

    def _summary(self) -> dict[str, object]:
        return {
            "evaluations": sum(self.counters.evaluations.values()),
            "rule_failures": dict(self.counters.rule_failures),
            "nurture_failures": self._nurture_failures(),
            "funnel_ticks": self.counters.funnel_ticks,
            "retention_runs": self.counters.retention_runs,
        }

    def _nurture_failures(self) -> dict[str, int] | None:
        """Enrollments per nurture step failing at the stop ("welcome step 2": 3): a failing
        step is kept on its enrollments (not raised to the tick), so only the store knows.
        None when the store cannot say (the stop is logged all the same)."""
        from leadflow.store.status import failing_nurture_steps

        try:
            with self.runtime.engine.connect() as connection:
                failing = failing_nurture_steps(connection)
        except SQLAlchemyError as exc:
            log_failure(log, "nurture_failures_not_read", exc, level="warning")
            return None
        return {f"{step.stream} step {step.step}": step.enrollments for step in failing}


def _shut_down(scheduler: AsyncIOScheduler) -> None:
    # Jobs still running were started by us and are waited for by _wind_down, not here.
    if scheduler.running:
        scheduler.shutdown(wait=False)


def _give_back(loop: asyncio.AbstractEventLoop, sig: int, previous: Any) -> None:
    """The loop's handler of ``sig`` removed, the one before it restored: the loop's removal
    alone left the default action, so a repeated SIGTERM while the daemon closed its store
    and threads killed it (exit 143)."""
    loop.remove_signal_handler(sig)
    if previous is not None:  # None: a handler set outside Python, which it cannot restore
        signal.signal(sig, previous)


def _first_leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups, or ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def run_daemon(runtime: Runtime, on_signals_taken: Callable[[], None] | None = None) -> None:
    """Run the daemon of ``runtime`` until SIGTERM or SIGINT; once stopping, the process ends
    within ``scheduler.shutdown_grace`` (and a second) even if a thread is still busy."""
    grace = runtime.settings.scheduler.shutdown_grace.total_seconds()
    daemon = Daemon(runtime, on_stop=ExitDeadline(grace).arm, on_signals_taken=on_signals_taken)
    await daemon.run()
