"""Fixtures for the marketdata service on the real stack: a fresh market per
test (registered through the container config), a controllable clock, a
publisher standing in for the matching service, direct CQL and Memcached
access for checking what the service stored."""
import os
import shutil

import eventlet
import socket
import subprocess
import time
import uuid
from decimal import Decimal

import pytest
from kombu import Connection, Exchange
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.services import entrypoint_waiter

from services.common.cache import make_cache
from services.common.cassandra import make_cluster
from services.common.outbox import command_queue
from services.marketdata.providers import Backend, Clock
from services.marketdata.service import MarketDataService

T0 = 1_795_392_000_000  # 2026-11-23T00:00:00Z, a Monday: every interval starts here
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def candles(rpc, *args, **kwargs) -> list[dict]:
    """get_candles' compact rows as dicts (``columns`` names the fields)."""
    result = rpc.get_candles(*args, **kwargs)
    return [dict(zip(result["columns"], row)) for row in result["candles"]]


class ManualClock(Clock):
    """The service's clock, set by the test (epoch ms)."""

    at = T0

    def now(self) -> int:
        return ManualClock.at


class MarketDataUnderTest(MarketDataService):
    clock = ManualClock()


class Matching:
    """Publishes what the matching service would, on the test vhost."""

    def __init__(self, config, container, market):
        self.dispatch = event_dispatcher(config)
        self.container = container
        self.market = market

    def trade(self, n, at, price="100.00", qty="1.0000", maker="maker-1", taker="taker-1",
              seq=None, side="buy"):
        p, q = Decimal(price), Decimal(qty)
        return {"market": self.market, "seq": n if seq is None else seq,
                "trade_id": f"{self.market}-{n}", "price": price, "quantity": qty,
                "quote_quantity": str(p * q), "taker_side": side, "maker_order_id": 2 * n,
                "maker_user_id": maker, "taker_order_id": 2 * n + 1, "taker_user_id": taker,
                "executed_at": at}

    def publish(self, event_type, payloads, handler, timeout=30):
        """Publish and wait until the service has handled all of them. The
        test vhost is shared: events of other tests' markets may arrive too
        (and are dropped as unknown); only this market's are counted."""
        handled = []

        def done(worker_ctx, result, exc_info):
            if exc_info is not None or (result or {}).get("market") == self.market:
                handled.append(exc_info)
            return len(handled) >= len(payloads)

        with entrypoint_waiter(self.container, handler, timeout=timeout, callback=done):
            for payload in payloads:
                self.dispatch("matching", event_type, payload)
        assert all(exc is None for exc in handled), handled

    def trades(self, payloads, timeout=30):
        """Publish trade_executed events; wait until the service has handled
        them (its trade consumer counts what it recorded, per market)."""
        backend = self.container.shared_extensions[Backend]
        target = backend.ingested[self.market] + len(payloads)
        for payload in payloads:
            self.dispatch("matching", "trade_executed", payload)
        deadline = time.monotonic() + timeout
        while backend.ingested[self.market] < target:
            assert time.monotonic() < deadline, "trades not ingested in time"
            eventlet.sleep(0.01)

    def book(self, payloads, timeout=30):
        self.publish("book_changed", payloads, "on_book_changed", timeout)


@pytest.fixture
def market():
    return f"T{uuid.uuid4().hex[:8].upper()}-USDT"


@pytest.fixture
def trade_queue(nameko_config):
    """A trade queue of the test's own (the service's is shared by name and
    single-active-consumer), deleted afterwards so no orphan queue collects
    the test vhost's events."""
    name = f"marketdata.trades.test-{uuid.uuid4().hex[:8]}"
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        # declared and bound before the service starts, so that events
        # published right after its start are queued, not dropped
        queue = command_queue(name)(amqp.default_channel)
        queue.declare()
        exchange = Exchange("matching.events", type="topic", durable=True)(amqp.default_channel)
        exchange.declare()
        queue.bind_to(exchange, routing_key="trade_executed")
    yield name
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        command_queue(name)(amqp.default_channel).delete()


@pytest.fixture
def md_config(trade_queue, nameko_config, market):
    ManualClock.at = T0
    return {**nameko_config, "max_workers": 50, "MARKETDATA_TRADE_QUEUE": trade_queue,
            "MARKETDATA_MARKETS": [
        {"symbol": market, "base_asset": market.split("-")[0], "quote_asset": "USDT",
         "tick_size": "0.01", "lot_size": "0.0001"}]}


@pytest.fixture
def service(md_config, container_factory):
    container = container_factory(MarketDataUnderTest, md_config)
    container.start()
    return container


@pytest.fixture
def rpc(service, md_config):
    with ServiceRpcProxy("marketdata", md_config, timeout=30) as proxy:
        yield proxy


@pytest.fixture
def matching(service, md_config, market):
    return Matching(md_config, service, market)


@pytest.fixture(scope="session")
def cql(test_settings):
    cluster = make_cluster(test_settings)
    session = cluster.connect(test_settings["EXCHANGE_CASSANDRA_KEYSPACE"])
    yield session
    cluster.shutdown()


@pytest.fixture
def memcached_of(test_settings):
    """A Cache on the service's Memcached with its prefix, to look inside."""
    caches = []

    def make(config, port=None):
        settings = test_settings if port is None else test_settings.with_overrides(
            EXCHANGE_MEMCACHED_PORT=str(port))
        cache = make_cache(settings, config["CACHE_PREFIX"])
        caches.append(cache)
        return cache
    yield make
    for cache in caches:
        cache.client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayMemcached:
    """A real memcached of our own, to kill mid-test (the stack's is shared)."""

    def __init__(self, port: int):
        self.port = port
        self.process = None

    def start(self):
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        argv = [binary, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("throw-away memcached did not start")

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def throwaway_memcached():
    server = ThrowawayMemcached(free_port()).start()
    yield server
    server.kill()
