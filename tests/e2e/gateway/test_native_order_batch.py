"""POST /api/v1/orders/batch on the running stack: each order answered on its
own with what POST /orders would answer, one orders.place_orders call,
idempotency by client order id, and rate limits counting every placed order."""
import uuid

import pytest

import native_testkit as kit
from native_testkit import api, create_key, error_code, signed

MARKET = "BTC-USDT"
BATCH = "/api/v1/orders/batch"


@pytest.fixture(scope="module")
def trader(settings):
    return kit.new_person(settings, {"USDT": "50000"}, prefix="natbatch")


@pytest.fixture(scope="module")
def key(settings, trader):
    return create_key(settings, trader, permissions=["read", "trade"])


@pytest.fixture(scope="module")
def bid(settings):
    """A buy price 10 % under the reference: it rests, nobody sells into it."""
    return str((kit.quiet_price(settings, MARKET) * 9 / 10).quantize(kit.Decimal("0.01")))


def limit(bid, quantity="0.001", **extra):
    return {"market": MARKET, "side": "buy", "type": "limit", "price": bid,
            "quantity": quantity, **extra}


def test_each_order_is_answered_on_its_own_and_a_refusal_fails_no_other(
        settings, trader, key, bid):
    orders = [limit(bid), {**limit(bid), "market": "NOPE-USDT"}, limit(bid, "5"),
              limit(bid, "0.002")]
    response = signed(settings, key, "POST", BATCH, body={"orders": orders})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [("order" if r.get("order") else r["error"]["code"]) for r in results][:2] == \
        ["order", "UNKNOWN_MARKET"]
    assert results[2].get("order") is None and results[2]["error"]["status"] == 400  # funds
    assert results[3].get("order") is not None
    for placed, sent in ((results[0], orders[0]), (results[3], orders[3])):
        order = api(settings, trader, "GET", f"/api/v1/orders/{placed['order']['order_id']}")
        assert order.status_code == 200 and order.json()["quantity"] == sent["quantity"]
    # the refusals are POST /orders' own, status and code (the code's part
    # before any ':': at this writing orders names the refused hold there,
    # "hold order:<order id>", which differs between the two orders)
    for index in (1, 2):
        single = signed(settings, key, "POST", "/api/v1/orders", body=orders[index])
        assert (single.status_code, error_code(single).split(":")[0]) == \
            (results[index]["error"]["status"], results[index]["error"]["code"].split(":")[0])
        assert results[index]["error"].get("field") == single.json()["error"].get("field")
    for placed in (results[0], results[3]):
        api(settings, trader, "DELETE", f"/api/v1/orders/{placed['order']['order_id']}")


def test_a_client_order_id_places_its_order_once(settings, key, bid):
    repeated = f"batch-{uuid.uuid4().hex[:12]}"
    orders = [limit(bid, client_order_id=repeated), limit(bid, client_order_id=repeated)]
    first = signed(settings, key, "POST", BATCH, body={"orders": orders}).json()["results"]
    assert first[0]["order"]["client_order_id"] == repeated
    assert first[1]["error"]["code"] == "DUPLICATE_CLIENT_ORDER_ID"
    again = signed(settings, key, "POST", BATCH, body={"orders": orders[:1]}).json()["results"]
    assert again[0]["error"]["code"] == "DUPLICATE_CLIENT_ORDER_ID"
    single = signed(settings, key, "POST", "/api/v1/orders", body=orders[0])
    assert (single.status_code, error_code(single)) == \
        (again[0]["error"]["status"], "DUPLICATE_CLIENT_ORDER_ID")


def fresh_account(settings):
    """A trader of its own and a key: the order counts are per account, so
    they start at 0 (the module's trader has placed orders already)."""
    person = kit.new_person(settings, {"USDT": "50000"}, prefix="natbatch")
    return person, create_key(settings, person, permissions=["read", "trade"])


def test_rate_limits_count_every_order_of_a_batch(settings, bid):
    person, fresh = fresh_account(settings)
    response = signed(settings, fresh, "POST", BATCH, body={"orders": [limit(bid)] * 3})
    assert response.status_code == 200, response.text
    assert response.headers["X-MBX-ORDER-COUNT-10S"] == "3"
    assert response.headers["X-MBX-ORDER-COUNT-1D"] == "3"
    for result in response.json()["results"]:
        api(settings, person, "DELETE", f"/api/v1/orders/{result['order']['order_id']}")


def test_a_batch_counts_the_orders_it_placed_not_the_refused_ones(settings, bid):
    """As on Binance, only placed orders count toward the order limits: the
    refused ones (an unknown market, a hold the balance cannot cover) are
    given back, and the headers show the count after it."""
    person, fresh = fresh_account(settings)
    orders = [limit(bid), {**limit(bid), "market": "NOPE-USDT"}, limit(bid, "5"), limit(bid)]
    response = signed(settings, fresh, "POST", BATCH, body={"orders": orders})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r.get("order") is not None for r in results] == [True, False, False, True]
    assert response.headers["X-MBX-ORDER-COUNT-10S"] == "2"
    assert response.headers["X-MBX-ORDER-COUNT-1D"] == "2"
    refused = signed(settings, fresh, "POST", "/api/v1/orders", body=limit(bid, "5"))
    assert refused.status_code == 400, refused.text
    assert refused.headers["X-MBX-ORDER-COUNT-1D"] == "2"            # given back
    for placed in (results[0], results[3]):
        api(settings, person, "DELETE", f"/api/v1/orders/{placed['order']['order_id']}")


@pytest.mark.parametrize("count", [0, 51])
def test_a_batch_holds_1_to_50_orders(settings, key, bid, count):
    response = signed(settings, key, "POST", BATCH, body={"orders": [limit(bid)] * count})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == "orders"


def test_a_batch_needs_the_trade_permission(settings, trader, bid):
    reader = create_key(settings, trader, permissions=["read"])
    response = signed(settings, reader, "POST", BATCH, body={"orders": [limit(bid)]})
    assert response.status_code in (401, 403) and error_code(response) == "APIKEY_PERMISSION_DENIED"
