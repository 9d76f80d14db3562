"""POST /api/v3/order's parameters and the order objects, without servers:
strict numbers, filters with Binance's messages, statuses as ccxt reads them."""
import pytest
from flask import Flask

from gateway.api.binance import order_object, order_request, placed_object, status_of
from gateway.errors import ApiError
from test_binance_markets import btc_usdt


def parsed(body: str) -> dict:
    app = Flask(__name__)
    with app.test_request_context("/api/v3/order", method="POST", data=body,
                                  content_type="application/x-www-form-urlencoded"):
        return order_request(btc_usdt())


def refused(body: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parsed(body)
    return caught.value


LIMIT = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"


def test_a_limit_order_becomes_place_order_arguments():
    args = parsed(f"{LIMIT}&quantity=0.0525&price=50000&newClientOrderId=x-TKT5PX2Fabc")
    assert args == {"market": "BTC-USDT", "side": "buy", "stp_mode": None,
                    "client_order_id": "x-TKT5PX2Fabc", "reuse_client_order_id": True,
                    "type": "limit", "quantity": "0.0525",
                    "price": "50000", "time_in_force": "GTC", "post_only": False}
    # Binance's rule (unique among open orders) only for an id the partner sent.
    assert "reuse_client_order_id" not in parsed(f"{LIMIT}&quantity=0.0525&price=50000")


def test_limit_maker_is_post_only_and_market_by_quote_is_a_quote_amount():
    maker = parsed("symbol=BTCUSDT&side=SELL&type=LIMIT_MAKER&quantity=0.01&price=30000")
    assert maker["post_only"] and maker["time_in_force"] == "GTC"
    by_quote = parsed("symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=100.5")
    assert by_quote["quote_amount"] == "100.5" and "quantity" not in by_quote


@pytest.mark.parametrize("body, code, message", [
    (f"{LIMIT}&quantity=1e-05&price=30000", -1100, None),            # python-binance's float
    (f"{LIMIT}&quantity=0.01&price=30000.005", -1013, "Filter failure: PRICE_FILTER"),
    (f"{LIMIT}&quantity=0.00015&price=30000", -1013, "Filter failure: LOT_SIZE"),
    (f"{LIMIT}&quantity=0.0001&price=30000", -1013, "Filter failure: NOTIONAL"),
    (f"{LIMIT}&quantity=-1&price=30000", -1100, None),
    (f"{LIMIT}&quantity=0.01", -1102, None),
    ("symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=0.01&price=30000", -1102, None),
    ("symbol=BTCUSDT&side=BUY&type=STOP_LOSS&quantity=0.01", -1116, "Invalid orderType."),
    ("symbol=BTCUSDT&side=HOLD&type=MARKET&quantity=0.01", -1100, None),
    ("symbol=BTCUSDT&side=BUY&type=MARKET", -1102, None),
    ("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01&quoteOrderQty=10", -1106, None),
    ("symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=4", -1013, "Filter failure: NOTIONAL"),
    ("symbol=BTCUSDT&side=BUY&type=MARKET&quoteOrderQty=10.0000001", -1111, None),
    ("symbol=BTCUSDT&side=SELL&type=MARKET&quoteOrderQty=10", -1013, None),
    (f"{LIMIT}&quantity=0.01&price=30000&newClientOrderId=has space", -1100, None),
    (f"{LIMIT}&quantity=0.01&price=30000&quantity=0.02", -1101, None),
    # A market order never rests: /order/test passed it, /order was refused by
    # orders (-1102 "time_in_force: a market order is IOC or FOK").
    ("symbol=BTCUSDT&side=BUY&type=MARKET&timeInForce=GTC&quantity=0.01", -1106,
     "Parameter 'timeInForce' sent when not required."),
])
def test_bad_orders_are_refused_with_binances_code(body, code, message):
    error = refused(body)
    assert error.status == 400 and error.binance_code == code
    if message:
        assert error.binance_msg == message


def order(**overrides) -> dict:
    row = {"order_id": 7, "client_order_id": "c1", "side": "buy", "order_type": "limit",
           "price": "30000", "quantity": "0.01", "quote_amount": None, "time_in_force": "GTC",
           "post_only": False, "stp_mode": None, "status": "new", "reason": None,
           "filled_quantity": "0", "filled_quote": "0", "market": "BTC-USDT",
           "created_at": "2026-12-04T16:32:52.815302+00:00",
           "updated_at": "2026-12-04T16:32:53.000000+00:00"}
    row.update(overrides)
    return row


@pytest.mark.parametrize("status, reason, shown", [
    ("new", None, "NEW"), ("partially_filled", None, "PARTIALLY_FILLED"),
    ("filled", None, "FILLED"), ("cancelled", "CANCEL", "CANCELED"),
    ("expired", "TIME_IN_FORCE", "EXPIRED"), ("expired", "SELF_TRADE", "EXPIRED_IN_MATCH"),
    ("rejected", "FOK_NOT_FILLABLE", "EXPIRED"), ("rejected", "NO_LIQUIDITY", "EXPIRED"),
    ("rejected", "MARKET_HALTED", "REJECTED"),
])
def test_statuses(status, reason, shown):
    assert status_of(order(status=status, reason=reason)) == shown


def test_order_objects_in_binances_shape():
    body = order_object(order(post_only=True, filled_quantity="0.005", filled_quote="150"),
                        btc_usdt())
    assert body["symbol"] == "BTCUSDT" and body["type"] == "LIMIT_MAKER"
    assert body["executedQty"] == "0.00500000" and body["cummulativeQuoteQty"] == \
        "150.00000000"
    assert body["time"] == 1796401972815 and body["isWorking"] and body["orderListId"] == -1
    ack = placed_object(order(), btc_usdt(), "ACK", None)
    assert set(ack) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    full = placed_object(order(), btc_usdt(), "FULL", [])
    assert full["fills"] == [] and "transactTime" in full and "time" not in full
    assert "fills" not in placed_object(order(), btc_usdt(), "RESULT", None)


def test_a_cancelled_order_names_the_cancels_own_client_id():
    """Binance's cancel answer: the order's client id in ``origClientOrderId``,
    the cancel request's ``newClientOrderId`` (else a generated one) in
    ``clientOrderId``."""
    from gateway.api.binance import cancel_client_id, cancelled_object

    app = Flask(__name__)
    with app.test_request_context("/api/v3/order?symbol=BTCUSDT&orderId=7"
                                  "&newClientOrderId=cancel-1"):
        named = cancel_client_id()
    with app.test_request_context("/api/v3/order?symbol=BTCUSDT&orderId=7"):
        generated = cancel_client_id()
    assert named == "cancel-1" and len(generated) == 22 and generated.isalnum()
    body = cancelled_object(order(status="cancelled"), btc_usdt(), named)
    assert (body["status"], body["origClientOrderId"], body["clientOrderId"]) == (
        "CANCELED", "c1", "cancel-1")
    with app.test_request_context("/api/v3/order?symbol=BTCUSDT&orderId=7"
                                  "&newClientOrderId=has%20space"):
        with pytest.raises(ApiError) as caught:
            cancel_client_id()
    assert (caught.value.binance_code, caught.value.field) == (-1100, "newClientOrderId")


def test_a_read_by_client_order_id_asks_for_the_symbols_market():
    """The same id may name an order in each market (reused once its order
    ended): the read passes the symbol's market to orders, which filters on
    it (tests/integration/orders/test_client_order_id_reuse.py). Before, the
    gateway got the open-or-latest across all markets and, finding it in
    another market, answered -2013 (review R, session 12 #2)."""
    from types import SimpleNamespace

    from gateway.api.binance import _find_order

    class Orders:
        def get_order(self, user, client_order_id=None, market=None):
            # orders' answer without a market: the open order, on ETH-USDT
            return order(market=market or "ETH-USDT", client_order_id=client_order_id)

    services = SimpleNamespace(orders=Orders())
    who = SimpleNamespace(user_id="u1")
    with Flask(__name__).test_request_context(
            "/api/v3/order?symbol=BTCUSDT&origClientOrderId=grid-1"):
        found = _find_order(services, who, btc_usdt(), -2013, "Order does not exist.")
    assert (found["market"], found["client_order_id"]) == ("BTC-USDT", "grid-1")


@pytest.mark.parametrize("body, code, message", [
    (f"{LIMIT}&quantity=&price=30000", -1105, "Parameter 'quantity' was empty."),
    (f"{LIMIT}&quantity=0.01&price=", -1105, "Parameter 'price' was empty."),
    (f"{LIMIT}&quantity=0.01&price=30000&newClientOrderId=", -1118,
     "New client order ID was empty."),
    (f"{LIMIT}&quantity=0.01&price=30000&selfTradePreventionMode=", -1105,
     "Parameter 'selfTradePreventionMode' was empty."),
    ("symbol=BTCUSDT&side=&type=LIMIT&quantity=0.01&price=30000", -1102,
     "Mandatory parameter 'side' was not sent, was empty/null, or malformed."),
])
def test_an_empty_parameter_is_refused_not_read_as_absent(body, code, message):
    """Read as absent, ``price=`` would have been -1102 and
    ``selfTradePreventionMode=`` the default: Binance refuses every empty
    parameter, with -1102 when it is mandatory."""
    error = refused(body)
    assert (error.status, error.binance_code, error.binance_msg) == (400, code, message)
