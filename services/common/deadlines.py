"""Deadlines: work whose caller has given up is refused, not done late.

Every RPC carries ``deadline_ms`` (epoch milliseconds) in Nameko's context
data: the gateway sets it per request, an RPC caller may set it
(``ClusterRpcProxy(config, context_data={"deadline_ms": ...})``), and a call
that arrives without one gets ``now + DEFAULT_BUDGET_MS``. Context data
travels on with every call a worker makes, so the whole chain of calls works
to the first caller's deadline.

* ``rpc`` -- Nameko's ``rpc`` entrypoint that refuses an expired request
  with ``REQUEST_EXPIRED`` before a worker exists (so nothing of it runs);
  services use it instead of ``nameko.rpc.rpc``. The refusal happens in the
  entrypoint rather than in a DependencyProvider's ``worker_setup``, because
  an exception there escapes Nameko's worker and kills the container.
* ``Deadline`` -- the DependencyProvider that tells a worker how much time its
  request has left (``remaining_s()``) and refuses when none is left
  (``check()``, for work that waited, e.g. for a lock).
* ``TimedRpcProxy`` -- ``RpcProxy`` whose calls wait at most the request's
  remaining time, and at most ``timeout_s``: no call between services waits
  without a bound. A call that runs out raises ``Unavailable``
  (``UPSTREAM_TIMEOUT``); its late reply is dropped.
"""
from __future__ import annotations

import sys
import time

import eventlet
from nameko.extensions import DependencyProvider
from nameko.rpc import MethodProxy, Rpc, RpcProxy, ServiceProxy

from services.common.errors import CodedError, RequestExpired, Unavailable
from services.common.grammar import may_decode_to_unstorable, storable
from services.common.queues import RequestQueueConsumer

DEADLINE_CONTEXT_KEY = "deadline_ms"
DEFAULT_BUDGET_MS = 30_000
DEFAULT_CALL_TIMEOUT_S = 10.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def deadline_of(data: dict, now: int) -> int:
    """The request's deadline: the caller's, when it is an int; the default
    budget from ``now`` otherwise (a malformed value is not trusted to
    shorten or lengthen anything)."""
    value = data.get(DEADLINE_CONTEXT_KEY)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2 ** 63:
        return value
    return now + DEFAULT_BUDGET_MS


def refuse_if_expired(deadline_ms: int, now: int, what: str = "the request") -> None:
    if now >= deadline_ms:
        raise RequestExpired(message=f"{what}'s deadline passed {now - deadline_ms} ms ago; "
                                     "nothing was done", field=DEADLINE_CONTEXT_KEY)


class DeadlineRpc(Rpc):
    """``rpc`` that refuses an expired request before any of it runs, and
    writes the deadline into the worker's context data when the caller gave
    none (so the calls the worker makes carry it)."""

    # Declares rpc-<service> with the configured queue type (services/common/queues.py).
    rpc_consumer = RequestQueueConsumer()

    def __init__(self, expected_exceptions=(), **kwargs):
        # Every coded refusal is the caller's to handle -- including one from
        # a call this worker made (UPSTREAM_TIMEOUT): logged as expected, not
        # with a traceback as a bug.
        if not isinstance(expected_exceptions, tuple):
            expected_exceptions = (expected_exceptions,)
        if CodedError not in expected_exceptions:
            expected_exceptions = (*expected_exceptions, CodedError)
        super().__init__(expected_exceptions=expected_exceptions, **kwargs)

    def handle_result(self, message, worker_ctx, result, exc_info):
        # A service's own validation refuses bad text with its own code and
        # field; what it let through and then failed on (NUL or a lone
        # surrogate reaching PostgreSQL, a UTF-8 log line or Keycloak: an
        # uncoded UnicodeEncodeError or database error) is answered as the
        # caller's INVALID_TEXT, not as the service's failure.
        if exc_info is not None and not isinstance(exc_info[1], CodedError) \
                and may_decode_to_unstorable(message.body):
            try:
                for index, value in enumerate(worker_ctx.args):
                    storable(value, f"argument {index + 1}")
                for name, value in worker_ctx.kwargs.items():
                    storable(value, name)
            except CodedError:
                exc_info = sys.exc_info()
        return super().handle_result(message, worker_ctx, result, exc_info)

    def unpack_message_headers(self, message):
        data = super().unpack_message_headers(message)
        now = now_ms()
        deadline = deadline_of(data, now)
        refuse_if_expired(deadline, now, f"{self.container.service_name}.{self.method_name}")
        data[DEADLINE_CONTEXT_KEY] = deadline
        return data


rpc = DeadlineRpc.decorator


class Budget:
    """What the worker's request has left."""

    def __init__(self, worker_ctx):
        self.worker_ctx = worker_ctx

    @property
    def deadline_ms(self) -> int:
        return deadline_of(self.worker_ctx.data, now_ms())

    def remaining_s(self) -> float:
        return max(0.0, (self.deadline_ms - now_ms()) / 1000)

    def check(self, what: str = "the request") -> None:
        refuse_if_expired(self.deadline_ms, now_ms(), what)


class Deadline(DependencyProvider):
    def get_dependency(self, worker_ctx):
        return Budget(worker_ctx)


class _TimedMethodProxy(MethodProxy):
    def __init__(self, *args, timeout_s: float, **options):
        super().__init__(*args, **options)
        self.timeout_s = timeout_s

    def __call__(self, *args, **kwargs):
        budget = Budget(self.worker_ctx)
        wait_s = min(self.timeout_s, budget.remaining_s())
        name = f"{self.service_name}.{self.method_name}"
        if wait_s <= 0:
            budget.check(name)
        reply = self._call(*args, **kwargs)
        try:
            with eventlet.Timeout(wait_s):
                return reply.result()
        except eventlet.Timeout:
            raise Unavailable("UPSTREAM_TIMEOUT",
                              f"{name} did not answer within {wait_s:.3f} s") from None


class _TimedServiceProxy(ServiceProxy):
    def __getattr__(self, name):
        return _TimedMethodProxy(self.worker_ctx, self.service_name, name, self.reply_listener,
                                 timeout_s=self.timeout_s, **self.options)


class TimedRpcProxy(RpcProxy):
    """``RpcProxy(target)`` whose every call is bounded (see the module)."""

    def __init__(self, target_service, timeout_s: float = DEFAULT_CALL_TIMEOUT_S, **options):
        super().__init__(target_service, **options)
        self.timeout_s = timeout_s

    def get_dependency(self, worker_ctx):
        proxy = _TimedServiceProxy(worker_ctx, self.target_service, self.rpc_reply_listener,
                                   **self.options)
        proxy.timeout_s = self.timeout_s
        return proxy
