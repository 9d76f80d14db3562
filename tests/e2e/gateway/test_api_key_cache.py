"""The gateway's cache of verified API keys (gateway/keycache.py), on the
running stack: it spares users a call per request, and users' events make a
revoked key, a frozen account and a changed IP allow-list apply within the
event's delivery, well inside the cache's 60 s TTL (so only the event can
make these tests pass)."""
import re
import time

import pytest
import requests

import binance_testkit as kit
from binance_testkit import BINANCE, MARKET
from tests.integration.identity_kit import PrincipalTokens

# Far below EXCHANGE_GATEWAY_KEY_CACHE_TTL_S (60): a refusal seen within it
# came from the event, not from the entry's expiry.
EVENT_WAIT_S = 20.0


@pytest.fixture(scope="module")
def order_test(settings):
    """POST /api/v3/order/test for a trader: the trade permission checked,
    nothing placed."""
    price = str(kit.far_bid(settings, MARKET))

    def post(trader):
        return kit.raw(settings, "POST", "/api/v3/order/test", trader, body=True, params={
            "symbol": BINANCE, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "0.01", "price": price})
    return post


def users_calls(settings) -> dict[str, float]:
    """How often users ran each API-key verb so far (its /metrics)."""
    port = settings["EXCHANGE_METRICS_PORT_USERS"]
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = {}
    for verb in ("verify_request", "verification_material"):
        match = re.search(r'exchange_entrypoint_duration_seconds_count\{[^}]*entrypoint="'
                          + verb + r'"[^}]*\} ([0-9.e+]+)', text)
        found[verb] = float(match.group(1)) if match else 0.0
    return found


def refused_within(probe, status: int, code: int, timeout_s: float = EVENT_WAIT_S):
    """Repeat ``probe()`` until it answers ``status`` with Binance ``code``."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = probe()
        if response.status_code == status and response.json().get("code") == code:
            return response
        assert response.status_code == 200, response.text
        assert time.monotonic() < deadline, f"still accepted after {timeout_s} s"
        time.sleep(0.1)


@pytest.fixture
def operator_token(settings):
    """A realm user with the ``admin`` role, deleted afterwards."""
    tokens = PrincipalTokens(settings)
    yield tokens.person("admin")
    tokens.delete_all()


def test_requests_with_a_cached_key_do_not_call_users(settings, order_test):
    trader = kit.new_trader(settings)
    assert order_test(trader).status_code == 200     # fetches the key once
    before = users_calls(settings)
    for _ in range(30):
        response = order_test(trader)
        assert response.status_code == 200, response.text
    after = users_calls(settings)
    # 30 without the cache; other tests' requests may add a few.
    assert after["verify_request"] - before["verify_request"] < 15, (before, after)
    assert after["verification_material"] - before["verification_material"] < 15, \
        (before, after)


def test_a_revoked_key_is_refused_once_its_event_is_delivered(settings, order_test):
    trader = kit.new_trader(settings)
    assert order_test(trader).status_code == 200     # now cached
    kit.revoke(settings, trader, trader.api_key)
    refused_within(lambda: order_test(trader), 401, -2015)
    assert order_test(trader).status_code == 401


def test_a_frozen_user_is_refused_once_the_event_is_delivered(settings, order_test, operator_token):
    trader = kit.new_trader(settings)
    assert order_test(trader).status_code == 200
    with kit.rpc_proxy(settings) as rpc:
        rpc.users.freeze_user(operator_token, trader.user_id, "key cache test")
    refused_within(lambda: order_test(trader), 403, -2010)
    # reading stays allowed for a frozen account
    assert kit.raw(settings, "GET", "/api/v3/account", trader).status_code == 200
    with kit.rpc_proxy(settings) as rpc:
        rpc.users.unfreeze_user(operator_token, trader.user_id, "cleared")
    deadline = time.monotonic() + EVENT_WAIT_S
    while order_test(trader).status_code != 200:
        assert time.monotonic() < deadline, "still refused after unfreezing"
        time.sleep(0.1)


def test_a_changed_ip_allowlist_applies_once_its_event_is_delivered(settings, order_test):
    trader = kit.new_trader(settings, ip_allowlist=["127.0.0.0/8"])
    assert order_test(trader).status_code == 200     # cached, allowed
    with kit.rpc_proxy(settings) as rpc:
        changed = rpc.users.change_api_key(trader.token, trader.api_key,
                                           {"ip_allowlist": ["198.51.100.0/24"]})
    assert changed["ip_allowlist"] == ["198.51.100.0/24"]
    refused_within(lambda: order_test(trader), 401, -2015)
    with kit.rpc_proxy(settings) as rpc:
        rpc.users.change_api_key(trader.token, trader.api_key, {"ip_allowlist": None})
    assert order_test(trader).status_code == 200
