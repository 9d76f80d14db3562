"""services.common.group_commit: concurrent submissions share batches, one
batch in flight, each caller gets its own outcome."""
import time

import eventlet
import pytest
from eventlet.event import Event

from services.common.group_commit import GroupCommit


class Recorder:
    """A run_batch that records its batches and can be held in flight."""

    def __init__(self):
        self.batches = []
        self.release = None
        self.in_flight = 0
        self.most_in_flight = 0

    def __call__(self, requests):
        self.batches.append(list(requests))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.release is not None:
            self.release.wait()
        self.in_flight -= 1
        return [ValueError(r) if r == "bad" else r * 2 for r in requests]


def settle():
    """Let every runnable greenthread run until it blocks (bounded)."""
    for _ in range(50):
        eventlet.sleep(0)


def test_requests_arriving_while_a_batch_runs_form_the_next_batch():
    run = Recorder()
    run.release = Event()
    group = GroupCommit(run, max_batch=100, linger_s=0)
    first = eventlet.spawn(group.submit, 1)
    settle()
    assert run.batches == [[1]]
    others = [eventlet.spawn(group.submit, n) for n in range(2, 7)]
    settle()
    assert group.requests.qsize() == 5
    run.release.send()
    assert first.wait() == 2
    assert [o.wait() for o in others] == [4, 6, 8, 10, 12]
    assert run.batches == [[1], [2, 3, 4, 5, 6]]
    assert run.most_in_flight == 1
    assert group.batch_sizes == {1: 1, 5: 1}


def test_the_size_cap_splits_a_queue_into_batches():
    run = Recorder()
    group = GroupCommit(run, max_batch=3, linger_s=0)
    assert group.submit_many(list(range(7))) == [0, 2, 4, 6, 8, 10, 12]
    assert [len(b) for b in run.batches] == [3, 3, 1]


def test_a_lone_request_lingers_for_company():
    run = Recorder()
    group = GroupCommit(run, max_batch=10, linger_s=0.05)
    callers = [eventlet.spawn(group.submit, n) for n in range(4)]
    assert [c.wait() for c in callers] == [0, 2, 4, 6]
    assert run.batches == [[0, 1, 2, 3]]


def test_a_refused_request_fails_only_its_caller():
    group = GroupCommit(Recorder(), linger_s=0)
    bad = eventlet.spawn(group.submit, "bad")
    good = eventlet.spawn(group.submit, "ok")
    with pytest.raises(ValueError):
        bad.wait()
    assert good.wait() == "okok"
    assert [type(o) for o in group.submit_many(["bad", 1])] == [ValueError, int]


def test_a_failing_batch_fails_each_of_its_callers_and_the_next_batch_runs():
    calls = []

    def run(requests):
        calls.append(requests)
        if len(calls) == 1:
            raise ConnectionError("database down")
        return requests

    group = GroupCommit(run, linger_s=0)
    outcomes = group.submit_many([1, 2])
    assert [type(o) for o in outcomes] == [ConnectionError, ConnectionError]
    assert group.submit(3) == 3


def test_a_wrong_number_of_outcomes_is_a_failure_not_a_silent_mismatch():
    group = GroupCommit(lambda requests: requests[:1], linger_s=0)
    outcomes = group.submit_many([1, 2])
    assert all(isinstance(o, RuntimeError) for o in outcomes)


def test_pacing_caps_the_batch_rate_under_load_and_never_holds_an_idle_request():
    """pace_s: a batch starts no sooner than pace_s after the previous one
    started, so the requests arriving meanwhile share one batch even when
    the previous batch finished long before; without pacing each goes alone
    as soon as the slot frees. A request at an idle batcher (the previous
    batch started more than pace_s ago) runs at once."""
    def batches(pace_s):
        run = Recorder()
        group = GroupCommit(run, max_batch=100, linger_s=0, pace_s=pace_s)
        assert group.submit_many([0, 1]) == [0, 2]   # idle: runs at once
        started = time.monotonic()
        callers = []
        for n in (2, 3, 4):                          # one by one, each after the slot freed
            callers.append(eventlet.spawn(group.submit, n))
            settle()
        assert [c.wait() for c in callers] == [4, 6, 8]
        waited = time.monotonic() - started
        eventlet.sleep(pace_s)                       # idle again
        before = time.monotonic()
        assert group.submit(5) == 10
        return run.batches, waited, time.monotonic() - before

    paced, waited, idle_wait = batches(pace_s=0.2)
    assert paced == [[0, 1], [2, 3, 4], [5]]
    assert waited >= 0.15 and idle_wait < 0.1
    unpaced, _, _ = batches(pace_s=0)
    assert unpaced == [[0, 1], [2], [3], [4], [5]]


def test_a_client_sending_one_request_after_another_is_not_paced():
    """After a batch of ONE request the next one does not wait for the pace
    (a bot placing its orders one after the other would otherwise wait it
    on every order); after a batch of several it does."""
    run = Recorder()
    group = GroupCommit(run, max_batch=100, linger_s=0, pace_s=5.0)
    started = time.monotonic()
    assert [group.submit(n) for n in (1, 2, 3)] == [2, 4, 6]
    assert time.monotonic() - started < 2.5          # not the 5 s pace, thrice
    assert run.batches == [[1], [2], [3]]
    assert group.submit_many([4, 5]) == [8, 10]      # unpaced too: after a batch of one
    late = eventlet.spawn(group.submit, 6)           # after a batch of two: paced
    settle()
    assert run.batches == [[1], [2], [3], [4, 5]]
    late.kill()
    group.close()


def test_a_paced_batch_starts_as_soon_as_enough_requests_wait():
    """enough: past that size the pace no longer holds a batch (with a bounded
    number of callers, waiting would only cut their rate)."""
    run = Recorder()
    group = GroupCommit(run, max_batch=100, linger_s=0, pace_s=5.0, enough=3)
    assert group.submit_many([0, 1]) == [0, 2]       # idle: at once; the pace starts
    started = time.monotonic()
    callers = []
    for n in (2, 3, 4):                              # the third makes enough
        callers.append(eventlet.spawn(group.submit, n))
        settle()
    assert [c.wait() for c in callers] == [4, 6, 8]
    assert run.batches == [[0, 1], [2, 3, 4]]
    assert time.monotonic() - started < 2.5          # not the 5 s pace
    few = eventlet.spawn(group.submit, 5)            # one alone waits for the pace
    settle()
    assert run.batches == [[0, 1], [2, 3, 4]]
    few.kill()
    group.close()
