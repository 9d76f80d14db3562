"""``POST /api/v3/order/cancelReplace`` (ccxt ``edit_order``, python-binance
``cancel_replace_order``) when one half fails: Binance's answers, which tell a
bot what happened to each order.

* the cancel fails, STOP_ON_FAILURE: 400 -2022 "Order cancel-replace failed."
  with ``data`` (``cancelResult`` FAILURE, ``newOrderResult`` NOT_ATTEMPTED,
  the cancel's error as ``cancelResponse``);
* one half fails, the other succeeds: 409 -2021 "Order cancel-replace
  partially failed." with ``data`` naming which;
* both fail: 400 -2022 with both errors.

The gateway answered the cancel's -2011 bare, a failed cancel under
ALLOW_FAILURE 200 as a success, and a new order refused after its cancel
had succeeded (its balance, say) with the new order's bare error (-2010): a
bot took the old order for still working while it had been cancelled
(sweep of session 25)."""
from decimal import Decimal

import ccxt
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

import binance_testkit as kit
from binance_testkit import BINANCE, MARKET, SYMBOL, far_bid
from gateway.errors import MSG_INSUFFICIENT, MSG_UNKNOWN_ORDER_CANCEL

UNKNOWN = {"code": -2011, "msg": MSG_UNKNOWN_ORDER_CANCEL}
NOT_AN_ORDER = 999_999_999_999


@pytest.fixture(scope="module")
def bot(settings):
    return kit.new_trader(settings, {"USDT": "1000"}, prefix="gwreplace")


@pytest.fixture(scope="module")
def price(settings) -> Decimal:
    return far_bid(settings, MARKET)


