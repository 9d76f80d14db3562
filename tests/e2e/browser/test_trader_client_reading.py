"""What a trader reads and fills in on the web client, each in headless
Chromium against the running stack (browser steps in reading_scenarios.py,
run in a child process: see chromium.py): the orders' statuses in words,
the time of each of My trades and of each order in the history, the
withdrawal form checked before it sends anything, the server's refusal of
an address in words, and the withdrawals' statuses in words, an approval
shown without a reload."""
from __future__ import annotations

import json
import secrets
import time
import uuid

import jwt
import pytest
import requests
from nameko.standalone.rpc import ClusterRpcProxy

from tests.e2e.browser import chromium
from tests.e2e.gateway.native_testkit import rpc_proxy
from tests.integration.registry_kit import asset_spec, market_spec
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


def registry_asset(settings, symbol: str) -> dict:
    """The asset as the registry lists it (the one home of its withdrawal rules)."""
    with rpc_proxy(settings) as rpc:
        return rpc.registry.get_catalogue()["assets"][symbol]


def test_the_withdrawal_form_says_what_is_wrong_under_the_field_and_sends_nothing(settings):
    """Also shows the asset's fee and minimum, and refuses an amount below
    the minimum or one whose fee does not fit (needs a gateway serving
    GET /api/v1/assets)."""
    run("withdrawal_checked_before_sending",
        {"url": settings.gateway_url, "trader": trader(settings, {"USDT": "100"}),
         "usdt": registry_asset(settings, "USDT")})


@pytest.fixture
def no_withdrawals_market(settings, operator_token):
    """An asset listed with withdrawals disabled, and a market BASE-USDT so
    the web client offers it (delisted after the test), once the gateway
    shows both (its copies live 10 s)."""
    from services.registry import errors  # noqa: F401 -- typed refusals back over RPC
    base = f"D{uuid.uuid4().hex[:8].upper()}"
    with rpc_proxy(settings) as rpc:
        rpc.registry.list_asset(operator_token, asset_spec(base, withdraw_enabled=False))
        rpc.registry.list_market(operator_token, market_spec(f"{base}-USDT"))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            markets = requests.get(f"{settings.gateway_url}/api/v1/markets", timeout=30).json()
            asset = requests.get(f"{settings.gateway_url}/api/v1/assets/{base}", timeout=30)
            if asset.status_code == 200 and any(m["market"] == f"{base}-USDT"
                                                for m in markets["markets"]):
                break
            time.sleep(1)
        yield base
    finally:
        with rpc_proxy(settings) as rpc:
            rpc.registry.update_market(operator_token, f"{base}-USDT", {"status": "delisted"})


def test_an_asset_whose_withdrawals_are_disabled_is_said_so_and_nothing_is_sent(
        settings, no_withdrawals_market):
    run("withdrawals_disabled_said_before_sending",
        {"url": settings.gateway_url, "trader": trader(settings, {"USDT": "100"}),
         "asset": no_withdrawals_market})


@pytest.fixture
def withdrawals_in_every_status(settings, operator_token):
    """A trader with one withdrawal of USDT in each status wallets gives
    one (pending, approved, sent, rejected, cancelled), moved there over RPC
    by an operator (the web client cannot approve): the trader and
    [[withdrawal id, status]]."""
    person = trader(settings, {"USDT": "1000"})
    amount = registry_asset(settings, "USDT")["min_withdrawal"]
    admin = jwt.decode(operator_token, options={"verify_signature": False})["preferred_username"]
    with ClusterRpcProxy(settings.nameko_config(), timeout=30,
                         context_data={"access_token": operator_token}) as rpc:
        def requested(status: str) -> int:
            return rpc.wallets.request_withdrawal(person["user_id"], "USDT", "0x" + "ab" * 20,
                                                  amount, f"{status}-{uuid.uuid4().hex[:8]}"
                                                  )["withdrawal_id"]
        made = {status: requested(status)
                for status in ("pending", "approved", "sent", "rejected", "cancelled")}
        rpc.wallets.approve_withdrawal(made["approved"], admin)
        rpc.wallets.approve_withdrawal(made["sent"], admin)
        rpc.wallets.mark_withdrawal_sent(made["sent"], "0x" + secrets.token_hex(32), admin)
        rpc.wallets.reject_withdrawal(made["rejected"], admin, "browser test")
        rpc.wallets.cancel_withdrawal(person["user_id"], made["cancelled"])
        shown = {w["withdrawal_id"]: w["status"] for w in rpc.wallets.withdrawals(person["user_id"])}
    assert shown == {i: status for status, i in made.items()}, shown
    return person, [[i, status] for status, i in made.items()]


def test_each_withdrawal_status_reads_in_words(settings, withdrawals_in_every_status):
    person, withdrawals = withdrawals_in_every_status
    run("withdrawal_statuses_in_words",
        {"url": settings.gateway_url, "trader": person, "withdrawals": withdrawals})


def test_an_operators_approval_of_a_withdrawal_shows_without_a_reload(settings, operator_token):
    person = trader(settings, {"USDT": "100"})
    amount = registry_asset(settings, "USDT")["min_withdrawal"]
    with rpc_proxy(settings) as rpc:
        withdrawal = rpc.wallets.request_withdrawal(
            person["user_id"], "USDT", "0x" + "ab" * 20, amount,
            f"approval-{uuid.uuid4().hex[:8]}")["withdrawal_id"]
    admin = jwt.decode(operator_token, options={"verify_signature": False})["preferred_username"]
    run("withdrawal_approval_shows_without_a_reload",
        {"url": settings.gateway_url, "trader": person, "withdrawal": withdrawal,
         "operator": {"token": operator_token, "name": admin}})


def test_the_order_history_shows_when_each_order_was_placed_in_the_traders_zone(settings):
    run("order_history_shows_its_time",
        with_price(settings, trader=trader(settings, {"USDT": "1000"})))


def test_a_withdrawal_to_a_malformed_address_is_refused_in_words_not_a_pattern(settings):
    """Needs a gateway of this tree (its address refusal was the pattern)."""
    run("bad_address_said_in_words",
        {"url": settings.gateway_url, "trader": trader(settings, {"USDT": "100"}),
         "usdt": registry_asset(settings, "USDT")})
