"""Nothing dropped for a market that is not listed yet: its trade is parked
(in Cassandra, before the ack), health says degraded, and the trade is
recorded -- trades and candles -- as soon as the registry lists the market
(sent back to the trade queue and ingested by its consumer: parking.py)."""
import time

import eventlet
from kombu import Exchange, Producer
from md_it_helpers import T0, candles

from tests.integration.amqp_kit import confirmed_connection, publish_confirmed
from tests.integration.registry_kit import delist, list_market, market_spec, new_symbol


def wait_until(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        eventlet.sleep(0.05)


def test_a_trade_of_an_unlisted_market_is_parked_then_recorded_when_listed(
        matching, rpc, md_config, test_settings):
    unlisted = new_symbol()
    trade = {**matching.trade(1, T0 + 1000), "market": unlisted, "trade_id": f"{unlisted}-1"}
    with confirmed_connection(md_config["AMQP_URI"]) as amqp:
        exchange = Exchange(md_config["MARKETDATA_TRADE_EXCHANGE"], type="topic", durable=True)
        publish_confirmed(Producer(amqp.default_channel, exchange=exchange, serializer="json"),
                          trade, routing_key="trade_executed", delivery_mode=2)
    wait_until(lambda: rpc.health()["parked_trades"] >= 1, "the trade to be parked")
    assert rpc.health()["status"] == "degraded"

    list_market(test_settings, market_spec(unlisted))
    try:
        # The service learns of the listing from the registry's event: until
        # then its reads answer UNKNOWN_MARKET (a CI run asked too early).
        wait_until(lambda: unlisted in rpc.health()["markets"], "the listing to reach the service")
        wait_until(lambda: rpc.get_trades(unlisted, start=T0, end=T0 + 2000)["trades"],
                   "the parked trade to be recorded")
        assert [c["volume"] for c in candles(rpc, unlisted, "1m", start=T0, end=T0 + 60_000)] \
            == ["1.0000"]
        wait_until(lambda: rpc.health()["status"] == "ok", "health back to ok")
    finally:
        delist(test_settings, unlisted)
