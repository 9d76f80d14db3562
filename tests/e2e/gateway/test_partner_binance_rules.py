"""Rules where the gateway answered otherwise than Binance documents, and a
bot written against Binance could trip on them (session 26), against the
running gateway:

* ``myTrades`` and ``allOrders`` with ``startTime`` and ``endTime`` more
  than 24 hours apart: Binance's -1127 "More than 24 hours between
  startTime and endTime.", where the gateway read the whole window; one of
  them alone stays unbounded (ccxt's ``since`` without ``until``);
* a cancel's answer: ``origClientOrderId`` the order's client id,
  ``clientOrderId`` the cancel's own (``newClientOrderId``, else generated),
  where the gateway answered the order's id in both;
* ``POST /order/test`` with a limit price outside the engine's band
  (exchangeInfo's PERCENT_PRICE_BY_SIDE): -1013 as a real order gets, where
  the gateway answered {}."""
import time
from decimal import Decimal

import pytest

from tests.e2e.gateway import binance_testkit as kit
from tests.e2e.gateway.binance_testkit import BINANCE, SYMBOL

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def reader(settings):
    return kit.new_trader(settings, {}, prefix="gwrules")


@pytest.mark.parametrize("path", ["/api/v3/myTrades", "/api/v3/allOrders"])
def test_a_window_over_24_hours_is_binances_1127(settings, reader, path):
    end = int(time.time() * 1000)
    response = kit.raw(settings, "GET", path, reader,
                       params={"symbol": BINANCE, "startTime": end - DAY_MS - 1, "endTime": end})
    assert response.status_code == 400, response.text
    assert response.json() == {"code": -1127,
                               "msg": "More than 24 hours between startTime and endTime."}
    # 24 hours exactly, or one bound alone however far back: answered.
    for params in ({"startTime": end - DAY_MS, "endTime": end}, {"startTime": 0},
                   {"endTime": end}):
        answered = kit.raw(settings, "GET", path, reader, params={"symbol": BINANCE, **params})
        assert answered.status_code == 200, (params, answered.text)


def test_ccxt_since_without_until_still_reads_history(gateway_url, reader):
    ex = kit.binance_local(gateway_url, reader.api_key, reader.secret)
    week_ago = int(time.time() * 1000) - 7 * DAY_MS
    assert ex.fetch_my_trades(SYMBOL, since=week_ago) == []
    assert ex.fetch_orders(SYMBOL, since=week_ago) == []


@pytest.fixture(scope="module")
def bot(settings):
    return kit.new_trader(settings, {"USDT": "10000"}, prefix="gwrulesbot")


def resting_order(settings, bot, cid: str) -> dict:
    placed = kit.raw(settings, "POST", "/api/v3/order", bot, body=True, params={
        "symbol": BINANCE, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": "0.01", "price": str(kit.far_bid(settings, kit.MARKET)),
        "newClientOrderId": cid})
    assert placed.status_code == 200, placed.text
    return placed.json()


def test_a_cancel_answers_its_own_client_id_and_the_orders_as_orig(settings, bot):
    """Binance: ``origClientOrderId`` is the order's client id, ``clientOrderId``
    the cancel request's (its ``newClientOrderId``, else a generated one);
    the gateway answered the order's id in both."""
    placed = resting_order(settings, bot, "rules-order-1")
    named = kit.raw(settings, "DELETE", "/api/v3/order", bot, params={
        "symbol": BINANCE, "orderId": placed["orderId"], "newClientOrderId": "rules-cancel-1"})
    assert named.status_code == 200, named.text
    assert (named.json()["status"], named.json()["origClientOrderId"],
            named.json()["clientOrderId"]) == ("CANCELED", "rules-order-1", "rules-cancel-1")
    placed = resting_order(settings, bot, "rules-order-2")
    generated = kit.raw(settings, "DELETE", "/api/v3/order", bot, body=True,
                        params={"symbol": BINANCE, "origClientOrderId": "rules-order-2"})
    assert generated.status_code == 200, generated.text
    body = generated.json()
    assert body["origClientOrderId"] == "rules-order-2"
    assert body["clientOrderId"] not in ("", "rules-order-2") and body["clientOrderId"].isalnum()
    # The cancelled order itself keeps its id.
    got = kit.raw(settings, "GET", "/api/v3/order", bot,
                  params={"symbol": BINANCE, "orderId": placed["orderId"]})
    assert got.json()["clientOrderId"] == "rules-order-2"


