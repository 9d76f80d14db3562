"""Fixtures of the gateway e2e tests: fresh funded traders on the running
stack, and a price where only this test's orders meet."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import binance_testkit as kit  # noqa: E402
from binance_testkit import BINANCE, MARKET, SYMBOL, TICK, far_bid, quiet_price  # noqa: E402,F401


@pytest.fixture(scope="module")
def gateway_url(settings):
    return settings.gateway_url


@pytest.fixture(scope="module")
def maker(settings):
    return kit.new_trader(settings, {"USDT": "200000", "BTC": "10", "ETH": "10"}, prefix="gwmaker")


@pytest.fixture(scope="module")
def taker(settings):
    return kit.new_trader(settings, {"USDT": "200000", "BTC": "10", "ETH": "10"}, prefix="gwtaker")
