"""The trade queue handed over between two marketdata instances and back
(single-active-consumer): the instance that takes it back writes candles
with every trade, including those the other one ingested meanwhile.

A lost connection is enough for a standby to take the queue over: a flush
that fails (Cassandra timing out) makes the active consumer drop its
connection so its batch is redelivered (tradefeed.py), and RabbitMQ hands
the queue to the instance waiting longest. When that one dies (kill -9,
here a container kill), the first instance is active again. It used to keep
its candle state from before the handover and wrote the minute's candle
without the other instance's trades."""
import uuid

from kombu import Connection, Exchange, Producer, Queue
from md_it_helpers import T0, Backend, MarketDataUnderTest, Matching, isolated

from services.common import catalogue
from services.marketdata.candles import CHAIN, candles_from_trades, partition_start
from services.marketdata.markets import MarketRegistry
from services.marketdata.schemas import trade_from_event
from tests.integration.amqp_kit import confirmed_connection, publish_confirmed
from tests.integration.orders.conftest import wait_for


def publish(config, payloads):
    with confirmed_connection(config["AMQP_URI"]) as amqp:
        exchange = Exchange(config["MARKETDATA_TRADE_EXCHANGE"], type="topic", durable=True)
        producer = Producer(amqp.default_channel, exchange=exchange, serializer="json")
        for payload in payloads:
            publish_confirmed(producer, payload, routing_key="trade_executed", delivery_mode=2)


def test_an_instance_taking_the_trades_back_counts_what_the_other_one_ingested(
        md_config, service_name, market, container_factory, cql, nameko_config):
    first = container_factory(isolated(MarketDataUnderTest, service_name), md_config)
    first.start()
    second_name = f"marketdata_t{uuid.uuid4().hex[:8]}"
    try:
        second = container_factory(isolated(MarketDataUnderTest, second_name), md_config)
        matching = Matching(md_config, first, market)
        trades = [matching.trade(n, T0 + n * 1000, f"{10 + n}.00") for n in range(1, 7)]
        matching.trades(trades[:3])               # the first instance is active
        second.start()                            # the second stands by
        ingested = {c: c.shared_extensions[Backend].ingested for c in (first, second)}

        # A failed flush: the first drops its connection, the second takes over.
        store = first.shared_extensions[Backend].store
        real, failures = store.write_trades, []

        def failing_once(*args, **kwargs):
            if not failures:
                failures.append(1)
                raise ConnectionError("injected: Cassandra write failed")
            return real(*args, **kwargs)

        store.write_trades = failing_once
        publish(md_config, trades[3:4])
        wait_for(lambda: ingested[second][market] >= 1, 30, "the second instance to take over")
        publish(md_config, trades[4:5])           # only the second instance sees this one
        wait_for(lambda: ingested[second][market] >= 2, 30, "the second instance's trade")

        second.kill()                             # the first one is active again
        before = ingested[first][market]
        publish(md_config, trades[5:6])
        wait_for(lambda: ingested[first][market] > before, 30, "the first instance's trade")

        markets = MarketRegistry.from_catalogue(catalogue.current())
        want = candles_from_trades([trade_from_event(t, markets) for t in trades])
        for interval in CHAIN:
            (stored,) = [r.trade_count for r in cql.execute(
                "SELECT trade_count FROM candles WHERE market=%s AND interval=%s AND bucket=%s",
                (market, interval, partition_start(T0, interval)))]
            assert stored == want[(market, interval, T0)].trade_count == 6, interval
    finally:
        with Connection(nameko_config["AMQP_URI"]) as amqp:
            Queue(f"rpc-{second_name}")(amqp.default_channel).delete()
