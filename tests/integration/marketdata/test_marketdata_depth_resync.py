"""A marketdata process started after a market's first command serves the
engine's book (docs/marketdata.md, "Resync from the engine").

Book events are broadcast without a durable queue, so a process that starts
late (a restart, a new instance) never sees the market's first command and,
before the resync, answered DEPTH_UNAVAILABLE (and tickers had no best
bid/ask) until then: forever. Here the real matching, orders and wallets run
as containers on the test vhost; the marketdata process starts after an order
rests, without any later book change."""
import uuid
from decimal import Decimal

import pytest

from services.matching.service import MatchingService
from services.orders.service import OrdersService
from services.wallets.service import WalletsService
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)
from tests.integration.marketdata.md_it_helpers import MarketDataUnderTest, isolated
from tests.integration.orders.conftest import as_admin, empty_books, fund, wait_for

MARKET = "BTC-USDT"


@pytest.fixture
def exchange(container_factory, nameko_config, principal_tokens):
    for cls in (WalletsService, MatchingService, OrdersService):
        container_factory(cls, nameko_config).start()
    with as_admin(nameko_config, principal_tokens) as rpc:
        empty_books(rpc)
        yield rpc
        rpc.orders.cancel_market_orders(MARKET)


def start_marketdata(container_factory, md_config, service_name):
    container = container_factory(isolated(MarketDataUnderTest, service_name), md_config)
    container.start()


def depth_of(rpc, service_name):
    """The late process's depth, or None while it has none."""
    try:
        return getattr(rpc, service_name).get_depth(MARKET, 10)
    except Exception as exc:       # DEPTH_UNAVAILABLE until the snapshot is loaded
        if getattr(exc, "code", None) == "DEPTH_UNAVAILABLE" or "DEPTH_UNAVAILABLE" in str(exc):
            return None
        raise


def test_a_late_process_loads_the_engines_book_and_follows_it(
        exchange, container_factory, nameko_config, trade_route, service_name):
    rpc = exchange
    user = fund(rpc, {"USDT": "100"})
    first = rpc.orders.place_order(user, MARKET, "buy", "limit", "0.2", price="99.00")
    wait_for(lambda: rpc.matching.get_depth(MARKET, 10)["buy"], timeout=60,
             what=f"order {first['order_id']} to rest")

    md_config = {**nameko_config, "max_workers": 20, "MARKETDATA_TRADE_QUEUE": trade_route[0],
                 "MARKETDATA_TRADE_EXCHANGE": trade_route[1],
                 "CACHE_PREFIX": f"resync-{uuid.uuid4().hex[:8]}:"}
    start_marketdata(container_factory, md_config, service_name)

    # No book change after the start: only the engine's snapshot can give it.
    depth = wait_for(lambda: depth_of(rpc, service_name), timeout=30,
                     what="the late process's depth")
    # The engine may have numbered later commands since (a refused one changes no level).
    assert 0 < depth["seq"] <= rpc.matching.get_depth(MARKET, 10)["seq"]
    assert [[Decimal(p), Decimal(q)] for p, q in depth["bids"]] == [[Decimal("99.00"), Decimal("0.2")]]
    assert depth["asks"] == []

    # The book events after the snapshot continue it.
    rpc.orders.place_order(user, MARKET, "buy", "limit", "0.3", price="98.00")
    depth = wait_for(lambda: (d := depth_of(rpc, service_name)) and len(d["bids"]) == 2 and d,
                     timeout=30, what="the second level")
    assert [[Decimal(p), Decimal(q)] for p, q in depth["bids"]] == [
        [Decimal("99.00"), Decimal("0.2")], [Decimal("98.00"), Decimal("0.3")]]
    assert getattr(rpc, service_name).health()["depth"][MARKET] == "synced"
