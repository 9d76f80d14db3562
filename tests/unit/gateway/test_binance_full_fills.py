"""A FULL order answer's fills (gateway/api/binance.py ``fills_of``): their
commissions are at the user's rates from wallets, asked while marketdata is
read; when wallets does not answer, the market's schedule, so an order that
was accepted and traded is still answered (not turned into an error a bot
would take for a failed order). The services are played by plain objects
here; tests/e2e/gateway/test_partner_fee_tier_commissions.py runs the real
ones."""
import time
from decimal import Decimal

import eventlet
import pytest
from flask import Flask

from gateway.api import binance
from test_binance_markets import btc_usdt

ORDER = {"order_id": 7, "filled_quantity": "0.01", "created_at": "2026-12-06T20:00:00+00:00"}
FILL = {"trade_id": "BTC-USDT-41", "order_id": 7, "market": "BTC-USDT", "side": "buy",
        "role": "taker", "price": "30000", "quantity": "0.01", "quote_quantity": "300",
        "executed_at": 1_796_587_200_000}


class Marketdata:
    def get_user_trades(self, user, limit, since):
        return {"trades": [FILL]}


class Wallets:
    def __init__(self, rates=None, silent=False):
        self.rates, self.silent, self.asked = rates, silent, []

    def trade_fees(self, user, market, trade_ids):
        self.asked.append((user, market, trade_ids))
        if self.silent:   # a killed wallets: nothing until the RPC timeout
            eventlet.sleep(3600)
        if self.rates is None:
            raise TimeoutError("wallets did not answer")
        return {"rates": self.rates, "fees": {}}


class Services:
    def __init__(self, wallets):
        self.marketdata, self.wallets = Marketdata(), wallets


@pytest.fixture
def request_context():
    with Flask(__name__).test_request_context("/api/v3/order"):
        yield


def full_fills(wallets, budget_s=1.0):
    return binance.fills_of(Services(wallets), "alice", ORDER, btc_usdt(),
                            time.monotonic() + budget_s)


def test_fills_carry_the_users_rate(request_context):
    wallets = Wallets({"maker": "0", "taker": "0.0005"})  # a market maker's tier
    assert full_fills(wallets) == [{"price": "30000.00000000", "qty": "0.01000000",
                                    "commission": "0.00000500", "commissionAsset": "BTC",
                                    "tradeId": 41}]
    assert wallets.asked == [("alice", "BTC-USDT", [])]


def test_without_wallets_the_markets_schedule_answers(request_context, caplog):
    (fill,) = full_fills(Wallets(None))
    # the market's taker rate, 0.2 % of the 0.01 BTC received
    assert (Decimal(fill["commission"]), fill["commissionAsset"]) == (Decimal("0.00002"), "BTC")
    assert "no fee rates from wallets" in caplog.text


def test_a_silent_wallets_is_not_waited_for_past_the_orders_budget(request_context, caplog):
    """Found by killing wallets (kill -9) under a python-binance FULL IOC: the
    answer waited for the 10 s RPC timeout, and the bot's own 10 s timeout
    fired first. The fills are answered at the market's schedule once the
    order's budget is spent (here 0.2 s; the bound below only keeps a broken
    version from hanging the suite)."""
    with eventlet.Timeout(30):
        (fill,) = full_fills(Wallets(silent=True), budget_s=0.2)
    assert (Decimal(fill["commission"]), fill["commissionAsset"]) == (Decimal("0.00002"), "BTC")
    assert "no fee rates from wallets" in caplog.text
