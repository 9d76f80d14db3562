"""What a trader met in a sweep of the web client, each in headless Chromium
against the running stack (browser steps in sweep_scenarios.py, run in a
child process: see chromium.py): the engine's refusals of an accepted order
shown in words, the trade tape caught up after the live connection came
back, and a phone's width with an open order to cancel."""
from __future__ import annotations

import json
import uuid
from dataclasses import asdict

import pytest

from tests.e2e.browser import chromium
from tests.e2e.push import kit

pytestmark = [pytest.mark.skipif(not chromium.available(), reason="Debian chromium is not installed"),
              pytest.mark.timeout(300)]

MARKET = "BTC-USDT"


def run(scenario: str, args: dict) -> None:
    chromium.run_child("tests.e2e.browser.sweep_scenarios", scenario, json.dumps(args))


def trader(settings, funds: dict) -> dict:
    """A fresh funded trader, as the scenarios take one."""
    return asdict(kit.new_trader(settings, funds, prefix="web"))


def with_price(settings, **traders) -> dict:
    """A scenario's arguments: the gateway, a price inside the spread (only
    this test's orders meet there) and its traders."""
    return {"url": settings.gateway_url, "price": kit.inside_spread(settings, MARKET), **traders}


def test_the_engines_refusal_of_an_accepted_order_is_shown_in_words(settings):
    run("engine_refusals_in_words",
        with_price(settings, trader=trader(settings, {"USDT": "100"})))


def test_a_trade_made_while_the_connection_was_down_shows_after_it_is_back(settings):
    run("tape_catches_up_after_reconnect",
        with_price(settings, buyer=trader(settings, {"USDT": "5000"}),
                   seller=trader(settings, {"BTC": "1"})))


def test_a_phone_shows_the_cancel_button_of_an_open_order(settings):
    run("phone_shows_cancel_of_an_open_order",
        with_price(settings, trader=trader(settings, {"USDT": "100"})))


def test_an_orders_numbers_read_like_the_book(settings):
    run("order_numbers_read_like_the_book",
        with_price(settings, trader=trader(settings, {"USDT": "100"})))


def test_the_keyboards_focus_on_cancel_survives_a_re_read_of_the_open_orders(settings):
    run("keyboard_cancel_survives_a_re_read",
        with_price(settings, trader=trader(settings, {"USDT": "100"})))


def test_the_chart_and_the_tape_read_in_the_traders_time_zone(settings):
    run("times_read_in_the_traders_zone", {"url": settings.gateway_url})


def test_a_reload_opens_the_market_the_trader_was_on(settings):
    run("a_reload_keeps_the_market",
        {"url": settings.gateway_url, "trader": trader(settings, {"USDT": "100"})})


def test_an_order_sent_without_network_is_refused_in_words(settings):
    run("no_answer_is_said_in_words",
        {"url": settings.gateway_url, "trader": trader(settings, {"USDT": "100"})})


def test_a_market_order_that_fills_at_once_says_it_filled(settings):
    run("an_order_that_traded_at_once_says_so",
        with_price(settings, buyer=trader(settings, {"USDT": "5000"}),
                   seller=trader(settings, {"BTC": "1"})))


def test_balances_leave_out_an_asset_no_market_trades_when_none_is_held(settings, operator_token):
    from services.registry import errors  # noqa: F401 -- typed refusals back over RPC
    from tests.integration.registry_kit import asset_spec
    idle = f"W{uuid.uuid4().hex[:8].upper()}"   # listed, never given a market
    with kit.rpc_proxy(settings) as rpc:
        rpc.registry.list_asset(operator_token, asset_spec(idle))
    run("balances_show_what_a_trader_can_use",
        {"url": settings.gateway_url, "idle_asset": idle,
         "trader": trader(settings, {"USDT": "100"})})


def test_a_market_row_keeps_the_keyboards_focus_through_a_ticker_push(settings):
    run("market_row_keeps_the_focus_through_a_ticker",
        with_price(settings, buyer=trader(settings, {"USDT": "5000"}),
                   seller=trader(settings, {"BTC": "1"})))


def test_a_double_click_places_one_order_and_requests_one_withdrawal(settings):
    run("a_double_click_sends_once",
        with_price(settings, trader=trader(settings, {"USDT": "100"})))
