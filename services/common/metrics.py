"""Prometheus metrics of every process: Nameko entrypoints, queue consumers,
the gateway's HTTP routes, and the figures the exchange itself keeps.

One registry per process (prometheus_client's default, which also carries the
process collector: CPU, memory, open files). Each process serves it at
``/metrics`` on its own port, 127.0.0.1 only:

- a Nameko service: ``metrics = ServiceMetrics()`` in the service class. It
  times every entrypoint (RPC, event handler, timer) by name, counts errors by
  their stable code (``services.common.errors.code_of``), and at scrape time
  reads what the container's long-lived providers know (outbox relays, engine
  books, queue consumers). The port comes from the container config
  ``METRICS_PORT`` or the environment's ``EXCHANGE_METRICS_PORT`` (set per
  process by the stack, ``config/defaults.env``); without either, nothing
  listens (tests starting services in-process); ``0`` picks a free port.
- the gateway: ``instrument_flask(app)``.

Series names start with ``exchange_``; labels stay few and bounded (entrypoint,
kind, code, market, stream, queue, route), never user or order ids. Which
service a series comes from is the scrape target's ``service`` label
(monitoring/prometheus.yml, one process per service), on every series, ``up``
and ``process_*`` too. The processes set it as well until 2026-12-07, and
Prometheus kept the target's and renamed theirs ``exported_service``: the
same value twice on each series.
The SQL-derived figures that must be visible while their service is down
(outbox backlog, settlement lag, parked events) come from the PostgreSQL
exporter's queries (monitoring/postgres-queries.yml), not from here.
"""
from __future__ import annotations

import errno
import logging
import os
import time
import weakref

from nameko.extensions import DependencyProvider
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from services.common.errors import code_of

log = logging.getLogger(__name__)

# Latency buckets from 0.5 ms to 10 s: RPCs of the order path take 2-50 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)

# ---------------------------------------------------------------- series

ENTRYPOINT_DURATION = Histogram(
    "exchange_entrypoint_duration_seconds",
    "Time from a worker's start to its result, per Nameko entrypoint.",
    ["entrypoint", "kind"], buckets=LATENCY_BUCKETS)
ENTRYPOINT_ERRORS = Counter(
    "exchange_entrypoint_errors_total",
    "Entrypoint calls that raised, by the error's stable code (UNEXPECTED: no code).",
    ["entrypoint", "kind", "code"])
BATCH_DURATION = Histogram(
    "exchange_consumer_batch_duration_seconds",
    "Time a queue consumer's handle() took for one batch (engine commands, "
    "settlement, market-data ingest, order events).",
    ["queue"], buckets=LATENCY_BUCKETS)
BATCH_MESSAGES = Counter(
    "exchange_consumer_messages_total", "Messages a queue consumer handled.", ["queue"])
BATCH_ERRORS = Counter(
    "exchange_consumer_batch_errors_total", "Batches whose handle() raised.", ["queue"])
HTTP_DURATION = Histogram(
    "exchange_http_request_duration_seconds", "Gateway HTTP requests, per route.",
    ["route", "method"], buckets=LATENCY_BUCKETS)
HTTP_RESPONSES = Counter(
    "exchange_http_responses_total", "Gateway HTTP responses by status and error code.",
    ["route", "method", "status", "code"])
SOCKET_CONNECTIONS = Gauge(
    "exchange_socketio_connections", "Socket.IO clients connected to this gateway.")
SOCKET_DROPPED = Counter(
    "exchange_socketio_dropped_total", "Socket.IO clients dropped for being too slow.")
CONNECTION_REFUSALS = Counter(
    "exchange_gateway_connection_refusals_total",
    "Connections and Socket.IO connection attempts refused by the per-address limits "
    "(gateway/connection_limits.py): open (over the open connections' cap, answered 429), "
    "dropped (over it while too many refusals were under way: closed unanswered), "
    "attempts (over the Socket.IO connection attempts' limit).", ["limit"])