def test_a_cancel_with_a_malformed_client_id_is_refused_and_cancels_nothing(settings, bot):
    placed = resting_order(settings, bot, "rules-order-3")
    refused = kit.raw(settings, "DELETE", "/api/v3/order", bot, params={
        "symbol": BINANCE, "orderId": placed["orderId"], "newClientOrderId": "has space"})
    assert (refused.status_code, refused.json()["code"]) == (400, -1100), refused.text
    got = kit.raw(settings, "GET", "/api/v3/order", bot,
                  params={"symbol": BINANCE, "orderId": placed["orderId"]})
    assert got.json()["status"] == "NEW"
    kit.raw(settings, "DELETE", "/api/v3/order", bot,
            params={"symbol": BINANCE, "orderId": placed["orderId"]})


def band_prices(settings) -> tuple[Decimal, Decimal, Decimal]:
    """(reference price, the band's percentage as exchangeInfo states it,
    a price just outside the band above the reference)."""
    with kit.rpc_proxy(settings) as rpc:
        reference = Decimal(rpc.matching.get_depth(kit.MARKET, 1)["reference_price"])
    info = kit.raw(settings, "GET", "/api/v3/exchangeInfo", params={"symbol": BINANCE}).json()
    band = next(f for f in info["symbols"][0]["filters"]
                if f["filterType"] == "PERCENT_PRICE_BY_SIDE")
    up = Decimal(band["bidMultiplierUp"])
    return reference, up, (reference * up + kit.TICK).quantize(kit.TICK)


def test_order_test_applies_the_price_band_as_a_real_order_gets_it(settings, bot):
    """exchangeInfo states the engine's band as PERCENT_PRICE_BY_SIDE and a
    real order outside it is -1013; order/test answered {} for it."""
    reference, up, outside = band_prices(settings)
    order = {"symbol": BINANCE, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
             "quantity": "0.01", "price": str(outside)}
    band_refusal = {"code": -1013, "msg": "Filter failure: PERCENT_PRICE_BY_SIDE"}
    tested = kit.raw(settings, "POST", "/api/v3/order/test", bot, params=order, body=True)
    assert (tested.status_code, tested.json()) == (400, band_refusal), tested.text
    placed = kit.raw(settings, "POST", "/api/v3/order", bot, params=order, body=True)
    assert (placed.status_code, placed.json()) == (400, band_refusal), placed.text
    # Below the band on the sell side, LIMIT_MAKER too; inside it: {} as before.
    below = (reference * (2 - up) - kit.TICK).quantize(kit.TICK)
    for params in ({**order, "side": "SELL", "price": str(below)},
                   {**order, "type": "LIMIT_MAKER", "timeInForce": None}):
        params = {k: v for k, v in params.items() if v is not None}
        tested = kit.raw(settings, "POST", "/api/v3/order/test", bot, params=params, body=True)
        assert (tested.status_code, tested.json()) == (400, band_refusal), (params, tested.text)
    inside = kit.raw(settings, "POST", "/api/v3/order/test", bot, body=True,
                     params={**order, "price": str(kit.far_bid(settings, kit.MARKET))})
    assert (inside.status_code, inside.json()) == (200, {}), inside.text
    # A market order has no limit price: the band is not its rule.
    market = kit.raw(settings, "POST", "/api/v3/order/test", bot, body=True, params={
        "symbol": BINANCE, "side": "BUY", "type": "MARKET", "quantity": "0.01"})
    assert (market.status_code, market.json()) == (200, {}), market.text
