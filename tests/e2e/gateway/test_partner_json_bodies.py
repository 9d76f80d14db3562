"""Hostile JSON bodies on the native API (/api/v1), from outside: every one a
4xx with an error code, nothing written.

A body naming a key twice was read with the last one winning
(``"side": "buy", "side": "sell"`` placed a sell), and a deeply nested body
escaped the JSON parser as a RecursionError, an HTTP 500 (gateway/jsonbody.py).
"""
import json

import pytest

from native_testkit import api, new_person

from binance_testkit import MARKET, far_bid


@pytest.fixture
def person(settings):
    """One per test: another test's cancelled order releases its funds
    asynchronously, and the balances compared must be this test's alone."""
    return new_person(settings, {"USDT": "1000", "BTC": "1"}, prefix="gwjson")


def post_order(settings, person, raw: str):
    return api(settings, person, "POST", "/api/v1/orders", data=raw,
               headers={"Content-Type": "application/json"})


def nothing_written(settings, person, balances_before):
    assert api(settings, person, "GET", "/api/v1/orders").json()["orders"] == []
    assert api(settings, person, "GET", "/api/v1/balances").json() == balances_before


def test_a_key_named_twice_is_refused(settings, person):
    before = api(settings, person, "GET", "/api/v1/balances").json()
    price = far_bid(settings, MARKET)
    raw = ('{"market": "%s", "side": "buy", "side": "sell", "type": "limit", '
           '"quantity": "0.001", "price": "%s"}' % (MARKET, price))
    response = post_order(settings, person, raw)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_INPUT"
    nothing_written(settings, person, before)
    # the same order with its key once is placed (the body is otherwise valid)
    once = json.loads(raw.replace('"side": "sell", ', ""))
    placed = api(settings, person, "POST", "/api/v1/orders", json=once)
    assert placed.status_code == 201, placed.text
    api(settings, person, "DELETE", f"/api/v1/orders/{placed.json()['order_id']}")


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_deep_nesting_is_a_4xx_not_a_500(settings, person, depth):
    before = api(settings, person, "GET", "/api/v1/balances").json()
    response = post_order(settings, person, "[" * depth + "]" * depth)
    assert response.status_code in (400, 413), response.text
    assert response.json()["error"]["code"] in ("INVALID_INPUT", "REQUEST_TOO_LARGE")
    nested = '{"market": ' + "[" * depth + "]" * depth + "}"
    response = post_order(settings, person, nested)
    assert response.status_code in (400, 413), response.text
    nothing_written(settings, person, before)
