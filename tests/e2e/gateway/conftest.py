"""Fixtures of the gateway e2e tests: fresh funded traders on the running
stack, and a price where only this test's orders meet."""
import os
import random
import sys
from decimal import Decimal

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import binance_testkit as kit  # noqa: E402

# BTC-USDT: the demo book leaves a wide spread (29,990 / 30,010) where only
# this test's own orders meet; ETH-USDT may carry other tests' busy books.
MARKET, SYMBOL, BINANCE = "BTC-USDT", "BTC/USDT", "BTCUSDT"
TICK = Decimal("0.01")


@pytest.fixture(scope="module")
def gateway_url(settings):
    return settings.gateway_url


@pytest.fixture(scope="module")
def maker(settings):
    return kit.new_trader(settings, {"USDT": "200000", "BTC": "10", "ETH": "10"}, prefix="gwmaker")


@pytest.fixture(scope="module")
def taker(settings):
    return kit.new_trader(settings, {"USDT": "200000", "BTC": "10", "ETH": "10"}, prefix="gwtaker")


def quiet_price(settings, market: str = MARKET) -> Decimal:
    """A price strictly inside the book's spread, near the reference price,
    so a maker order there is crossed only by this test's own taker (other
    tests' resting orders sit outside it) and stays within the price band."""
    with kit.rpc_proxy(settings) as rpc:
        book = rpc.matching.get_depth(market, 1)
    bid = Decimal(book["buy"][0][0]) if book["buy"] else None
    ask = Decimal(book["sell"][0][0]) if book["sell"] else None
    reference = Decimal(book["reference_price"] or "2000")
    low = bid + TICK if bid is not None else reference * Decimal("0.97")
    high = ask - TICK if ask is not None else reference * Decimal("1.03")
    low, high = max(low, reference * Decimal("0.97")), min(high, reference * Decimal("1.03"))
    assert low < high, f"no room in the spread of {market}: {book}"
    ticks = int((high - low) / TICK)
    return (low + TICK * random.randint(1, max(1, ticks - 1))).quantize(TICK)


def far_bid(settings, market: str) -> Decimal:
    """A buy price 10 % under the reference: rests, nobody sells into it."""
    with kit.rpc_proxy(settings) as rpc:
        book = rpc.matching.get_depth(market, 1)
    reference = Decimal(book["reference_price"] or book["buy"][0][0])
    return (reference * Decimal("0.9")).quantize(TICK)
