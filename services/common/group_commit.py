"""Group commit: concurrent callers in one process share one transaction.

``GroupCommit(run_batch)``: ``submit(request)`` queues the request and parks
the calling greenthread; a serving greenthread runs ``run_batch(requests) ->
outcomes`` (same length and order) on everything queued, up to
``max_batch``, with ``max_in_flight`` batches at a time (1: one batch in
flight, so the next batch gathers what arrives while it runs). A lone
request arriving at an idle batcher waits ``linger_s`` for company.
``pace_s`` (0: none) paces the batches under load: a batch starts no sooner
than ``pace_s`` after the previous batch started (unless it is full), so the
batcher runs at most 1 / ``pace_s`` batches a second whatever the rate, and
the batch size under load has a floor (rate x pace). Without it a batch
starts as soon as a slot is free, so every saving of the stages behind it
turns into smaller batches that cost more per request, and under load the
process keeps the machine busy whatever the rate; with it a saving stays a
saving (bench/README.md, session 14). A request arriving when the previous
batch started more than ``pace_s`` ago does not wait for the pace (only
``linger_s``): a lone trader's order at an idle process is not slowed, and
under load no request waits more than ``pace_s`` for it. Nor does one
arriving after a batch of ONE request: a client sending its orders one after
the other (each after the previous one's answer, as a python-binance or ccxt
bot does) would otherwise wait the pace on every order (30-51 ms each through
the gateway, session 14), while under load the batches hold many requests and
the pace applies. A paced batch also
starts as soon as ``enough`` requests wait (default: ``max_batch``): past
that size a batch costs little less per request, and waiting longer would
only add latency (and, with a bounded number of callers, cut the rate they
reach). An
outcome that is an exception is raised in its own caller only; a
``run_batch`` that raises fails its whole batch (and only it).

Eventlet-only (Nameko services and the gateway both run on it); the serving
greenthread is started with ``spawn`` (a container's managed spawn in a
service, so it dies with the container). Pure otherwise: no I/O of its own.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Callable

import eventlet
from eventlet.event import Event
from eventlet.queue import Empty, Full, LightQueue
from eventlet.semaphore import Semaphore

log = logging.getLogger(__name__)


def run_or_each_alone(run_batch: Callable[[list], list], requests: list,
                      fatal: tuple = ()) -> list:
    """``run_batch(requests)``; if it raises with several requests, each
    request again alone, so one request the batch could not take fails only
    its own caller: its outcome, or its exception as the outcome. ``fatal``
    exceptions (the database out of reach) fail the whole batch at once."""
    try:
        return run_batch(requests)
    except fatal:
        raise
    except Exception:
        if len(requests) == 1:
            raise
        log.exception("a batch of %d requests failed; running them one by one", len(requests))
    outcomes = []
    for request in requests:
        try:
            outcomes.append(run_batch([request])[0])
        except fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - this request's own failure
            outcomes.append(exc)
    return outcomes


class GroupCommit:
    def __init__(self, run_batch: Callable[[list], list], max_batch: int = 200,
                 linger_s: float = 0.002, max_in_flight: int = 1,
                 spawn: Callable = eventlet.spawn, pace_s: float = 0.0,
                 enough: int | None = None):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.pace_s = pace_s
        self.enough = min(enough or max_batch, max_batch)
        # A token when ``enough`` requests wait: it ends a paced wait early.
        self.enough_waiting: LightQueue = LightQueue(maxsize=1)
        self.last_start = float("-inf")   # monotonic time the last batch started
        self.last_size = 0                # and how many requests it held
        self.spawn = spawn
        self.requests: LightQueue = LightQueue()
        self.slots = Semaphore(max_in_flight)
        self.server = None
        # How many batches of each size ran: the bench prints it.
        self.batch_sizes: Counter = Counter()

    def submit(self, request):
        """The request's outcome (raised when it is an exception)."""
        outcome = self.submit_many([request])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def submit_many(self, requests: list) -> list:
        """Several requests of one caller, queued together (so they go in one
        batch when they fit); their outcomes in order, exceptions returned,
        not raised."""
        if self.server is None or self.server.dead:
            self.server = self.spawn(self._serve)
        waiters = []
        for request in requests:
            waiter = Event()
            self.requests.put((request, waiter))
            waiters.append(waiter)
        if self.requests.qsize() + 1 >= self.enough:
            try:
                self.enough_waiting.put_nowait(True)
            except Full:
                pass
        outcomes = []
        for waiter in waiters:
            try:
                outcomes.append(waiter.wait())
            except Exception as exc:  # noqa: BLE001 - handed to the caller as its outcome
                outcomes.append(exc)
        return outcomes

    def close(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server = None

    def _serve(self) -> None:
        while True:
            self.slots.acquire()
            first = self.requests.get()
            paced = (self.last_start + self.pace_s - time.monotonic()
                     if self.last_size > 1 else 0)
            if paced > 0:
                # Under load: the previous batch started less than pace_s
                # ago, and this one gathers until then, or until enough wait.
                try:                          # a token from before this wait is stale
                    self.enough_waiting.get_nowait()
                except Empty:
                    pass
                if self.requests.qsize() + 1 < self.enough:
                    try:
                        self.enough_waiting.get(timeout=paced)
                    except Empty:
                        pass
            elif self.linger_s and self.requests.qsize() == 0:
                # Alone: give the callers arriving with this one a moment to
                # join. Under load the queue fills while the previous batch
                # runs, and no one lingers.
                eventlet.sleep(self.linger_s)
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.requests.get_nowait())
                except Empty:
                    break
            self.last_start = time.monotonic()
            self.last_size = len(batch)
            eventlet.spawn_n(self._run, batch)

    def _run(self, batch: list) -> None:
        try:
            outcomes = self.run_batch([request for request, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"run_batch answered {len(outcomes)} outcomes "
                                   f"for {len(batch)} requests")
        except Exception as exc:  # noqa: BLE001 - every caller of the batch sees it
            outcomes = [exc] * len(batch)
        finally:
            self.slots.release()
            self.batch_sizes[len(batch)] += 1
        for (_, waiter), outcome in zip(batch, outcomes):
            if isinstance(outcome, BaseException):
                waiter.send_exception(outcome)
            else:
                waiter.send(outcome)
