"""Fixtures for the marketdata service on the real stack: a fresh market per
test (registered through the container config), its own trade queue, a
controllable clock, a publisher standing in for the matching service, direct
CQL and Memcached access for checking what the service stored."""
import os
import sys
import uuid

import pytest
from kombu import Connection, Exchange, Queue
from nameko.standalone.rpc import ServiceRpcProxy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from md_it_helpers import (T0, ManualClock, MarketDataUnderTest, Matching,  # noqa: E402
                           ThrowawayMemcached, free_port, isolated)

from services.common.cache import make_cache  # noqa: E402
from services.common.cassandra import make_cluster  # noqa: E402
from services.common.outbox import command_queue  # noqa: E402
from services.marketdata.parking import parked_exchange  # noqa: E402
from tests.integration.registry_kit import throwaway_market  # noqa: E402


@pytest.fixture
def market(test_settings):
    """A market of the test's own, listed in the registry before the service
    starts (and delisted after the test)."""
    with throwaway_market(test_settings, f"T{uuid.uuid4().hex[:8].upper()}-USDT") as symbol:
        yield symbol


@pytest.fixture
def trade_route(nameko_config):
    """A trade exchange and queue of the test's own. The test vhost is shared
    by everyone's tests: a queue bound to the real matching.events would
    collect their events, and deleting it could break their publishers'
    channels (RabbitMQ 3.10 closes a channel that publishes to a quorum queue
    deleted under it). Declared and bound before the service starts, so that
    events published right after its start are queued, not dropped."""
    tag = uuid.uuid4().hex[:8]
    queue_name, exchange_name = f"marketdata.trades.test-{tag}", f"marketdata.test-{tag}.events"
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        channel = amqp.default_channel
        exchange = Exchange(exchange_name, type="topic", durable=True)(channel)
        exchange.declare()
        queue = command_queue(queue_name)(channel)
        queue.declare()
        queue.bind_to(exchange, routing_key="trade_executed")
    yield queue_name, exchange_name
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        command_queue(queue_name)(amqp.default_channel).delete()
        Exchange(exchange_name)(amqp.default_channel).delete()
        # Declared by the service when it sends parked trades back (parking.py).
        Exchange(parked_exchange(queue_name))(amqp.default_channel).delete()


@pytest.fixture
def service_name(nameko_config):
    """A Nameko name of the test's own; its RPC queue (durable, not removed by
    Nameko) is deleted after the container has stopped."""
    name = f"marketdata_t{uuid.uuid4().hex[:8]}"
    yield name
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        Queue(f"rpc-{name}")(amqp.default_channel).delete()


@pytest.fixture
def md_config(service_name, trade_route, nameko_config, market):
    ManualClock.at = T0
    # The Matching stand-in publishes the book events: no snapshots from the real engine.
    return {**nameko_config, "max_workers": 50, "MARKETDATA_TRADE_QUEUE": trade_route[0],
            "MARKETDATA_TRADE_EXCHANGE": trade_route[1], "MARKETDATA_DEPTH_RESYNC": False}


@pytest.fixture
def service(md_config, service_name, container_factory):
    container = container_factory(isolated(MarketDataUnderTest, service_name), md_config)
    container.start()
    return container


@pytest.fixture
def rpc(service, md_config):
    with ServiceRpcProxy(service.service_name, md_config, timeout=30) as proxy:
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


@pytest.fixture
def throwaway_memcached():
    server = ThrowawayMemcached(free_port()).start()
    yield server
    server.kill()
