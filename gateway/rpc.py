"""Pooled, long-lived Nameko RPC proxies for the gateway.

A ``ClusterRpcProxy`` owns an AMQP connection and a reply queue; setting one
up costs several broker round trips, so the gateway keeps a pool of started
proxies and lends one to a request for the length of its calls. A proxy is
used by one greenlet at a time (its reply consumer polls a single queue).

Every call carries the request's deadline and id in Nameko's context data
(``deadline_ms``: epoch milliseconds; ``request_id``), so a service can
refuse work that its caller has already given up on, and so its logs carry
the id the client saw. The proxy waits for the reply at most until the
deadline.

A proxy whose call failed at the transport level (connection lost, reply
timeout) is discarded: its reply queue may still receive the late answer.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import time

import eventlet
from eventlet.queue import LightQueue
import amqp.exceptions
import kombu.exceptions
from nameko.exceptions import RpcTimeout
from nameko.standalone.rpc import ClusterRpcProxy


log = logging.getLogger(__name__)

DEFAULT_DEADLINE_S = 10.0
COLLECT_AFTER_FAILED_START_S = 1.0
TRANSPORT_FAILURES = (RpcTimeout, OSError, amqp.exceptions.ConnectionError,
                      kombu.exceptions.OperationalError)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class RpcPool:
    """At most ``size`` started proxies, created on demand and reused."""

    def __init__(self, nameko_config: dict, size: int = 32,
                 default_deadline_s: float = DEFAULT_DEADLINE_S):
        self.config = nameko_config
        self.size = size
        self.default_deadline_s = default_deadline_s
        self._idle: LightQueue = LightQueue()
        self._created = 0
        self._slots = eventlet.semaphore.Semaphore(size)
        self._collect_pending = False

    def _new_proxy(self, deadline_ms: int) -> ClusterRpcProxy:
        """A started proxy, or RpcTimeout at the deadline: connecting to a
        broker that accepts the socket but does not answer (a node hung while
        starting, a half-open connection) took amqp's own 12 s and more,
        whatever the request had left."""
        proxy = ClusterRpcProxy(self.config, context_data={}, timeout=self.default_deadline_s)
        wait_s = max(0.05, (deadline_ms - now_ms()) / 1000)
        try:
            with eventlet.Timeout(wait_s, RpcTimeout(wait_s)):
                proxy.start()
        except BaseException:
            # Half started: its connection is closed in the background, so a
            # close that hangs too costs this request nothing.
            eventlet.spawn_n(self._stop_half_started, proxy)
            raise
        self._created += 1
        return proxy

    def _take(self):
        try:
            return self._idle.get_nowait()
        except eventlet.queue.Empty:
            return None

    @contextlib.contextmanager
    def lease(self, deadline_ms: int | None = None, request_id: str | None = None):
        """``with pool.lease(deadline_ms, request_id) as rpc: rpc.orders.get_order(...)``.

        Raises ``nameko.exceptions.RpcTimeout`` when the deadline passes before
        a reply (or before a proxy is free)."""
        deadline_ms = deadline_ms or now_ms() + int(self.default_deadline_s * 1000)
        wait_s = max(0.0, (deadline_ms - now_ms()) / 1000)
        if not self._slots.acquire(timeout=wait_s):
            raise RpcTimeout(wait_s)
        proxy, healthy = None, True
        try:
            proxy = self._take() or self._new_proxy(deadline_ms)
            proxy._worker_ctx.data.clear()
            proxy._worker_ctx.data.update({"deadline_ms": deadline_ms,
                                           **({"request_id": request_id} if request_id else {})})
            # The reply wait is bounded by what is left of the deadline.
            proxy._reply_listener.queue_consumer.timeout = \
                max(0.05, (deadline_ms - now_ms()) / 1000)
            try:
                yield proxy._proxy  # the started ClusterProxy: services.<name>.<method>
            except TRANSPORT_FAILURES:
                # A late reply may still arrive on this proxy's queue, or its
                # connection is gone: never lend it again.
                healthy = False
                raise
            except BaseException:
                healthy = False
                raise
        finally:
            if proxy is not None:
                if healthy:
                    self._idle.put(proxy)
                else:
                    self._discard(proxy)
            self._slots.release()

    def _discard(self, proxy: ClusterRpcProxy) -> None:
        self._created -= 1
        self._stop_quietly(proxy)

    @staticmethod
    def _stop_quietly(proxy: ClusterRpcProxy) -> None:
        # Its own timeout only (False: it ends the block, raises nothing), so
        # a caller's timeout firing meanwhile is not swallowed here.
        try:
            with eventlet.Timeout(DEFAULT_DEADLINE_S, False):
                proxy.stop()
        except Exception:  # a broken connection may fail to close: dropped either way
            log.debug("closing an RPC proxy failed", exc_info=True)

    def _stop_half_started(self, proxy: ClusterRpcProxy) -> None:
        self._stop_quietly(proxy)
        # A half-started proxy's socket stays open in a reference cycle that
        # stop() does not break; only the cyclic collector frees it, and the
        # gateway collects rarely (gateway/collector.py). Against a broker
        # that hangs, every request would leave one more descriptor open. One
        # full collection a second at most frees them all: not one per
        # failed request, which would stall the hub while every request fails.
        if not self._collect_pending:
            self._collect_pending = True
            eventlet.spawn_after(COLLECT_AFTER_FAILED_START_S, self._collect)

    def _collect(self) -> None:
        self._collect_pending = False
        gc.collect()

    def close(self) -> None:
        while True:
            proxy = self._take()
            if proxy is None:
                return
            self._discard(proxy)
