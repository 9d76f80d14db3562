"""GET /api/v3/rateLimit/order (Binance's "Query Unfilled Order Count",
USER_DATA, weight 40): the caller's count in each ORDERS limit of
exchangeInfo, read from the counters new orders are refused on
(gateway/ratelimit.py), through python-binance's ``get_current_order_count``
and ccxt's ``privateGetRateLimitOrder``; signed like every USER_DATA call.

A fresh trader per test (the counts are per account, so they start at 0), and
its own loopback address (tests/e2e/loopback.py) where the request weight is
looked at (the weight is counted per client IP)."""
import time
from decimal import Decimal

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


def test_the_keys_of_one_account_share_its_count(gateway_url, settings):
    """Binance: "The unfilled order count is tracked by each account ...
    shared across all IP addresses, all API keys and all APIs". Orders placed
    with two keys of one trader add to one count, which both keys read; another
    trader's count is not touched."""
    trader = kit.new_trader(settings, {"USDT": "100000"}, prefix="gwcount")
    second = kit.another_key(settings, trader, permissions=["read", "trade"])
    first_client = kit.binance_client(gateway_url, trader.api_key, trader.secret)
    second_client = kit.binance_client(gateway_url, second["api_key"], second["secret"])
    price = str(far_bid(settings, MARKET))
    placed = []
    for client in (first_client, first_client, second_client):
        placed.append((client, client.create_order(
            symbol=BINANCE, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.01",
            price=price, newOrderRespType="ACK")))
    assert second_client.response.headers["X-MBX-ORDER-COUNT-1D"] == "3"
    assert by_interval(first_client.get_current_order_count())["1DAY"] == 3
    assert by_interval(second_client.get_current_order_count())["1DAY"] == 3
    other = kit.new_trader(settings, {}, permissions=("read",), prefix="gwcount")
    other_client = kit.binance_client(gateway_url, other.api_key, other.secret)
    assert by_interval(other_client.get_current_order_count())["1DAY"] == 0
    for client, order in placed:
        client.cancel_order(symbol=BINANCE, orderId=order["orderId"])


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


def day_count(client) -> int:
    return by_interval(client.get_current_order_count())["1DAY"]


def soon(probe):
    """``probe()`` true within 10 s, asked twice a second (the count's read
    weighs 40: polled faster it would spend the IP's weight)."""
    kit.eventually(probe, timeout_s=10.0, interval_s=0.5)


def test_an_orders_first_fill_takes_it_off_the_count(gateway_url, settings):
    """Binance: "When any order is filled for the first time (partially or
    fully), the order count will be decremented by 1 for the current
    10-second and 24-hour order count windows", asynchronously (an order that
    fills at once answers with the count before). Here: a resting sell's
    first partial fill takes it off its maker's count, its second fill takes
    nothing more; each taker order that filled comes off the taker's count;
    the maker's order that never fills stays counted. (The DAY window: the
    10 s one may turn during the test.)"""
    maker = kit.new_trader(settings, {"BTC": "1"}, prefix="gwfill")
    taker = kit.new_trader(settings, {"USDT": "100000"}, prefix="gwfill")
    maker_client = kit.binance_client(gateway_url, maker.api_key, maker.secret)
    taker_client = kit.binance_client(gateway_url, taker.api_key, taker.secret)
    price = kit.quiet_price(settings)
    resting = maker_client.create_order(symbol=BINANCE, side="SELL", type="LIMIT",
                                        timeInForce="GTC", quantity="0.003", price=str(price),
                                        newOrderRespType="ACK")
    far_ask = str((price * Decimal("1.1")).quantize(kit.TICK))
    unfilled = maker_client.create_order(symbol=BINANCE, side="SELL", type="LIMIT",
                                         timeInForce="GTC", quantity="0.001", price=far_ask,
                                         newOrderRespType="ACK")
    assert maker_client.response.headers["X-MBX-ORDER-COUNT-1D"] == "2"

    def buy_one():
        bought = taker_client.create_order(symbol=BINANCE, side="BUY", type="LIMIT",
                                           timeInForce="IOC", quantity="0.001", price=str(price),
                                           newOrderRespType="FULL")
        assert bought["status"] == "FILLED" and len(bought["fills"]) == 1, bought
        return int(taker_client.response.headers["X-MBX-ORDER-COUNT-1D"])

    assert buy_one() == 1                            # counted when placed ...
    soon(lambda: day_count(taker_client) == 0)   # ... off once filled
    soon(lambda: day_count(maker_client) == 1)   # the resting sell's first fill
    # Past every gateway process's sync of the counts (1 s, gateway/ratelimit.py
    # SYNC_S): the process answering the next order may have read the
    # taker's fills before the first one was taken off.
    time.sleep(1.5)
    assert buy_one() == 1
    soon(lambda: day_count(taker_client) == 0)
    # The bridge took the taker's second order off after the maker's second
    # fill (one trade, maker first); past any process's sync (1 s), the
    # maker's count is still 1: a second fill takes nothing.
    time.sleep(1.5)
    assert day_count(maker_client) == 1
    order = maker_client.get_order(symbol=BINANCE, orderId=resting["orderId"])
    assert (order["status"], Decimal(order["executedQty"])) == ("PARTIALLY_FILLED",
                                                                 Decimal("0.002"))
    for placed in (resting, unfilled):
        maker_client.cancel_order(symbol=BINANCE, orderId=placed["orderId"])
    assert day_count(maker_client) == 1              # a cancel gives nothing back


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
