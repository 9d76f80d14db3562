"""orders.get_orders (the gateway's batched order reads, gateway/batcher.py)
on the real servers: each key answered at its position with what
orders.get_order answers for it, the order or its refusal's code."""
from services.common.errors import code_of
from tests.integration.orders.conftest import fund


def test_get_orders_answers_each_key_as_get_order_does(exchange):
    owner = fund(exchange, {"USDT": "100"})
    other = fund(exchange, {"USDT": "100"})
    placed = [a["order"] for a in exchange.orders.place_orders([
        {"user": owner, "market": "BTC-USDT", "side": "buy", "type": "limit",
         "price": price, "quantity": "0.1"} for price in ("90", "91")])]
    first, second = (order["order_id"] for order in placed)
    keys = [{"user": owner, "order_id": second},
            {"user": other, "order_id": first},        # another user's order
            {"user": owner, "order_id": first},
            {"user": owner, "order_id": second},       # the same key twice
            {"user": owner, "order_id": 10 ** 30},     # off the id grammar
            {"user": owner}]                           # not a key
    answers = exchange.orders.get_orders(keys)

    assert answers[0] == {"order": exchange.orders.get_order(owner, order_id=second)}
    assert answers[2] == {"order": exchange.orders.get_order(owner, order_id=first)}
    assert answers[3] == answers[0]
    try:
        exchange.orders.get_order(other, order_id=first)
        raise AssertionError("another user's order must be unknown")
    except Exception as exc:  # noqa: BLE001 - its code is what is compared
        alone = code_of(exc)
    assert alone == "UNKNOWN_ORDER" and answers[1]["error"]["code"] == alone
    assert answers[4]["error"]["code"] == "INVALID_ORDER" == answers[5]["error"]["code"]
    exchange.orders.cancel_order(owner, first)
    exchange.orders.cancel_order(owner, second)
