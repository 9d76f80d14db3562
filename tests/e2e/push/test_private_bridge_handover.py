"""kill -9 of the gateway process whose private push bridge is active, between
a trade's delivery and the flush that takes its effects: the standby bridge
gets the delivery again and takes them (gateway/bridge.py: the private bridge
acknowledges a delivery only once the flush after it has run). Before session
27 the delivery was acknowledged on receipt, and the trade's first-fill
take-offs (and balances push) died with the process: the taker's order stayed
on its order count for the rest of the day.

Two gateway processes of the test's own push cluster and a Memcached of its
own (the stack's bridge takes the same trade off in the stack's Memcached,
which these gateways do not read). The first, the active bridge, never
flushes during the test (its flush interval is a minute), so it is killed
with the take-off surely pending; the second flushes every 250 ms."""
from __future__ import annotations

import time
import uuid

import pytest

from tests.e2e.browser.chromium import artifacts_dir
from tests.e2e.gateway import binance_testkit as kit
from tests.e2e.push import kit as push_kit
from tests.integration.throwaway_memcached import ThrowawayMemcached, free_port


@pytest.fixture
def memcached():
    server = ThrowawayMemcached(free_port()).start()
    yield server
    server.kill()


def day_count(client) -> int:
    counts = {f'{c["intervalNum"]}{c["interval"]}': c["count"]
              for c in client.get_current_order_count()}
    return counts["1DAY"]


def test_a_trades_take_off_survives_a_kill_9_of_the_active_bridge(settings, memcached):
    channel = f"test-{uuid.uuid4().hex[:8]}"
    logs = artifacts_dir("push")
    cache = {"EXCHANGE_MEMCACHED_PORT": str(memcached.port)}
    active = push_kit.GatewayProcess(push_kit.free_port(), channel, logs / f"{channel}-a.log",
                                     env={**cache, "EXCHANGE_PUSH_FLUSH_MS": "60000"}).wait_ready()
    time.sleep(1.0)  # the first one's bridge is the active consumer
    standby = push_kit.GatewayProcess(push_kit.free_port(), channel, logs / f"{channel}-b.log",
                                      env={**cache, "EXCHANGE_PUSH_FLUSH_MS": "250"}).wait_ready()
    try:
        maker = kit.new_trader(settings, {"BTC": "1"}, prefix="handover")
        taker = kit.new_trader(settings, {"USDT": "100000"}, prefix="handover")
        maker_client = kit.binance_client(active.url, maker.api_key, maker.secret)
        taker_client = kit.binance_client(active.url, taker.api_key, taker.secret)
        price = str(kit.quiet_price(settings))
        resting = maker_client.create_order(symbol=kit.BINANCE, side="SELL", type="LIMIT",
                                            timeInForce="GTC", quantity="0.002", price=price,
                                            newOrderRespType="ACK")
        bought = taker_client.create_order(symbol=kit.BINANCE, side="BUY", type="LIMIT",
                                           timeInForce="IOC", quantity="0.001", price=price,
                                           newOrderRespType="FULL")
        assert bought["status"] == "FILLED", bought
        assert taker_client.response.headers["X-MBX-ORDER-COUNT-1D"] == "1"
        time.sleep(1.0)           # the active bridge has the trade; its flush is a minute off
        active.kill9()

        taker_on_standby = kit.binance_client(standby.url, taker.api_key, taker.secret)
        deadline = time.monotonic() + 20
        count = day_count(taker_on_standby)
        while count != 0 and time.monotonic() < deadline:
            time.sleep(1.0)       # the count's read weighs 40: not faster
            count = day_count(taker_on_standby)
        assert count == 0, "the taker's first fill was not taken off its order count"
        maker_on_standby = kit.binance_client(standby.url, maker.api_key, maker.secret)
        assert day_count(maker_on_standby) == 0        # the resting order's first fill too
        maker_on_standby.cancel_order(symbol=kit.BINANCE, orderId=resting["orderId"])
    finally:
        active.stop()
        standby.stop()
