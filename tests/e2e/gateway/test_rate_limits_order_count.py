"""GET /api/v3/rateLimit/order (Binance's "Query Unfilled Order Count",
USER_DATA, weight 40): the caller's count in each ORDERS limit of
exchangeInfo, read from the counters new orders are refused on
(gateway/ratelimit.py), through python-binance's ``get_current_order_count``
and ccxt's ``privateGetRateLimitOrder``; signed like every USER_DATA call.

A fresh key per test (the counts are per API key, so they start at 0), and
its own loopback address (tests/e2e/loopback.py) where the request weight is
looked at (the weight is counted per client IP)."""
import pytest
from binance.exceptions import BinanceAPIException

import binance_testkit as kit
from binance_testkit import BINANCE, MARKET, far_bid
from tests.e2e.loopback import own_address, session_from

PATH = "/api/v3/rateLimit/order"
ORDERS = 3


def order_limits(settings) -> list[dict]:
    info = kit.raw(settings, "GET", "/api/v3/exchangeInfo", params={"symbol": BINANCE})
    assert info.status_code == 200, info.text
    return [r for r in info.json()["rateLimits"] if r["rateLimitType"] == "ORDERS"]


def by_interval(counts: list[dict]) -> dict[str, int]:
    return {f'{c["intervalNum"]}{c["interval"]}': c["count"] for c in counts}


def test_the_count_rises_with_each_new_order(gateway_url, settings):
    trader = kit.new_trader(settings, {"USDT": "100000"}, prefix="gwcount")
    client = kit.binance_client(gateway_url, trader.api_key, trader.secret)
    limits = order_limits(settings)
    assert {(r["interval"], r["intervalNum"]) for r in limits} == {("SECOND", 10), ("DAY", 1)}

    before = client.get_current_order_count()
    # The limits of exchangeInfo, each with a count: the same list, nothing else.
    assert [{k: v for k, v in c.items() if k != "count"} for c in before] == limits
    assert by_interval(before) == {"10SECOND": 0, "1DAY": 0}

    price = str(far_bid(settings, MARKET))
    placed = []
    for _ in range(ORDERS):
        placed.append(client.create_order(symbol=BINANCE, side="BUY", type="LIMIT",
                                          timeInForce="GTC", quantity="0.01", price=price,
                                          newOrderRespType="ACK"))
    last_order_day_count = int(client.response.headers["X-MBX-ORDER-COUNT-1D"])
    client.get_open_orders(symbol=BINANCE)              # a read counts no order

    after = by_interval(client.get_current_order_count())
    assert after["1DAY"] == ORDERS == last_order_day_count
    # All in one 10 s window, unless one began between the orders and the read.
    assert 0 <= after["10SECOND"] <= ORDERS

    ex = kit.binance_local(gateway_url, trader.api_key, trader.secret)
    assert by_interval(ex.privateGetRateLimitOrder())["1DAY"] == ORDERS

    for order in placed:
        client.cancel_order(symbol=BINANCE, orderId=order["orderId"])
    # A cancel is no new order.
    assert by_interval(client.get_current_order_count())["1DAY"] == ORDERS


def test_a_refused_order_is_not_counted(gateway_url, settings):
    """Binance: "Every successful request to place an order adds to the
    unfilled order count". A refusal for the balance (-2010) or a filter
    (-1013) leaves the count as it was."""
    trader = kit.new_trader(settings, {"USDT": "10"}, prefix="gwcount")
    client = kit.binance_client(gateway_url, trader.api_key, trader.secret)
    price = str(far_bid(settings, MARKET))
    for quantity, code in (("5", -2010), ("0.0000001", -1013)):
        with pytest.raises(BinanceAPIException) as caught:
            client.create_order(symbol=BINANCE, side="BUY", type="LIMIT", timeInForce="GTC",
                                quantity=quantity, price=price, newOrderRespType="ACK")
        assert caught.value.code == code, caught.value
        assert caught.value.response.headers["X-MBX-ORDER-COUNT-1D"] == "0"
    assert by_interval(client.get_current_order_count()) == {"10SECOND": 0, "1DAY": 0}


def test_the_read_weighs_40_and_is_no_order(settings):
    trader = kit.new_trader(settings, {}, permissions=("read",), prefix="gwcount")
    session = session_from(own_address())
    first = kit.raw(settings, "GET", PATH, trader, session=session)
    second = kit.raw(settings, "GET", PATH, trader, session=session)
    for response in (first, second):
        assert response.status_code == 200, response.text
        assert "X-MBX-ORDER-COUNT-1D" not in response.headers
        assert by_interval(response.json()) == {"10SECOND": 0, "1DAY": 0}
    used = [int(r.headers["X-MBX-USED-WEIGHT-1M"]) for r in (first, second)]
    # 40 each (the second 40 again when a new minute began in between).
    assert used[0] == 40 and used[1] in (40, 80), used


@pytest.mark.parametrize("case, status, code", [
    ("no key", 401, -2014),
    ("unknown key", 401, -2015),
    ("no signature", 400, -1102),
    ("bad signature", 400, -1022),
])
def test_an_unsigned_or_badly_signed_read_is_refused(settings, case, status, code):
    trader = kit.new_trader(settings, {}, prefix="gwcount")
    query = kit.signed(trader, {})
    headers = {"X-MBX-APIKEY": trader.api_key}
    if case == "no key":
        headers = {}
    elif case == "unknown key":
        headers = {"X-MBX-APIKEY": "A" * 64}
    elif case == "no signature":
        query = query.rsplit("&signature=", 1)[0]
    else:
        query = kit.signed(trader, {}, secret="not-the-secret")
    response = kit.raw(settings, "GET", f"{PATH}?{query}", headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.text


def test_python_binance_with_a_wrong_secret_gets_binances_code(gateway_url, settings):
    trader = kit.new_trader(settings, {}, prefix="gwcount")
    client = kit.binance_client(gateway_url, trader.api_key, "not-the-secret")
    with pytest.raises(BinanceAPIException) as caught:
        client.get_current_order_count()
    assert (caught.value.status_code, caught.value.code) == (400, -1022)