def place(settings, bot, price) -> int:
    response = kit.raw(settings, "POST", "/api/v3/order", bot, {
        "symbol": BINANCE, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": "0.001", "price": str(price), "newOrderRespType": "ACK"}, body=True)
    assert response.status_code == 200, response.text
    return response.json()["orderId"]


def replace(settings, bot, price, cancel_id, mode, quantity="0.001"):
    return kit.raw(settings, "POST", "/api/v3/order/cancelReplace", bot, {
        "symbol": BINANCE, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": quantity, "price": str(price), "cancelReplaceMode": mode,
        "cancelOrderId": cancel_id}, body=True)


def open_ids(settings, bot) -> set:
    response = kit.raw(settings, "GET", "/api/v3/openOrders", bot, {"symbol": BINANCE})
    assert response.status_code == 200, response.text
    return {o["orderId"] for o in response.json()}


def status_of(settings, bot, order_id) -> str:
    response = kit.raw(settings, "GET", "/api/v3/order", bot,
                       {"symbol": BINANCE, "orderId": order_id})
    assert response.status_code == 200, response.text
    return response.json()["status"]


def test_a_failed_cancel_stops_the_replace(settings, bot, price):
    before = open_ids(settings, bot)
    response = replace(settings, bot, price, NOT_AN_ORDER, "STOP_ON_FAILURE")
    assert response.status_code == 400, response.text
    assert response.json() == {
        "code": -2022, "msg": "Order cancel-replace failed.",
        "data": {"cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                 "cancelResponse": UNKNOWN, "newOrderResponse": None}}
    assert open_ids(settings, bot) == before


def test_a_failed_cancel_allowed_to_fail_is_a_partial_failure(settings, bot, price):
    response = replace(settings, bot, price, NOT_AN_ORDER, "ALLOW_FAILURE")
    assert response.status_code == 409, response.text
    body = response.json()
    assert (body["code"], body["msg"]) == (-2021, "Order cancel-replace partially failed.")
    data = body["data"]
    assert (data["cancelResult"], data["newOrderResult"]) == ("FAILURE", "SUCCESS")
    assert data["cancelResponse"] == UNKNOWN
    new_id = data["newOrderResponse"]["orderId"]
    assert data["newOrderResponse"]["status"] == "NEW" and new_id in open_ids(settings, bot)
    kit.raw(settings, "DELETE", "/api/v3/order", bot, {"symbol": BINANCE, "orderId": new_id})


@pytest.mark.parametrize("mode", ["STOP_ON_FAILURE", "ALLOW_FAILURE"])
def test_a_refused_new_order_after_the_cancel_says_the_old_one_is_gone(settings, bot, price,
                                                                       mode):
    old = place(settings, bot, price)
    response = replace(settings, bot, price, old, mode, quantity="100")   # > the balance
    assert response.status_code == 409, response.text
    body = response.json()
    assert (body["code"], body["msg"]) == (-2021, "Order cancel-replace partially failed.")
    data = body["data"]
    assert (data["cancelResult"], data["newOrderResult"]) == ("SUCCESS", "FAILURE")
    assert data["cancelResponse"]["orderId"] == old
    assert data["cancelResponse"]["status"] == "CANCELED"
    assert data["newOrderResponse"] == {"code": -2010, "msg": MSG_INSUFFICIENT}
    assert status_of(settings, bot, old) == "CANCELED"


def test_both_halves_failing(settings, bot, price):
    response = replace(settings, bot, price, NOT_AN_ORDER, "ALLOW_FAILURE", quantity="100")
    assert response.status_code == 400, response.text
    assert response.json() == {
        "code": -2022, "msg": "Order cancel-replace failed.",
        "data": {"cancelResult": "FAILURE", "newOrderResult": "FAILURE",
                 "cancelResponse": UNKNOWN,
                 "newOrderResponse": {"code": -2010, "msg": MSG_INSUFFICIENT}}}


def test_ccxt_edit_order_raises_when_the_new_order_is_refused(gateway_url, settings, bot, price):
    """Not InsufficientFunds (the new order's bare error, which says nothing of
    the cancel): an exchange error carrying Binance's body."""
    old = place(settings, bot, price)
    ex = kit.binance_local(gateway_url, bot.api_key, bot.secret)
    with pytest.raises(ccxt.ExchangeError) as caught:
        ex.edit_order(str(old), SYMBOL, "limit", "buy", 100, float(price))
    assert not isinstance(caught.value, ccxt.InsufficientFunds)
    assert '"cancelResult":"SUCCESS"' in str(caught.value)
    assert status_of(settings, bot, old) == "CANCELED"


def test_a_failed_replace_is_counted_with_a_native_code(settings, bot, price):
    """The gateway's HTTP metrics (its own port) count the refusal under a code
    the HttpErrorRatio runbook can read, not "" (tests/e2e/gateway/
    test_gateway_metrics.py); against another gateway EXCHANGE_METRICS_PORT_GATEWAY
    names its port."""
    assert replace(settings, bot, price, NOT_AN_ORDER, "STOP_ON_FAILURE").status_code == 400
    url = f"http://{settings.host}:{settings['EXCHANGE_METRICS_PORT_GATEWAY']}/metrics"
    counted = {s.labels["code"] for family in text_string_to_metric_families(
                   requests.get(url, timeout=5).text)
               if family.name == "exchange_http_responses" for s in family.samples
               if s.name == "exchange_http_responses_total"
               and s.labels["route"] == "/api/v3/order/cancelReplace"
               and s.labels["status"] == "400"}
    assert counted == {"CANCEL_REPLACE_FAILED"}, counted


def test_a_new_order_placed_by_a_partial_failure_counts(settings, bot, price):
    """A 409 -2021 whose new order was placed (the cancel failed under
    ALLOW_FAILURE) uses up order allowance like any placed order; a 400
    -2022 (nothing placed) does not. The day's count: the 10 s window may
    turn between two requests."""
    def day_count(response) -> int:
        return int(response.headers["X-MBX-ORDER-COUNT-1D"])

    before = day_count(replace(settings, bot, price, NOT_AN_ORDER, "STOP_ON_FAILURE"))
    partial = replace(settings, bot, price, NOT_AN_ORDER, "ALLOW_FAILURE")
    assert partial.status_code == 409, partial.text
    assert day_count(partial) == before + 1
    refused = replace(settings, bot, price, NOT_AN_ORDER, "STOP_ON_FAILURE")
    assert refused.status_code == 400 and day_count(refused) == before + 1
    kit.raw(settings, "DELETE", "/api/v3/order", bot,
            {"symbol": BINANCE, "orderId": partial.json()["data"]["newOrderResponse"]["orderId"]})
