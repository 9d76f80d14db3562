"""Who may do what on /api/v3: unknown, read-only, IP-restricted and revoked
keys, another user's orders, and the order of the signature checks
(BINANCE_SUBSET.md section 3). Through ccxt where it can express the case,
hand-signed requests where it cannot."""
import hashlib
import hmac
import secrets
import time
from urllib.parse import urlencode

import ccxt
import pytest
import requests

import binance_testkit as kit
from binance_testkit import BINANCE, MARKET, SYMBOL, far_bid


def binance_error(response, status, code):
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.text


def test_an_unknown_key_is_refused(gateway_url, settings):
    ex = kit.binance_local(gateway_url, secrets.token_hex(32), secrets.token_hex(32))
    with pytest.raises(ccxt.AuthenticationError):
        ex.fetch_balance()
    stranger = kit.Trader("x", "x", "x", "A" * 64, "s" * 64)
    binance_error(kit.raw(settings, "GET", "/api/v3/account", stranger), 401, -2015)


def test_a_malformed_or_missing_key_is_refused(settings):
    response = requests.get(settings.gateway_url + "/api/v3/account?timestamp=1&signature=ab",
                            headers={"X-MBX-APIKEY": "short"}, timeout=15)
    binance_error(response, 401, -2014)
    response = requests.get(settings.gateway_url + "/api/v3/account?timestamp=1", timeout=15)
    binance_error(response, 401, -2014)


def test_public_endpoints_ignore_any_key_header(settings):
    response = requests.get(settings.gateway_url + "/api/v3/ping",
                            headers={"X-MBX-APIKEY": "not-a-key"}, timeout=15)
    assert response.status_code == 200 and response.json() == {}


def test_a_read_only_key_reads_but_does_not_trade(gateway_url, settings):
    reader = kit.new_trader(settings, {"USDT": "1000"}, permissions=("read",), prefix="gwread")
    ex = kit.binance_local(gateway_url, reader.api_key, reader.secret)
    price = far_bid(settings, MARKET)
    # (ccxt reads -2015 as DDoSProtection once an instance has succeeded
    # with a private call: this refusal comes first)
    with pytest.raises(ccxt.AuthenticationError):
        ex.create_order(SYMBOL, "limit", "buy", 0.01, float(price))
    assert ex.fetch_balance()["USDT"]["free"] == 1000
    for method, path in (("DELETE", "/api/v3/openOrders"), ("POST", "/api/v3/order/test"),
                         ("DELETE", "/api/v3/order")):
        binance_error(kit.raw(settings, method, path, reader,
                              {"symbol": BINANCE, "orderId": 1}, body=method == "POST"),
                      401, -2015)
    assert ex.fetch_open_orders() == []


def test_a_key_is_refused_outside_its_ip_allow_list(gateway_url, settings):
    fenced = kit.new_trader(settings, {"USDT": "100"}, ip_allowlist=["203.0.113.0/24"],
                            prefix="gwfence")
    ex = kit.binance_local(gateway_url, fenced.api_key, fenced.secret)
    with pytest.raises(ccxt.AuthenticationError):
        ex.fetch_balance()
    # X-Forwarded-For from a peer that is not a trusted proxy changes nothing
    spoofed = kit.raw(settings, "GET", "/api/v3/account", fenced,
                      headers={"X-Forwarded-For": "203.0.113.9"})
    binance_error(spoofed, 401, -2015)
    local = kit.another_key(settings, fenced, permissions=["read"], ip_allowlist=["127.0.0.1"])
    ex_local = kit.binance_local(gateway_url, local["api_key"], local["secret"])
    assert ex_local.fetch_balance()["USDT"]["free"] == 100


def test_a_revoked_key_is_refused(gateway_url, settings):
    trader = kit.new_trader(settings, {"USDT": "100"}, prefix="gwrevoke")
    ex = kit.binance_local(gateway_url, trader.api_key, trader.secret)
    assert ex.fetch_balance()["USDT"]["free"] == 100
    kit.revoke(settings, trader, trader.api_key)
    fresh = kit.binance_local(gateway_url, trader.api_key, trader.secret)
    with pytest.raises(ccxt.AuthenticationError):
        fresh.fetch_balance()


def test_another_users_order_is_not_found(gateway_url, maker, taker, settings):
    owner = kit.binance_local(gateway_url, maker.api_key, maker.secret)
    other = kit.binance_local(gateway_url, taker.api_key, taker.secret)
    order = owner.create_order(SYMBOL, "limit", "buy", 0.01,
                               float(far_bid(settings, MARKET)))
    try:
        with pytest.raises(ccxt.OrderNotFound):
            other.fetch_order(order["id"], SYMBOL)
        with pytest.raises(ccxt.OrderNotFound):
            other.cancel_order(order["id"], SYMBOL)
        with pytest.raises(ccxt.OrderNotFound):
            other.fetch_order(None, SYMBOL, {"clientOrderId": order["clientOrderId"]})
        assert order["id"] not in {o["id"] for o in other.fetch_open_orders(SYMBOL)}
        assert owner.fetch_order(order["id"], SYMBOL)["status"] == "open"
    finally:
        owner.cancel_order(order["id"], SYMBOL)


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def test_signature_covers_the_raw_query_then_the_raw_body(settings, maker):
    price = far_bid(settings, MARKET)
    query = urlencode({"symbol": BINANCE, "timestamp": int(time.time() * 1000)})
    body = urlencode({"side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                      "quantity": "0.01", "price": str(price), "recvWindow": 10000})
    url = f"{settings.gateway_url}/api/v3/order/test?{query}"
    headers = {"X-MBX-APIKEY": maker.api_key,
               "Content-Type": "application/x-www-form-urlencoded"}
    good = requests.post(url, data=f"{body}&signature={sign(maker.secret, query + body)}",
                         headers=headers, timeout=15)
    assert good.status_code == 200 and good.json() == {}, good.text
    # the same parameters signed in another order (re-sorted) are not what was sent
    resorted = "&".join(sorted((query + "&" + body).split("&")))
    bad = requests.post(url, data=f"{body}&signature={sign(maker.secret, resorted)}",
                        headers=headers, timeout=15)
    binance_error(bad, 400, -1022)


def test_signature_checks_come_in_binances_order(settings, maker):
    base = settings.gateway_url + "/api/v3/account"
    headers = {"X-MBX-APIKEY": maker.api_key}
    now = int(time.time() * 1000)
    query = f"timestamp={now}"
    binance_error(requests.get(f"{base}?{query}", headers=headers, timeout=15), 400, -1102)
    unknown = {"X-MBX-APIKEY": "B" * 64}
    binance_error(requests.get(f"{base}?{query}", headers=unknown, timeout=15), 401, -2015)
    binance_error(requests.get(f"{base}?{query}&signature={'0' * 64}", headers=headers,
                               timeout=15), 400, -1022)
    stale = f"timestamp={now - 120_000}"
    binance_error(requests.get(f"{base}?{stale}&signature={sign(maker.secret, stale)}",
                               headers=headers, timeout=15), 400, -1021)
    wide = f"timestamp={now}&recvWindow=70000"
    binance_error(requests.get(f"{base}?{wide}&signature={sign(maker.secret, wide)}",
                               headers=headers, timeout=15), 400, -1131)
    twice = f"timestamp={now}&timestamp={now}"
    binance_error(requests.get(f"{base}?{twice}&signature={sign(maker.secret, twice)}",
                               headers=headers, timeout=15), 400, -1101)
