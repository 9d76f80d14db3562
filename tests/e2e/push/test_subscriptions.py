"""Bad subscriptions get an ``error`` event with a code and the connection
goes on: unknown market, channel or interval, more than the allowed number
of subscriptions, oversized or malformed messages, unknown events."""
from __future__ import annotations

import pytest

from gateway.sockets import MAX_MESSAGE_BYTES, MAX_SUBSCRIPTIONS
from services.common.config import load_settings
from tests.e2e.push import kit

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def client():
    listener = kit.Listener(load_settings().gateway_url).connect()
    yield listener
    listener.close()


def refused(client, event, data) -> str:
    answer = client.call(event, data)
    assert answer["ok"] is False
    return answer["code"]


def test_unknown_market_channel_interval_are_refused(client):
    assert refused(client, "subscribe", {"channel": "depth", "market": "NOPE-USDT"}) \
        == "UNKNOWN_MARKET"
    assert refused(client, "subscribe", {"channel": "orders", "market": "BTC-USDT"}) \
        == "UNKNOWN_CHANNEL"
    assert refused(client, "subscribe", {"channel": "candles", "market": "BTC-USDT",
                                         "interval": "7m"}) == "UNKNOWN_INTERVAL"
    assert refused(client, "subscribe", ["depth", "BTC-USDT"]) == "BAD_REQUEST"
    assert refused(client, "depth_snapshot", {"market": "BTC-USDT"}) == "NOT_SUBSCRIBED"
    codes = [d["code"] for e, d in client.received if e == "error"]
    assert codes == ["UNKNOWN_MARKET", "UNKNOWN_CHANNEL", "UNKNOWN_INTERVAL", "BAD_REQUEST",
                     "NOT_SUBSCRIBED"]
    assert client.call("subscribe", {"channel": "depth", "market": "BTC-USDT"})["ok"]
    assert client.wait_for(lambda e, d: e == "depth_snapshot")


def test_subscriptions_are_bounded(client):
    rooms = [{"channel": "candles", "market": market, "interval": interval}
             for market in ("BTC-USDT", "ETH-USDT")
             for interval in ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")]
    rooms += [{"channel": c, "market": m} for c in ("trades", "ticker", "depth")
              for m in ("BTC-USDT", "ETH-USDT")]
    assert len(rooms) > MAX_SUBSCRIPTIONS
    answers = [client.call("subscribe", room) for room in rooms]
    assert all(a["ok"] for a in answers[:MAX_SUBSCRIPTIONS])
    assert {a.get("code") for a in answers[MAX_SUBSCRIPTIONS:]} == {"TOO_MANY_SUBSCRIPTIONS"}
    # Subscribing again to a held room is not a new subscription; leaving frees one.
    assert client.call("subscribe", rooms[0])["ok"]
    assert client.call("unsubscribe", rooms[0])["ok"]
    assert client.call("subscribe", rooms[MAX_SUBSCRIPTIONS])["ok"]


def test_oversized_and_unknown_messages_get_an_error_not_a_crash(client):
    big = {"channel": "depth", "market": "BTC-USDT", "pad": "x" * (MAX_MESSAGE_BYTES + 1)}
    assert refused(client, "subscribe", big) == "MESSAGE_TOO_LARGE"
    client.client.emit("launch_rockets", {"now": True})
    assert client.wait_for(lambda e, d: e == "error" and d["code"] == "UNKNOWN_EVENT")
    assert client.client.connected
    assert client.call("subscribe", {"channel": "tickers"})["ok"]
