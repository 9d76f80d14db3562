"""``GET /api/v3/account?omitZeroBalances=true`` (Binance: "emits only the
non-zero balances"): a bot asking for its holdings only got every asset of
the exchange, zeros included, as the flag was ignored (sweep of session 25)."""
import pytest

import binance_testkit as kit


@pytest.fixture(scope="module")
def holder(settings):
    return kit.new_trader(settings, {"USDT": "100"}, prefix="gwaccount")


def balances(settings, holder, **params):
    response = kit.raw(settings, "GET", "/api/v3/account", holder, params)
    assert response.status_code == 200, response.text
    return {b["asset"]: b for b in response.json()["balances"]}


def test_omit_zero_balances_leaves_only_what_is_held(settings, holder):
    every = balances(settings, holder)
    assert every["BTC"] == {"asset": "BTC", "free": "0.00000000", "locked": "0.00000000"}
    held = balances(settings, holder, omitZeroBalances="true")
    assert list(held) == ["USDT"] and held["USDT"]["free"] == "100.00000000"
    assert balances(settings, holder, omitZeroBalances="false") == every


def test_omit_zero_balances_is_a_boolean(settings, holder):
    response = kit.raw(settings, "GET", "/api/v3/account", holder, {"omitZeroBalances": "yes"})
    assert response.status_code == 400 and response.json()["code"] == -1100, response.text
