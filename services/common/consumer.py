"""Ordered, batched, at-least-once consumption with one active consumer, and
the one reconnect loop of every long-lived RabbitMQ consumer.

``keep_consuming(consume, running, on_loss, delay_s)`` runs one connection's
life (``consume``) again after each failure until ``running()`` is false;
``BatchConsumer``, the catalogue follower (services/common/catalogue.py), the
gateway's push bridge and API-key cache events (gateway/bridge.py,
gateway/keycache.py) all reconnect through it.

A ``BatchConsumer`` reads a quorum queue with single-active-consumer bound to
an exchange, hands messages to ``handle(batch)`` in publish order, and acks
them only after ``handle`` returned (it commits its own transaction). A crash
anywhere before the ack redelivers the batch, so ``handle`` must be idempotent
by message id. Other processes running the same consumer are hot standbys.
"""
from __future__ import annotations

import logging
import socket
import time
from typing import Callable, Optional

import eventlet
from kombu import Connection, Consumer, Exchange
from nameko.extensions import DependencyProvider

from services.common import logs, metrics
from services.common.events import ENGINE_BATCH
from services.common.outbox import command_queue

log = logging.getLogger(__name__)


def observed(queue: str, handle):
    """``handle`` timed and counted per batch (services.common.metrics); after
    it returned, each message's lag since its event (``executed_at``: the
    settlement and ingest lags) and one trace line with its ids (logs)."""
    if not metrics.enabled():
        return handle
    lag = metrics.EVENT_LAG.labels(queue)
    metrics.consumer_series(queue)

    def observed_handle(batch):
        with metrics.BatchTimer(queue, len(batch)):
            result = handle(batch)
        now_ms = time.time() * 1000
        tracing = logs.TRACE.isEnabledFor(logging.INFO)
        lines = []
        for key, message_id, body in batch:
            if isinstance(body, dict):
                # An engine batch's events were all executed at its ``at``.
                metrics.observe_lag(lag, body.get("executed_at") if "executed_at" in body
                                    else body.get("at") if key.startswith(ENGINE_BATCH_KEYS)
                                    else None, now_ms)
                if tracing:
                    lines += [(f"{queue} handled {key} {part_id}", logs.message_ids(part))
                              for part_id, part in _parts(message_id, body)]
        logs.trace_each(lines)
        return result

    return observed_handle


ENGINE_BATCH_KEYS = f"{ENGINE_BATCH.name}."


def keep_consuming(consume: Callable[[], None], running: Callable[[], bool],
                   on_loss: Optional[Callable[[], None]] = None, delay_s: float = 1.0,
                   what: str = "consumer",
                   sleep: Callable[[float], None] = eventlet.sleep) -> None:
    """Call ``consume`` (one connection's life: it connects, consumes while
    ``running()`` and raises when the connection is lost) again and again
    while ``running()``. Whenever it ends: a failure is logged with its
    traceback (unless stopping), ``on_loss()`` resets what held only while
    connected (``active``, a cache's liveness), and ``delay_s`` seconds pass
    before the next connection, so a broker that is down is not hammered.
    ``sleep``: ``eventlet.sleep`` in a green thread, ``time.sleep`` in a
    plain one."""
    while running():
        try:
            consume()
        except Exception:
            if running():
                log.error("%s failed; reconnecting in %.1f s", what, delay_s, exc_info=True)
        if on_loss is not None:
            on_loss()
        if running():
            sleep(delay_s)


def _parts(message_id, body: dict):
    """``(id, body)`` of each event or command a message carries, for the
    trace: one line per order's step, whether it travelled alone or in a
    batch (an engine batch's events, a command batch's commands)."""
    events, commands = body.get("events"), body.get("commands")
    if isinstance(events, list):
        return [(event[1], event[2]) for event in events
                if isinstance(event, list) and len(event) == 3]
    if isinstance(commands, list):
        return [(command.get("id"), {"command": command.get("command")}) for command in commands
                if isinstance(command, dict)]
    return [(message_id, body)]


