"""Helpers of the marketdata integration tests (a module with a name of its
own: ``from conftest import`` would be ambiguous in the full suite)."""
import os
import shutil
import socket
import subprocess
import time
import uuid
from decimal import Decimal

import eventlet
from kombu import Connection, Exchange, Producer
from nameko.standalone.events import event_dispatcher
from nameko.testing.services import entrypoint_waiter

from tests.integration.amqp_kit import confirmed_connection, publish_confirmed
from tests.integration.throwaway_memcached import ThrowawayMemcached, free_port  # noqa: F401 (conftest's)
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


def isolated(cls, name: str):
    """The service class under a name of its own: the test vhost is shared
    (other runs of these tests, benchmarks), and Nameko routes RPC by name."""
    return type(cls.__name__, (cls,), {"name": name})


class MarketDataUnderTest(MarketDataService):
    clock = ManualClock()


class Matching:
    """Publishes what the matching service would, on the test vhost."""

    def __init__(self, config, container, market):
        self.config = config
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
        with confirmed_connection(self.config["AMQP_URI"]) as amqp:  # the test's own exchange
            exchange = Exchange(self.config["MARKETDATA_TRADE_EXCHANGE"], type="topic",
                                durable=True)
            producer = Producer(amqp.default_channel, exchange=exchange, serializer="json")
            for payload in payloads:
                publish_confirmed(producer, payload, routing_key="trade_executed", delivery_mode=2)
        deadline = time.monotonic() + timeout
        while backend.ingested[self.market] < target:
            assert time.monotonic() < deadline, "trades not ingested in time"
            eventlet.sleep(0.01)

    def book(self, payloads, timeout=30):
        self.publish("book_changed", payloads, "on_book_changed", timeout)


