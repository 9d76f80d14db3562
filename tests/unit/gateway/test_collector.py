"""The gateway's collector settings: a push-like workload (a long-lived heap
of connections' state, frames in flight, garbage in cycles) runs without a
full collection, where CPython's defaults make several."""
from __future__ import annotations

import collections
import gc

import pytest

from gateway import collector


@pytest.fixture
def restored_collector():
    thresholds = gc.get_threshold()
    gc.collect()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc.collect()


def full_collections_of_a_push_like_workload(settle) -> int:
    """Full collections while 20,000 connection-state objects are held and
    300,000 frames pass: each frame leaves a small cycle behind (garbage
    only the collector frees) and 500 of them are in flight at any time."""
    fulls = []

    def count(phase, info):
        if phase == "stop" and info.get("generation") == 2:
            fulls.append(info)

    settle()
    # CPython's rule compares with the older heap as of the last full
    # collection: one now, so the count does not depend on the test process.
    gc.collect()
    connections = [{"sid": n, "rooms": {"depth", "trades"}} for n in range(20_000)]
    in_flight = collections.deque(maxlen=500)
    gc.callbacks.append(count)
    try:
        for n in range(300_000):
            cycle = {"seq": n}
            cycle["self"] = cycle
            in_flight.append({"seq": n, "changes": [n]})  # tracked (a list)
    finally:
        gc.callbacks.remove(count)
    del connections, cycle
    return len(fulls)


def test_a_push_like_workload_makes_no_full_collection_after_settling(restored_collector):
    assert full_collections_of_a_push_like_workload(collector.settle_heap) == 0


def test_with_the_default_threshold_the_same_workload_makes_full_collections(restored_collector):
    """The control: the workload above does make full collections at
    CPython's default first threshold (so the test above can fail)."""
    def defaults():
        gc.freeze()
        gc.set_threshold(700, 10, 10)
    assert full_collections_of_a_push_like_workload(defaults) >= 2
