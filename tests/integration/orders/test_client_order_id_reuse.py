"""Binance's rule for a client order id, asked for with
``reuse_client_order_id`` (the partner API does): unique among the user's
open orders ("newClientOrderId: A unique id among open orders"), so once its
order has ended it places a new order, while a redelivered request (same
request id) is still answered with the order it placed, whatever that
order's state. Without it the id stays the user's for good, so a caller's
retry with it is safe (docs/order-flow.md, "Retries and client order ids").
Before session 12 every id stayed taken for good: a bot recycling its ids
through the partner API was refused DUPLICATE_CLIENT_ORDER_ID."""
import uuid
from decimal import Decimal as D

import pytest

from services.orders.errors import DuplicateClientOrderId
from tests.integration.orders.conftest import balance, fund, wait_status
from tests.integration.orders.test_order_redelivery import send_requests

MARKET = "BTC-USDT"


def limit_buy(rpc, user, price, client_order_id, reuse=True):
    return rpc.orders.place_order(user, MARKET, "buy", "limit", "0.1", price=price,
                                  client_order_id=client_order_id, reuse_client_order_id=reuse)


def test_a_client_order_id_is_free_again_once_its_order_has_ended(exchange):
    user = fund(exchange, {"USDT": "1000"})
    first = limit_buy(exchange, user, "99", "grid-1")
    with pytest.raises(DuplicateClientOrderId):          # its order is open
        limit_buy(exchange, user, "98", "grid-1")
    exchange.orders.cancel_order(user, first["order_id"])
    wait_status(exchange, user, first["order_id"], {"cancelled"})

    second = limit_buy(exchange, user, "98", "grid-1")
    assert second["order_id"] != first["order_id"]
    assert second["client_order_id"] == "grid-1"
    assert balance(exchange, user, "USDT") == (D("990.2"), D("9.8"))
    # A read by client order id names the open order ...
    assert exchange.orders.get_order(user, client_order_id="grid-1")["order_id"] == \
        second["order_id"]
    with pytest.raises(DuplicateClientOrderId):
        limit_buy(exchange, user, "97", "grid-1")
    exchange.orders.cancel_order(user, second["order_id"])
    wait_status(exchange, user, second["order_id"], {"cancelled"})
    # ... else the latest that had it.
    assert exchange.orders.get_order(user, client_order_id="grid-1")["order_id"] == \
        second["order_id"]
    assert balance(exchange, user, "USDT") == (D("1000"), D("0"))


def test_a_read_by_client_order_id_stays_in_the_market_it_names(exchange):
    """The id may be reused on another market once its order has ended: a
    read with the market finds that market's order, not the open one of
    another market (the gateway's origClientOrderId reads pass the symbol's
    market; before, they got the other market's order and answered -2013)."""
    user = fund(exchange, {"USDT": "1000"})
    ended = exchange.orders.place_order(user, "ETH-USDT", "buy", "limit", "0.1", price="99",
                                        client_order_id="both", reuse_client_order_id=True)
    exchange.orders.cancel_order(user, ended["order_id"])
    wait_status(exchange, user, ended["order_id"], {"cancelled"})
    open_ = limit_buy(exchange, user, "98", "both")
    assert exchange.orders.get_order(user, client_order_id="both", market="ETH-USDT")[
        "order_id"] == ended["order_id"]
    assert exchange.orders.get_order(user, client_order_id="both", market="BTC-USDT")[
        "order_id"] == open_["order_id"]
    # Without a market: the open order, else the latest (as before).
    assert exchange.orders.get_order(user, client_order_id="both")["order_id"] == \
        open_["order_id"]


