"""A connection that stops reading while the market is busy is dropped with a
reason once its bounded send queue fills; a normal connection on the same
gateway process keeps receiving.

The gateway is a process of the test's own (its own push cluster) with small
bounds, so the queue fills in seconds instead of minutes:
``EXCHANGE_PUSH_MAX_QUEUED`` frames and a ``EXCHANGE_PUSH_SEND_BUFFER_BYTES``
kernel send buffer per connection (a loopback connection's buffer otherwise
grows to megabytes). The slow client is a raw websocket with a small receive
buffer that subscribes to ETH-USDT's streams, asks for book snapshots and
reads nothing while two traders trade there.
"""
from __future__ import annotations

import time
import uuid
from decimal import Decimal

import pytest

from services.common.config import load_settings
from tests.e2e.browser.chromium import artifacts_dir
from tests.e2e.push import kit

pytestmark = pytest.mark.timeout(400)

MARKET = "ETH-USDT"
MAX_QUEUED = 40


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture
def gateway():
    channel = f"test-slow-{uuid.uuid4().hex[:8]}"
    process = kit.GatewayProcess(
        kit.free_port(), channel, artifacts_dir("push") / f"{channel}.log",
        env={"EXCHANGE_PUSH_MAX_QUEUED": str(MAX_QUEUED),
             "EXCHANGE_PUSH_SEND_BUFFER_BYTES": "8192"})
    yield process.wait_ready()
    process.stop()


def crossing_pair(rpc, seller, buyer, price: str, quantity: str) -> None:
    rpc.orders.place_order(seller.user_id, MARKET, "sell", "limit", quantity=quantity,
                           price=price)
    rpc.orders.place_order(buyer.user_id, MARKET, "buy", "limit", quantity=quantity,
                           price=price, time_in_force="IOC")


def dropped(gateway) -> bool:
    return b"dropping slow connection" in gateway.log_path.read_bytes()


def test_a_reader_that_stops_is_dropped_with_a_reason_and_others_keep_receiving(settings,
                                                                               gateway):
    funds = {"USDT": "200000", "ETH": "100"}
    seller, buyer = (kit.new_trader(settings, funds, prefix="slow") for _ in range(2))
    normal = kit.Listener(gateway.url).connect(wait_timeout=30)
    slow = kit.RawSocketIO(gateway.url, receive_buffer=4096)
    try:
        for channel in ("depth", "trades", "ticker"):
            assert normal.call("subscribe", {"channel": channel, "market": MARKET},
                               timeout=30)["ok"]
            slow.emit("subscribe", {"channel": channel, "market": MARKET})
        with kit.rpc_proxy(settings) as rpc:
            reference = Decimal(rpc.matching.get_depth(MARKET, 1)["reference_price"] or "2000")
            price = str(reference.quantize(Decimal("0.01")))
            # Busy market; the slow client asks for snapshots it never reads.
            for round_ in range(150):
                if dropped(gateway):
                    break
                crossing_pair(rpc, seller, buyer, price, "0.0100")
                for _ in range(10):
                    slow.emit("depth_snapshot", {"market": MARKET})
            else:
                pytest.fail(f"the slow connection was never dropped ({round_ + 1} rounds)")
            # After the drop: a normal connection on the same process still
            # gets the market's trades (newer than any it had).
            seen = max((t["seq"] for batch in normal.of("trades") for t in batch["trades"]),
                       default=0)
            got = None
            for _ in range(5):
                crossing_pair(rpc, seller, buyer, price, "0.0100")
                got = normal.wait_for(lambda event, data: event == "trades" and any(
                    t["seq"] > seen for t in data["trades"]), timeout=20)
                if got is not None:
                    break
        assert got is not None, "the normal connection stopped receiving trades"
        assert normal.client.connected
        assert not [data for data in normal.of("error") if data.get("code") == "SLOW_CONSUMER"]

        # The slow client reads at last: what its socket held, then the reason,
        # then the end of the stream.
        events = slow.events_to_end()
        errors = [data for event, data in events if event == "error"]
        assert errors and errors[-1]["code"] == "SLOW_CONSUMER", events[-5:]
        after_reason = events[events.index(("error", errors[-1])) + 1:]
        assert all(event == "engine.io close" for event, _ in after_reason), after_reason[:5]
    finally:
        normal.close()
        slow.close()