RATE_LIMIT_REFUSALS = Counter(
    "exchange_rate_limit_refusals_total", "Requests refused by the rate limiter.", ["limit"])
# The audit's series exist only in the process that audits (wallets): created
# at its first result, so no other process exports a never-run audit.
AUDIT_MISMATCHES = Gauge(
    "exchange_ledger_audit_findings",
    "Findings of the last periodic ledger audit (0: every invariant holds).", registry=None)
AUDIT_TIMESTAMP = Gauge(
    "exchange_ledger_audit_timestamp_seconds", "When the last ledger audit finished (unix time).",
    registry=None)
AUDIT_FAILURES = Counter(
    "exchange_ledger_audit_failures_total", "Periodic ledger audits that could not run.")
EVENT_LAG = Histogram(
    "exchange_event_lag_seconds",
    "From a trade's execution (executed_at) to a consumer having handled it: "
    "settlement lag on wallets.settlement, ingest lag on market data's queue.",
    ["queue"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
CACHE_LOOKUPS = Counter(
    "exchange_marketdata_cache_lookups_total", "Hot-cache reads by result (hit, miss).",
    ["kind", "result"])


_CACHE_CHILDREN: dict = {}


def count_cache_lookups(kind: str, hits: int, misses: int) -> None:
    children = _CACHE_CHILDREN.get(kind)
    if children is None:
        children = _CACHE_CHILDREN[kind] = (CACHE_LOOKUPS.labels(kind, "hit"),
                                            CACHE_LOOKUPS.labels(kind, "miss"))
    if hits:
        children[0].inc(hits)
    if misses:
        children[1].inc(misses)


def record_audit(findings: int, now: float | None = None) -> None:
    if not getattr(record_audit, "registered", False):
        REGISTRY.register(AUDIT_MISMATCHES)
        REGISTRY.register(AUDIT_TIMESTAMP)
        record_audit.registered = True
    AUDIT_MISMATCHES.set(findings)
    AUDIT_TIMESTAMP.set(time.time() if now is None else now)


def observe_lag(histogram: Histogram, executed_at_ms, now_ms: float | None = None) -> None:
    """Observe ``now - executed_at`` in seconds (ignores a missing or future time)."""
    if not isinstance(executed_at_ms, (int, float)) or isinstance(executed_at_ms, bool):
        return
    lag = ((time.time() * 1000 if now_ms is None else now_ms) - executed_at_ms) / 1000
    if lag >= 0:
        histogram.observe(lag)


def consumer_series(queue: str) -> tuple:
    """The queue's batch duration, message and error series, created at 0 when
    its consumer is set up: a series first created by the first batch left an
    idle or stuck consumer as no data (exchange:consumer_messages:rate1m, the
    dashboard's messages per queue), and rate() never counts a counter's
    first sample."""
    children = BatchTimer._children.get(queue)
    if children is None:
        children = BatchTimer._children[queue] = (BATCH_DURATION.labels(queue),
                                                  BATCH_MESSAGES.labels(queue),
                                                  BATCH_ERRORS.labels(queue))
    return children


class BatchTimer:
    """``with BatchTimer(queue, n):`` around a consumer's handle()."""

    __slots__ = ("duration", "messages", "errors", "n", "started")

    _children: dict = {}

    def __init__(self, queue: str, n: int):
        self.duration, self.messages, self.errors = consumer_series(queue)
        self.n = n

    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.duration.observe(time.perf_counter() - self.started)
        if exc_type is None:
            self.messages.inc(self.n)
        else:
            self.errors.inc()
        return False


# ---------------------------------------------------------------- serving

def serve(port: int, host: str = "127.0.0.1", spawn=None):
    """Serve the registry at ``/metrics`` on an eventlet WSGI server; returns
    ``(listening socket, greenthread)``. ``spawn`` runs the server loop
    (a container's managed-thread spawner, or eventlet.spawn)."""
    import eventlet
    import eventlet.wsgi

    sock = eventlet.listen((host, port))
    app = make_wsgi_app(REGISTRY)

    def only_metrics(environ, start_response):
        if environ.get("PATH_INFO") not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: /metrics\n"]
        return app(environ, start_response)

    def run():
        eventlet.wsgi.server(sock, only_metrics, log_output=False, max_size=8,
                             socket_timeout=10)

    thread = (spawn or eventlet.spawn)(run)
    return sock, thread


def serve_when_free(port: int, host: str, spawn, bound) -> None:
    """``serve`` now, or, while the port is in use, from a green thread that
    tries again every second; ``bound(sock, thread)`` is called once serving.
    Another process may hold the port for a while (a CI run's users service
    died of it at start, when our fixed ports still lay in Linux's ephemeral
    range, 32768-60999, where outgoing connections take theirs). Metrics are not worth the process: it
    runs, and Prometheus reports the target down meanwhile."""
    import eventlet

    def attempt() -> bool:
        try:
            bound(*serve(port, host, spawn))
            return True
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False

    def retry():
        while not attempt():
            eventlet.sleep(1.0)

    if not attempt():
        log.warning("metrics port %s:%s in use; retrying every second", host, port)
        (spawn or eventlet.spawn)(retry)


def enabled() -> bool:
    """EXCHANGE_METRICS=off turns the per-call timing off (to measure its cost:
    bench/orders_bench.py with metrics on and off)."""
    return os.environ.get("EXCHANGE_METRICS", "on") != "off"


def configured_port(config: dict | None = None) -> int | None:
    """This process's metrics port: container config METRICS_PORT, else
    EXCHANGE_METRICS_PORT from the environment; None: do not serve."""
    value = (config or {}).get("METRICS_PORT")
    if value is None:
        value = os.environ.get("EXCHANGE_METRICS_PORT")
    if value in (None, "", "off"):
        return None
    return int(value)


# ---------------------------------------------------------------- Nameko

_KINDS = (("nameko.rpc", "Rpc", "rpc"), ("nameko.events", "EventHandler", "event"),
          ("nameko.timer", "Timer", "timer"))


def entrypoint_kind(entrypoint) -> str:
    for module, name, kind in _KINDS:
        for cls in type(entrypoint).__mro__:
            if cls.__name__ == name and cls.__module__.startswith(module):
                return kind
    return type(entrypoint).__name__.lower()


class _ProviderCollector:
    """At scrape time: what the live containers' providers know. Duck-typed,
    so a provider renamed or reshaped only loses its series, never the scrape."""

    def __init__(self):
        # The ServiceMetrics of the live containers (a container is only
        # reachable through its extensions' weak proxies).
        self.owners: weakref.WeakSet = weakref.WeakSet()

    def describe(self):
        return []

    def collect(self):
        from services.common.consumer import BatchConsumerProvider
        from services.common.outbox import OutboxRelay

        # A counter, exposed as exchange_outbox_published_total: the relay's
        # count only grows and starts again at 0 with its process, so rate()
        # and increase() read it right (a restart is a counter reset to them).
        published = CounterMetricFamily("exchange_outbox_published",
                                        "Rows this process's relay published since start.",
                                        labels=["stream"])
        relay_active = GaugeMetricFamily("exchange_outbox_relay_active",
                                         "1 when this process holds the stream's relay lock.",
                                         labels=["stream"])
        # "active" is what a process can know: RabbitMQ's single active
        # consumer is whichever receives the deliveries, so 0 also on the
        # active one until its first delivery since it (re)connected.
        consumer_active = GaugeMetricFamily(
            "exchange_consumer_active",
            "1 once this process has received the queue's deliveries (the single active "
            "consumer); 0 on a standby and until the first delivery.",
            labels=["queue"])
        book_orders = GaugeMetricFamily("exchange_engine_book_orders",
                                        "Orders resting in the engine's book.",
                                        labels=["market"])
        book_levels = GaugeMetricFamily("exchange_engine_book_levels",
                                        "Price levels in the engine's book, per side.",
                                        labels=["market", "side"])
        engine_seq = GaugeMetricFamily("exchange_engine_seq",
                                       "The engine's last applied command sequence.",
                                       labels=["market"])
        # A standby replays the journal every 0.25 s (services/matching/
        # providers.py, MarketHost.keep_warm); a failover to it replays what
        # it lags first, and the market waits meanwhile.
        journal_lag = GaugeMetricFamily(
            "exchange_engine_journal_lag_entries",
            "Journal entries this process's engine was behind the journal's head at its last "
            "read of the journal (a standby's replay, a batch's catch-up): what a failover to "
            "it must replay first.",
            labels=["market"])
        engine_active = GaugeMetricFamily("exchange_engine_active",
                                          "1 once this process's engine has received the market's "
                                          "commands (the active one); 0 on a standby and until "
                                          "the first command.",
                                          labels=["market"])
        for owner in list(self.owners):
            container = owner.container
            for provider in list(container.dependencies):
                try:
                    if isinstance(provider, OutboxRelay) and hasattr(provider, "relay"):
                        relay = provider.relay
                        published.add_metric([relay.stream], relay.published)
                        relay_active.add_metric([relay.stream], int(relay.active))
                    elif isinstance(provider, BatchConsumerProvider) and hasattr(provider, "consumer"):
                        consumer = provider.consumer
                        consumer_active.add_metric([consumer.queue_name],
                                                   int(bool(consumer.active)))
                    hosts = getattr(provider, "hosts", None)
                    if isinstance(hosts, dict):
                        for market, host in list(hosts.items()):
                            engine_active.add_metric([market], int(bool(getattr(host, "active", 0))))
                            lag = getattr(host, "journal_lag", None)
                            if lag is not None:  # also while its engine is being rebuilt
                                journal_lag.add_metric([market], lag)
                            engine = getattr(host, "engine", None)
                            if engine is None:
                                continue
                            book = engine.book
                            book_orders.add_metric([market], len(book.orders))
                            book_levels.add_metric([market, "buy"], len(book.levels[0]))
                            book_levels.add_metric([market, "sell"], len(book.levels[1]))
                            engine_seq.add_metric([market], engine.seq)
                except Exception:  # a scrape never fails for one provider
                    log.debug("metrics of %r skipped", provider, exc_info=True)
        return [published, relay_active, consumer_active, book_orders, book_levels, engine_seq,
                engine_active, journal_lag]


PROVIDERS = _ProviderCollector()
REGISTRY.register(PROVIDERS)


class Metrics:
    """What a worker gets: verbs for the figures a service records itself."""

    record_audit = staticmethod(record_audit)

    def audit_failed(self) -> None:
        AUDIT_FAILURES.inc()


class ServiceMetrics(DependencyProvider):
    """Times every entrypoint of the service and serves ``/metrics``; also
    tracks the current worker for the JSON logs (services.common.logs)."""

    def __init__(self, port: int | None = None):
        self.port_override = port
        self.port: int | None = None

    def setup(self):
        from services.common import logs
        self.service = self.container.service_name
        self.started: dict = {}
        self.children: dict = {}
        self.sock = self.thread = None
        self.enabled = enabled()
        logs.install_for_process(self.service)
        PROVIDERS.owners.add(self)

    def start(self):
        port = self.port_override if self.port_override is not None \
            else configured_port(self.container.config)
        if port is None:
            return
        host = os.environ.get("EXCHANGE_BIND_HOST", "127.0.0.1")

        def bound(sock, thread):
            self.sock, self.thread = sock, thread
            self.port = sock.getsockname()[1]
            log.info("metrics of %s at http://%s:%s/metrics", self.service, host, self.port)
        serve_when_free(port, host, self.container.spawn_managed_thread, bound)

    def stop(self):
        PROVIDERS.owners.discard(self)
        if self.thread is not None:
            self.thread.kill()
            self.thread = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    kill = stop

    def get_dependency(self, worker_ctx):
        return Metrics()

    def _children(self, entrypoint):
        name = entrypoint.method_name
        found = self.children.get(name)
        if found is None:
            kind = entrypoint_kind(entrypoint)
            found = self.children[name] = (
                ENTRYPOINT_DURATION.labels(name, kind), kind)
        return found

    def worker_setup(self, worker_ctx):
        if not self.enabled:
            return
        from services.common import logs
        logs.enter_worker(worker_ctx)
        self.started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self.started.pop(worker_ctx, None)
        if started is None:
            return
        duration, kind = self._children(worker_ctx.entrypoint)
        duration.observe(time.perf_counter() - started)
        code = None
        if exc_info is not None:
            code = code_of(exc_info[1]) or "UNEXPECTED"
            ENTRYPOINT_ERRORS.labels(worker_ctx.entrypoint.method_name, kind, code).inc()
        if kind in ("rpc", "event") and worker_ctx.entrypoint.method_name != "health":
            self._trace(worker_ctx, kind, result, code, time.perf_counter() - started)

    def _trace(self, worker_ctx, kind, result, code, seconds) -> None:
        from services.common import logs
        if not logs.TRACE.isEnabledFor(logging.INFO):
            return
        ids = logs.message_ids(result)
        for value in (worker_ctx.kwargs, *worker_ctx.args[:1]):
            for key, found in logs.message_ids(value).items():
                ids.setdefault(key, found)
        logs.trace("%s %s.%s %s %.1f ms", kind, self.service, worker_ctx.entrypoint.method_name,
                   code or "ok", seconds * 1000, ids=ids, at=time.time() - seconds)

    def worker_teardown(self, worker_ctx):
        if not self.enabled:
            return
        from services.common import logs
        self.started.pop(worker_ctx, None)
        logs.leave_worker(worker_ctx)


# ---------------------------------------------------------------- Flask

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def instrument_flask(app, port: int | None = None) -> None:
    """Time every request of ``app`` by route and count responses by status
    and error code (the JSON body's ``code``); serve ``/metrics`` on the
    gateway's metrics port (EXCHANGE_METRICS_PORT) when one is configured."""
    from flask import g, request

    from services.common import logs
    logs.install_for_process("gateway")

    @app.before_request
    def _metrics_start():
        g._metrics_started = time.perf_counter()

    @app.after_request
    def _metrics_observe(response):
        started = getattr(g, "_metrics_started", None)
        if started is None:
            return response
        rule = request.url_rule
        route = rule.rule if rule is not None else "unmatched"
        # Werkzeug passes any method token through: one a client invents is
        # "OTHER", or every new one would be a new set of series.
        method = request.method if request.method in HTTP_METHODS else "OTHER"
        HTTP_DURATION.labels(route, method).observe(time.perf_counter() - started)
        code = ""
        if response.status_code >= 400:
            # The app's native code (g.error_code, set by gateway.app's error
            # response): a Binance body's code is Binance's number, which
            # does not say whether a service or the gateway failed.
            candidate = g.get("error_code")
            if candidate is None and response.is_json:
                body = response.get_json(silent=True)
                error = body.get("error", body) if isinstance(body, dict) else None
                candidate = error.get("code") if isinstance(error, dict) else None
            code = candidate if isinstance(candidate, str) and len(candidate) <= 64 else ""
        HTTP_RESPONSES.labels(route, method, str(response.status_code), code).inc()
        if logs.TRACE.isEnabledFor(logging.INFO) and route != "/health":
            ids = {"request_id": getattr(g, "request_id", None)}
            if response.is_json and request.method != "GET" and response.status_code < 400:
                ids.update(logs.message_ids(response.get_json(silent=True)))
            seconds = time.perf_counter() - started
            logs.trace("http %s %s %d %s %.1f ms", request.method, route, response.status_code,
                       code or "ok", seconds * 1000, at=time.time() - seconds,
                       ids={k: v for k, v in ids.items() if v is not None})
        return response

    port = configured_port() if port is None else port
    if port is not None:
        def bound(sock, _thread):
            app.config["METRICS_PORT"] = sock.getsockname()[1]
        serve_when_free(port, os.environ.get("EXCHANGE_BIND_HOST", "127.0.0.1"), None, bound)