def test_a_redelivered_request_still_gets_its_ended_order_not_a_new_one(
        exchange, nameko_config):
    user = fund(exchange, {"USDT": "1000"})
    body = {"args": [user, MARKET, "buy", "limit"],
            "kwargs": {"quantity": "0.1", "price": "99", "client_order_id": "recycled",
                       "reuse_client_order_id": True}}
    request_id = str(uuid.uuid4())
    (first,) = send_requests(nameko_config, [(request_id, body)])
    assert first["error"] is None, first
    order_id = first["result"]["order_id"]
    exchange.orders.cancel_order(user, order_id)
    wait_status(exchange, user, order_id, {"cancelled"})

    # The same request again (a redelivery): its order, nothing placed.
    (redelivered,) = send_requests(nameko_config, [(request_id, body)])
    assert redelivered["error"] is None, redelivered
    assert redelivered["result"]["order_id"] == order_id
    assert exchange.orders.open_orders(user) == []
    # Another request reusing the id: a new order; the first request's
    # redelivery still answers with its own.
    other_id = str(uuid.uuid4())
    other, again, other_again = send_requests(
        nameko_config, [(other_id, body), (request_id, body), (other_id, body)])
    assert other["error"] is None, other
    assert other["result"]["order_id"] != order_id
    assert again["result"]["order_id"] == order_id
    assert other_again["result"]["order_id"] == other["result"]["order_id"]
    assert [o["order_id"] for o in exchange.orders.open_orders(user)] == [
        other["result"]["order_id"]]
    assert balance(exchange, user, "USDT") == (D("990.1"), D("9.9"))
    exchange.orders.cancel_order(user, other["result"]["order_id"])
    wait_status(exchange, user, other["result"]["order_id"], {"cancelled"})


def test_a_batch_reusing_an_ended_id_places_it_once(exchange):
    """In one place_orders call the id is still used once: the second of two
    orders naming an id its ended order had is refused."""
    user = fund(exchange, {"USDT": "1000"})
    first = limit_buy(exchange, user, "99", "batch-1")
    exchange.orders.cancel_order(user, first["order_id"])
    wait_status(exchange, user, first["order_id"], {"cancelled"})
    order = {"user": user, "market": MARKET, "side": "buy", "type": "limit",
             "quantity": "0.1", "price": "99", "client_order_id": "batch-1",
             "reuse_client_order_id": True}
    answers = exchange.orders.place_orders([order, order])
    assert answers[1]["error"]["code"] == "DUPLICATE_CLIENT_ORDER_ID"
    placed = answers[0]["order"]
    assert placed["order_id"] != first["order_id"]
    exchange.orders.cancel_order(user, placed["order_id"])
    wait_status(exchange, user, placed["order_id"], {"cancelled"})


def test_by_default_an_ended_orders_id_stays_taken_so_a_retry_is_safe(exchange):
    """The native rule: a caller whose answer was lost retries with the same
    client order id and is told DUPLICATE_CLIENT_ORDER_ID even when the first
    order has ended meanwhile, never given a second order."""
    user = fund(exchange, {"USDT": "1000"})
    first = limit_buy(exchange, user, "99", "native-1", reuse=False)
    exchange.orders.cancel_order(user, first["order_id"])
    wait_status(exchange, user, first["order_id"], {"cancelled"})
    with pytest.raises(DuplicateClientOrderId):
        limit_buy(exchange, user, "99", "native-1", reuse=False)
    answers = exchange.orders.place_orders([{
        "user": user, "market": MARKET, "side": "buy", "type": "limit", "quantity": "0.1",
        "price": "99", "client_order_id": "native-1"}])
    assert answers[0]["error"]["code"] == "DUPLICATE_CLIENT_ORDER_ID"
    assert exchange.orders.open_orders(user) == []
    assert balance(exchange, user, "USDT") == (D("1000"), D("0"))
    # The same id under Binance's rule: free, the first order having ended.
    again = limit_buy(exchange, user, "99", "native-1", reuse=True)
    assert again["order_id"] != first["order_id"]
    exchange.orders.cancel_order(user, again["order_id"])
    wait_status(exchange, user, again["order_id"], {"cancelled"})
