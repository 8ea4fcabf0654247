"""Hot reload: keep one immutable snapshot of the rule set and swap it when its files change.

This module knows nothing about the rule language. It is generic over the snapshot type ``T``
and is given a ``load`` function that reads and validates *everything* (rules, templates) and
either returns a new snapshot or raises. A set with any error is refused: the last good snapshot
keeps running, the error lines are kept for ``leadflow status`` and a failure is counted.
A good set may still earn warnings (``warn``, e.g. marketing email with no unsubscribe
address, or the warnings ``leadflow check`` prints at a file's line): each is logged by the
load or reload that brings it in, once, and kept with the status for as long as the running
set earns it. Ticks log none of them.

Swapping is one reference assignment, so an evaluation that took :meth:`SnapshotHolder.current`
keeps using that object for its whole run, however many reloads happen meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Generic, Protocol, TypeVar, runtime_checkable

import structlog
from watchfiles import Change, DefaultFilter, awatch

from leadflow import metrics
from leadflow.clock import Clock
from leadflow.errors import ConfigError, NoSnapshotError, UserInputError
from leadflow.logs import log_failure

T = TypeVar("T")

DEBOUNCE_MS = 500
"""Longest time changes are grouped into one reload (watchfiles' default is 1600 ms)."""
STEP_MS = 50
"""A batch is handed over once no new change arrived for this long: a save is seen in ~50 ms."""

CONFIGMAP_DATA = "..data"
"""The symlink a Kubernetes ConfigMap volume swaps atomically on every update."""

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ReloadStatus:
    """What ``leadflow status`` and the metrics show about reloads, read consistently at once."""

    generation: int
    """How many snapshots were swapped in; 0 while none has loaded."""
    successes: int
    failures: int
    errors: tuple[str, ...]
    """The error lines of the last attempt when it failed; empty after a good load."""
    last_attempt_failed: bool
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    warnings: tuple[str, ...] = ()
    """What the running snapshot was warned of when it loaded; kept while a change is refused."""


class SnapshotHolder(Generic[T]):
    """The current good snapshot plus the outcome of every load attempt. Thread-safe."""

    def __init__(self, *, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot: T | None = None
        self._status = ReloadStatus(0, 0, 0, (), False, None, None)
        self._listeners: list[Callable[[T], None]] = []

    def on_swap(self, listener: Callable[[T], None]) -> None:
        """Call ``listener`` with every snapshot swapped in from now on, under the swap's lock
        (so it sees every one, even one replaced before anything read it), and with the
        current one at once if there is one."""
        with self._lock:
            self._listeners.append(listener)
            if self._snapshot is not None:
                listener(self._snapshot)

    def current(self) -> T:
        """The snapshot to use for one whole evaluation; hold on to it, do not ask again."""
        snapshot = self._snapshot  # one read: a concurrent swap cannot tear it
        if snapshot is None:
            detail = "; ".join(self._status.errors) or "no load was attempted yet"
            msg = f"no rule set has loaded successfully yet: {detail}"
            raise NoSnapshotError(msg)
        return snapshot

    def current_or_none(self) -> T | None:
        """The current snapshot, or None before the first good load."""
        return self._snapshot

    def status(self) -> ReloadStatus:
        return self._status

    def record_success(self, snapshot: T, warnings: Sequence[str] = ()) -> ReloadStatus:
        """Swap ``snapshot`` in and clear the errors of earlier failed attempts."""
        with self._lock:
            now = self._clock.now()
            old = self._status
            self._snapshot = snapshot
            self._status = ReloadStatus(
                generation=old.generation + 1,
                successes=old.successes + 1,
                failures=old.failures,
                errors=(),
                last_attempt_failed=False,
                last_attempt_at=now,
                last_success_at=now,
                warnings=tuple(warnings),
            )
            for listener in self._listeners:
                listener(snapshot)
            return self._status

    def record_failure(self, errors: Sequence[str]) -> ReloadStatus:
        """Keep the current snapshot; remember why the new one was refused."""
        with self._lock:
            old = self._status
            self._status = ReloadStatus(
                generation=old.generation,
                successes=old.successes,
                failures=old.failures + 1,
                errors=tuple(errors),
                last_attempt_failed=True,
                last_attempt_at=self._clock.now(),
                last_success_at=old.last_success_at,
                warnings=old.warnings,
            )
            return self._status


@runtime_checkable
class Versioned(Protocol):
    """A snapshot that says which version it is (a rule set does), named in the reload log."""

    @property
    def version(self) -> str: ...


@dataclass(frozen=True)
class LoadWarning:
    """One warning a good snapshot earns: logged as ``event`` with ``fields`` by the load that
    brings it in, and kept with the status as ``text`` (the Rules page lists it)."""

    event: str
    text: str
    fields: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def detailed(cls, event: str, detail: str) -> LoadWarning:
        """A warning said in one line, logged as ``detail``."""
        return cls(event, detail, {"detail": detail})


Warn = Callable[[T], Sequence[LoadWarning]]
"""A good snapshot's warnings (empty when there is none)."""


def reload_snapshot(
    load: Callable[[], T],
    holder: SnapshotHolder[T],
    *,
    changed: Collection[str] = (),
    warn: Warn[T] | None = None,
) -> bool:
    """Call ``load()`` and swap its result in; on any error keep the old snapshot. Never raises.

    A :class:`~leadflow.errors.UserInputError` (such as ``ProblemsError``) is the user's broken
    file: its lines become the status errors. Any other exception is a bug in the loader: it is
    logged with its traceback and counted the same way, and the daemon goes on.

    ``warn``'s warnings of the new snapshot are kept with the status; each one the running
    snapshot was not warned of (by its text) is logged, after ``rules_reloaded``, as its
    event. A
    ``warn`` that fails leaves the snapshot swapped in, without warnings, and logs
    ``rules_warnings_failed``.
    """
    started = time.perf_counter()
    try:
        snapshot = load()
    except UserInputError as exc:
        errors = str(exc).splitlines() or [type(exc).__name__]
        status = holder.record_failure(errors)
        metrics.record_reload(ok=False)
        log.error(  # noqa: TRY400 (the user's file is wrong; a traceback would only confuse)
            "rules_reload_failed", errors=errors, failures=status.failures, changed=list(changed)
        )
        return False
    except Exception as exc:  # the per-reload boundary: a loader bug must not stop the daemon
        status = holder.record_failure([f"unexpected error while loading: {exc!r}"])
        metrics.record_reload(ok=False)
        log_failure(
            log, "rules_reload_failed", exc, failures=status.failures, changed=list(changed)
        )
        return False
    # Outside the load's boundary: a bug in a check of a good set is not a reason to refuse it.
    failed: Exception | None = None
    try:
        warnings = list(warn(snapshot)) if warn is not None else []
    except Exception as exc:  # logged below, with its traceback
        warnings, failed = [], exc
    before = set(holder.status().warnings)
    status = holder.record_success(snapshot, tuple(warning.text for warning in warnings))
    metrics.record_reload(ok=True)
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    named = {"version": snapshot.version} if isinstance(snapshot, Versioned) else {}
    log.info(
        "rules_reloaded",
        **named,
        generation=status.generation,
        elapsed_ms=elapsed_ms,
        changed=list(changed),
    )
    if failed is not None:
        log_failure(log, "rules_warnings_failed", failed, **named, generation=status.generation)
    for warning in warnings:
        if warning.text not in before:
            log.warning(warning.event, **warning.fields, **named, generation=status.generation)
    return True


class RuleFolderFilter(DefaultFilter):
    """Which file events may change the rule set: not editors' leftovers, not ConfigMap internals.

    Real edits stay visible however an editor saves: vim's rename-and-write, JetBrains' safe
    write and atomic ``*.tmp`` renames all end with an event on the real file name.
    """

    ignore_entity_patterns: Sequence[str] = (
        r"\.sw.$",  # vim swap files: .x.yaml.swp, .swo, ..., and the .swx probe
        r"^\d+$",  # vim's write-permission probe files: 4913, then 5036, 5159, ...
        r"~$",  # vim, emacs, nano and gedit backups
        r"^#.*#$",  # emacs auto-save
        r"^\.#",  # emacs lock symlinks
        r"___jb_(tmp|old|bak)___$",  # JetBrains safe write
        r"^\.DS_Store$",
        r"\.tmp$",  # atomic-save temporaries of many editors and tools
        r"\.tmp[.-]\w+$",  # ... with a random suffix: x.yaml.tmp.8f3a
        r"\.crswap$",  # VS Code for the web / Chromium atomic save
        r"^\.goutputstream-",  # gedit and other GIO programs
        r"\.kate-swp$",
        r"^\.~lock\..*#$",  # LibreOffice
        r"\.py[cod]$",
        r"^flycheck_",
        r"^sed[A-Za-z0-9]{6}$",  # GNU sed -i's temporary, renamed over the file it edits
    )

    def __init__(self, roots: Sequence[Path]) -> None:
        super().__init__()
        self._roots = tuple(os.path.abspath(root) for root in roots)

    def __call__(self, change: Change, path: str) -> bool:
        parts = self._parts_below_root(path)
        if not _counts_for_configmap(parts):
            return False
        return super().__call__(change, path)

    def _parts_below_root(self, path: str) -> list[str]:
        for root in self._roots:
            if path.startswith(root + os.sep):
                return path[len(root) + 1 :].split(os.sep)
        return path.split(os.sep)


def _counts_for_configmap(parts: Sequence[str]) -> bool:
    """Of a ConfigMap volume's hidden entries (``..data``, ``..2026_11_23_...``) only the swap
    of ``..data`` itself counts: the timestamped folders are written before and deleted after
    it, and the old folder's deletion shows up under ``..data/`` because the watcher follows
    the symlink. The visible ``x.yaml -> ..data/x.yaml`` links never change."""
    last = len(parts) - 1
    return all(
        not part.startswith("..") or (part == CONFIGMAP_DATA and index == last)
        for index, part in enumerate(parts)
    )


REPLACED_CHECK_S = 0.5
"""How often the watcher checks that each watched folder is still the one it watches."""


async def watch_and_reload(
    folders: Sequence[Path],
    load: Callable[[], T],
    holder: SnapshotHolder[T],
    stop_event: asyncio.Event,
    *,
    debounce_ms: int = DEBOUNCE_MS,
    step_ms: int = STEP_MS,
    watch_filter: Callable[[Change, str], bool] | None = None,
    force_polling: bool | None = None,
    warn: Warn[T] | None = None,
) -> None:
    """Reload into ``holder`` whenever files under ``folders`` change, until ``stop_event``.

    ``load`` runs in a worker thread, one reload at a time; changes made during a reload are
    picked up by the next one. The first load is the caller's (:func:`reload_snapshot`);
    ``warn`` is :func:`reload_snapshot`'s.

    A watched folder that is replaced (removed and created again, moved aside for a new copy,
    or a symbolic link switched to another release) is watched anew once it is back, and the
    set is reloaded: the operating system's watch stays on the folder it was given, so edits
    in the new one went unseen and the daemon ran the old rules until restarted.
    """
    roots = _watched_roots(folders)
    chosen = RuleFolderFilter(roots) if watch_filter is None else watch_filter
    one_at_a_time = asyncio.Lock()

    async def reload(changed: Collection[str]) -> None:
        async with one_at_a_time:
            await asyncio.to_thread(reload_snapshot, load, holder, changed=changed, warn=warn)

    log.info("rule_watch_started", folders=[str(root) for root in roots])
    replaced: list[str] = []
    while not stop_event.is_set():
        until = _UntilReplaced(stop_event, roots)
        checker = asyncio.create_task(until.check_every(REPLACED_CHECK_S))
        # A replaced folder is reloaded once the new watch is in place: the reload sees what
        # was written before, the watch what comes after.
        late = (
            asyncio.create_task(_after(debounce_ms / 1000, reload, replaced)) if replaced else None
        )
        try:
            # awatch calls only is_set() and set() of its stop event
            async for changes in awatch(
                *roots,
                watch_filter=chosen,
                stop_event=until,  # type: ignore[arg-type]
                debounce=debounce_ms,
                step=step_ms,
                force_polling=force_polling,
            ):
                # One path may come twice in a batch (added, then renamed away or deleted).
                await reload(sorted({path for _, path in changes}))
                # A watched folder deleted is a replacement even when its new copy got the same
                # inode back (``rm -rf rules && cp -r release rules`` mostly does): the
                # operating system's watch went with the deleted folder.
                until.note_deleted(
                    {Path(path) for change, path in changes if change == Change.deleted}
                )
        finally:
            checker.cancel()
            if late is not None:
                late.cancel()
        if stop_event.is_set():
            break
        replaced = [str(root) for root in until.replaced]
        log.warning("rule_folder_replaced", folders=replaced)
        await reload(replaced)  # a folder that went away: the status says so meanwhile
        while not all(root.is_dir() for root in roots):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), REPLACED_CHECK_S)
            if stop_event.is_set():
                break
    log.info("rule_watch_stopped")


