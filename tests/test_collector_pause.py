"""The collector pause of firing batches, across threads and when collection was already off."""

from __future__ import annotations

import gc
import threading

import pytest

from leadflow.collector_pause import collector_paused


def test_collection_comes_back_only_when_the_last_overlapping_batch_ends() -> None:
    assert gc.isenabled()
    first_inside = threading.Event()
    second_done = threading.Event()
    release_first = threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with collector_paused():
            first_inside.set()
            release_first.wait(5)
            seen["first, before leaving"] = gc.isenabled()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_inside.wait(5)
    with collector_paused():
        seen["second, inside"] = gc.isenabled()
    # The second batch ended while the first still runs: collection stays off.
    seen["between"] = gc.isenabled()
    second_done.set()
    release_first.set()
    thread.join(5)
    assert seen == {"second, inside": False, "between": False, "first, before leaving": False}
    assert gc.isenabled()


def test_collection_turned_off_by_the_process_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_an_exception_in_the_batch_still_turns_collection_back_on() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("batch failed")
    assert gc.isenabled()
