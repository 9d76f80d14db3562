"""A native API (/api/v1) body is one JSON object, read once, from outside.

A body that was a JSON *string* holding an order (``"{\\"market\\": ...}"``,
JSON encoded twice) was decoded a second time by flask-openapi3 with
pydantic's own parser, past gateway/jsonbody.py: a key named twice there
was not refused (the last one won: ``"price": A, "price": B`` placed the
order at B), and a body the document describes as an object was taken as a
string. A query parameter named twice was read as its first value with
an access token (with an API key it is refused, as on /api/v3):
``DELETE /orders?market=BTC-USDT&market=ETH-USDT`` cancelled BTC-USDT's
orders only. And a body that was not JSON at all (a form, text/plain, a JSON
syntax error, a key named twice) was refused as "Input should be a valid
dictionary or instance of PlaceOrder", which names none of these.
"""
import json

import pytest

from binance_testkit import MARKET, far_bid
from native_testkit import api, create_key, error_code, new_person, signed


@pytest.fixture
def person(settings):
    """One per test: the balances compared must be this test's alone."""
    return new_person(settings, {"USDT": "1000"}, prefix="gwshape")


def post(settings, person, raw, content_type="application/json", path="/api/v1/orders"):
    return api(settings, person, "POST", path, data=raw, headers={"Content-Type": content_type})


def nothing_written(settings, person, balances_before):
    assert api(settings, person, "GET", "/api/v1/orders").json()["orders"] == []
    assert api(settings, person, "GET", "/api/v1/balances").json() == balances_before


def test_an_order_sent_as_a_json_string_is_refused_not_decoded_twice(settings, person):
    before = api(settings, person, "GET", "/api/v1/balances").json()
    low = far_bid(settings, MARKET)
    # Two prices, both far under the book: whichever won, nothing would trade.
    order = ('{"market": "%s", "side": "buy", "type": "limit", "quantity": "0.001", '
             '"price": "%s", "price": "%s"}' % (MARKET, low, low - 1))
    for raw in (json.dumps(order), json.dumps(order.replace(', "price": "%s"' % (low - 1), ""))):
        response = post(settings, person, raw)
        assert response.status_code == 400, response.text
        assert error_code(response) == "INVALID_INPUT"
        assert "JSON object" in response.json()["error"]["message"]
    # the batch, amend and key bodies alike, by a signed API-key request too
    key = create_key(settings, person, permissions=["read", "trade"])
    batch = json.dumps(json.dumps({"orders": [json.loads(order.replace(
        ', "price": "%s"' % (low - 1), ""))]}))
    for response in (post(settings, person, batch, path="/api/v1/orders/batch"),
                     post(settings, person, json.dumps('{"label": "x"}'), path="/api/v1/api-keys"),
                     signed(settings, key, "POST", "/api/v1/orders/batch", body=json.loads(batch))):
        assert response.status_code == 400, response.text
        assert error_code(response) == "INVALID_INPUT"
    nothing_written(settings, person, before)


@pytest.mark.parametrize("raw, content_type, said", [
    ('{"market": "BTC-USDT"}', "text/plain", "Content-Type: application/json"),
    ("market=BTC-USDT&side=buy", "application/x-www-form-urlencoded",
     "Content-Type: application/json"),
    ('{"market": "BTC-USDT",}', "application/json", "not valid JSON"),
    ('{"market": "BTC-USDT", "market": "ETH-USDT"}', "application/json", "'market' appears twice"),
    ("", "application/json", "empty"),
    ('["BTC-USDT"]', "application/json", "JSON object"),
    ("null", "application/json", "JSON object"),
])
def test_a_body_that_is_no_json_object_is_refused_saying_why(settings, person, raw, content_type,
                                                            said):
    before = api(settings, person, "GET", "/api/v1/balances").json()
    response = post(settings, person, raw, content_type)
    assert response.status_code == 400, response.text
    assert error_code(response) == "INVALID_INPUT"
    assert said in response.json()["error"]["message"], response.text
    nothing_written(settings, person, before)


def test_a_chunked_body_is_refused_saying_so(settings, person):
    """eventlet leaves a chunked body unread (werkzeug reads it as empty):
    the refusal says to send a Content-Length, not that the body is missing."""
    order = json.dumps({"market": MARKET, "side": "buy", "type": "limit", "quantity": "0.001",
                        "price": str(far_bid(settings, MARKET))}).encode()
    response = post(settings, person, iter([order]))  # a generator: requests sends it chunked
    assert response.status_code == 400, response.text
    assert "Content-Length" in response.json()["error"]["message"], response.text


def test_a_query_parameter_named_twice_is_refused(settings, person):
    low = str(far_bid(settings, MARKET))
    placed = api(settings, person, "POST", "/api/v1/orders",
                 json={"market": MARKET, "side": "buy", "quantity": "0.001", "price": low})
    assert placed.status_code == 201, placed.text
    response = api(settings, person, "DELETE", f"/api/v1/orders?market={MARKET}&market=ETH-USDT")
    assert response.status_code == 400, response.text
    assert (error_code(response), response.json()["error"].get("field")) == \
        ("INVALID_INPUT", "market")
    still = api(settings, person, "GET", f"/api/v1/orders/{placed.json()['order_id']}").json()
    assert still["status"] == "new" and not still.get("cancel_requested"), still
    listed = api(settings, person, "GET", "/api/v1/markets/BTC-USDT/depth?limit=1&limit=1000")
    assert listed.status_code == 400 and error_code(listed) == "INVALID_INPUT"
    api(settings, person, "DELETE", f"/api/v1/orders/{placed.json()['order_id']}")
