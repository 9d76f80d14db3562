"""What a trader reads and fills in on the web client, each in headless
Chromium against the running stack (browser steps in reading_scenarios.py,
run in a child process: see chromium.py): the orders' statuses in words,
the time of each of My trades, and the withdrawal form checked before it
sends anything."""
from __future__ import annotations

import json

import pytest

from tests.e2e.browser import chromium
from tests.e2e.browser.test_trader_client_sweep import trader, with_price

pytestmark = [pytest.mark.skipif(not chromium.available(), reason="Debian chromium is not installed"),
              pytest.mark.timeout(300)]


def run(scenario: str, args: dict) -> None:
    chromium.run_child("tests.e2e.browser.reading_scenarios", scenario, json.dumps(args))


def test_orders_statuses_read_in_words_with_the_reason_of_a_refusal_or_an_expiry(settings):
    run("statuses_in_words",
        with_price(settings, buyer=trader(settings, {"USDT": "5000"}),
                   seller=trader(settings, {"BTC": "1"})))


def test_my_trades_show_each_fills_time_in_the_traders_zone_newest_first(settings):
    run("my_trades_show_their_time",
        with_price(settings, buyer=trader(settings, {"USDT": "5000"}),
                   seller=trader(settings, {"BTC": "1"})))


def test_the_withdrawal_form_says_what_is_wrong_under_the_field_and_sends_nothing(settings):
    run("withdrawal_checked_before_sending",
        {"url": settings.gateway_url, "trader": trader(settings, {"USDT": "100"})})