def drain_while(amqp, running: Callable[[], bool], timeout: float = 1.0,
                on_wake: Optional[Callable[[], None]] = None) -> None:
    """Deliver a kombu connection's messages to its consumers' callbacks
    while ``running()``, waking at least every ``timeout`` s to look. Each
    wake sends the heartbeats py-amqp owes: it sends them only when asked,
    and an idle consumer would otherwise be dropped by the broker. ``on_wake``
    runs at each wake too, in this green thread: what must use the
    connection (acks) and is decided elsewhere."""
    while running():
        amqp.heartbeat_check()
        if on_wake is not None:
            on_wake()
        try:
            amqp.drain_events(timeout=timeout)
        except socket.timeout:
            continue


class BatchConsumer:
    def __init__(self, amqp_uri: str, queue: str, exchange: str | None, routing_keys: list[str],
                 handle, batch: int = 200, idle=None, idle_every: float = 0.5):
        """``exchange`` None: the queue is fed directly (default exchange), not bound.
        ``idle`` is called whenever nothing arrived for ``idle_every`` seconds."""
        self.amqp_uri = amqp_uri
        self.queue_name = queue
        self.exchange = None if exchange is None else Exchange(exchange, type="topic", durable=True)
        self.routing_keys = routing_keys
        self.handle = observed(queue, handle)
        self.batch = batch
        self.idle = idle
        self.idle_every = idle_every
        self.running = True
        self.active = False
        self.handled = 0

    def run(self) -> None:
        keep_consuming(self._consume, lambda: self.running, self._lost, delay_s=0.5,
                       what=f"consumer {self.queue_name}")

    def _lost(self) -> None:
        self.active = False

    def _declare(self, channel):
        """The quorum queue, bound to the exchange's routing keys if fed by one."""
        queue = command_queue(self.queue_name)(channel)
        queue.declare()
        if self.exchange is not None:
            self.exchange(channel).declare()
            for key in self.routing_keys:
                queue.bind_to(self.exchange, routing_key=key)
        return queue

    def _consume(self) -> None:
        buffer: list = []
        with Connection(self.amqp_uri, heartbeat=10) as amqp:
            channel = amqp.channel()
            channel.basic_qos(0, self.batch, False)
            queue = self._declare(channel)
            on_message = lambda body, message: buffer.append((body, message))  # noqa: E731
            with Consumer(channel, [queue], callbacks=[on_message], accept=["json"]):
                while self.running:
                    # py-amqp sends heartbeats only when asked: an idle standby
                    # would otherwise be dropped by the broker every ~20 s.
                    amqp.heartbeat_check()
                    try:
                        amqp.drain_events(timeout=self.idle_every)
                    except socket.timeout:
                        if self.idle is not None:
                            self.idle()
                        continue
                    while len(buffer) < self.batch:
                        try:
                            amqp.drain_events(timeout=0)
                        except socket.timeout:
                            break
                    self.active = True
                    batch, buffer[:] = buffer[:], []
                    self.handle([(m.delivery_info["routing_key"], m.properties.get("message_id"), body)
                                 for body, m in batch])
                    channel.basic_ack(batch[-1][1].delivery_tag, multiple=True)
                    self.handled += len(batch)


class BatchConsumerProvider(DependencyProvider):
    """Runs a BatchConsumer for the container's lifetime. Subclasses give the
    queue, exchange and keys, and implement ``handle(batch)``."""

    queue: str
    exchange: str
    routing_keys: list[str]
    batch = 200

    def setup_consumer(self) -> None:
        """Open what ``handle`` needs (pools); called in ``setup``."""

    def handle(self, batch) -> None:
        raise NotImplementedError

    def setup(self):
        self.setup_consumer()
        self.consumer = BatchConsumer(self.container.config["AMQP_URI"], self.queue,
                                      self.exchange, self.routing_keys, self.handle, self.batch)

    def start(self):
        self.thread = self.container.spawn_managed_thread(self.consumer.run)

    def stop(self):
        self.consumer.running = False
        self.thread.kill()

    kill = stop

    def get_dependency(self, worker_ctx):
        return self.consumer