async def _after(
    seconds: float, work: Callable[[Collection[str]], Awaitable[None]], changed: Collection[str]
) -> None:
    await asyncio.sleep(seconds)
    await work(changed)


def _identity(folder: Path) -> tuple[int, int] | None:
    """The folder a path names now (device and inode, through symbolic links); None if gone."""
    try:
        found = folder.stat()
    except OSError:
        return None
    return (found.st_dev, found.st_ino)


class _UntilReplaced:
    """The watch's stop event: set when the daemon stops or a watched folder was replaced."""

    def __init__(self, stop: asyncio.Event, roots: Sequence[Path]) -> None:
        self._stop = stop
        self._roots = roots
        self._watched = [_identity(root) for root in roots]
        self.replaced: list[Path] = []

    def is_set(self) -> bool:
        return bool(self.replaced) or self._stop.is_set()

    def set(self) -> None:  # awatch sets it when it is cancelled
        self._stop.set()

    def note_deleted(self, paths: Collection[Path]) -> None:
        """Stop the watch if it reported a watched folder itself as deleted."""
        self.replaced += [
            root for root in self._roots if root in paths and root not in self.replaced
        ]

    async def check_every(self, seconds: float) -> None:
        while not self.is_set():
            await asyncio.sleep(seconds)
            now = [_identity(root) for root in self._roots]
            self.replaced = [
                root
                for root, was, is_ in zip(self._roots, self._watched, now, strict=True)
                if was != is_
            ]


def _watched_roots(folders: Sequence[Path]) -> list[Path]:
    # Absolute but not resolved: events are reported under the path as given, and resolving
    # would step through a ConfigMap's own symlinks.
    roots = [Path(os.path.abspath(folder)) for folder in folders]
    missing = [str(root) for root in roots if not root.is_dir()]
    if missing:
        msg = f"cannot watch for rule changes: no such folder: {', '.join(missing)}"
        raise ConfigError(msg)
    return roots
