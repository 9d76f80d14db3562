"""Group commit: concurrent calls share database transactions (used by the
ledger's hold / release, services.wallets.movements)."""
from __future__ import annotations

from typing import Callable

import eventlet
from eventlet.event import Event
from eventlet.queue import Empty, LightQueue
from eventlet.semaphore import Semaphore


class GroupCommit:
    """Concurrent calls share database transactions (group commit).

    ``submit(request)`` queues the request and waits; a serving greenthread
    takes everything queued (up to ``max_batch``) as one batch and runs
    ``run_batch(requests) -> outcomes`` with at most ``max_in_flight``
    batches at a time. While those run, new requests queue up, so the batch
    size follows the load: one request alone when idle, many under
    concurrency. An outcome that is an exception is raised in its caller only.
    """

    def __init__(self, run_batch: Callable[[list], list], max_batch: int = 200,
                 max_in_flight: int = 2):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.requests: LightQueue = LightQueue()
        self.slots = Semaphore(max_in_flight)
        self.server = None

    def submit(self, request):
        if self.server is None or self.server.dead:
            self.server = eventlet.spawn(self._serve)
        waiter = Event()
        self.requests.put((request, waiter))
        return waiter.wait()

    def close(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server = None

    def _serve(self) -> None:
        while True:
            self.slots.acquire()
            batch = [self.requests.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.requests.get_nowait())
                except Empty:
                    break
            eventlet.spawn_n(self._run, batch)

    def _run(self, batch: list) -> None:
        try:
            outcomes = self.run_batch([request for request, _ in batch])
        except Exception as exc:  # a bug: every caller of the batch sees it
            outcomes = [exc] * len(batch)
        finally:
            self.slots.release()
        for (_, waiter), outcome in zip(batch, outcomes):
            if isinstance(outcome, BaseException):
                waiter.send_exception(outcome)
            else:
                waiter.send(outcome)
