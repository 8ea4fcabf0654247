"""The cyclic garbage collector paused while a batch of firings, or a file import, is made and
written.

A batch allocates hundreds of thousands of small objects (rows, audit values, rendered email,
Jinja contexts) that live until the batch is written; the collector, triggered by allocations,
kept walking them (and every long-lived object of the process) while nearly none of them is
garbage: a quarter of a batch's CPU time. Their memory is freed by reference counting as
always; the few cycles a batch makes are collected by the first collection after it.

An import pauses it for its whole run and collects young objects itself once per batch
(``leadflow.ingest.runner``). The collector is one per process and the daemon runs batches in
several threads (rule jobs, nurture, the HTTP API's posted records), so the pauses are counted: the last batch to finish
turns collection back on, never one that finishes while another is still making its objects.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Pauses:
    """Blocks inside :func:`collector_paused` that turned collection off, process-wide."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0


_pauses = _Pauses()


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside the block; collection left off by someone else stays off."""
    with _pauses.lock:
        owned = _pauses.count > 0 or gc.isenabled()
        if owned:
            _pauses.count += 1
            gc.disable()
    try:
        yield
    finally:
        if owned:
            with _pauses.lock:
                _pauses.count -= 1
                if _pauses.count == 0:
                    gc.enable()
