"""Two traders use the web client in headless Chromium, each in their own
browser context (no shared cookies or storage): both sign in on Keycloak's
own page, the first rests a limit buy that shows in their open orders and in
both books, the second sells into it, and both see the trade in the tape and
the chart, their balances change and the order leaves the open list.
Screenshots of every step go to run/artifacts/browser/trader_client/
(git-ignored); neither page's console may show an error. The browser steps
are in trader_scenarios.py (run in a child process: see chromium.py).

The bid is placed strictly inside the BTC-USDT spread with post-only (it can
never trade with the demo traders' orders) and the second trader's sell is
IOC at exactly that price and size, so it can only meet the first's bid.
"""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from services.common.config import load_settings
from tests.e2e.browser import chromium
from tests.e2e.push import kit

pytestmark = [pytest.mark.skipif(not chromium.available(), reason="Debian chromium is not installed"),
              pytest.mark.timeout(300)]

MARKET = "BTC-USDT"


@pytest.fixture(scope="module")
def settings():
    return load_settings()


def test_two_traders_trade_live_in_the_browser(settings):
    args = {"url": settings.gateway_url, "price": kit.inside_spread(settings, MARKET),
            "buyer": asdict(kit.new_trader(settings, {"USDT": "5000"}, prefix="web")),
            "seller": asdict(kit.new_trader(settings, {"BTC": "1"}, prefix="web"))}
    chromium.run_child("tests.e2e.browser.trader_scenarios", "two_traders_trade",
                       json.dumps(args))


def run_with_rows_held(settings, scenario: str) -> None:
    """A scenario that holds rows with a transaction of its own (the database's
    DSN in its argument): the push reaches the browser before orders records
    the trade (trader_scenarios.held_bid), or before wallets settles it."""
    args = {"url": settings.gateway_url, "price": kit.inside_spread(settings, MARKET),
            "dsn": settings.postgres_dsn(),
            "buyer": asdict(kit.new_trader(settings, {"USDT": "5000"}, prefix="web")),
            "seller": asdict(kit.new_trader(settings, {"BTC": "1"}, prefix="web"))}
    chromium.run_child("tests.e2e.browser.trader_scenarios", scenario, json.dumps(args))


def test_a_filled_order_leaves_the_open_list_while_orders_has_not_recorded_it(settings):
    run_with_rows_held(settings, "filled_order_leaves_while_orders_lags")


def test_a_partial_fill_shows_in_the_open_list_while_orders_has_not_recorded_it(settings):
    run_with_rows_held(settings, "partial_fill_shows_while_orders_lags")


def test_a_fee_read_made_before_settlement_and_answered_after_it_ends_settled(settings):
    run_with_rows_held(settings, "fee_read_before_settlement_lands_after_it")


def test_client_refuses_off_grid_orders_before_sending_and_fits_a_phone(settings):
    args = {"url": settings.gateway_url,
            "trader": asdict(kit.new_trader(settings, {"USDT": "100"}, prefix="web"))}
    chromium.run_child("tests.e2e.browser.trader_scenarios", "refusals_and_phone",
                       json.dumps(args))
