"""Concurrent REST order requests go to orders in batches (gateway/batcher.py,
issue 18), and each HTTP request is answered with its own outcome: the
placed ones with their order, a refused one with the code the same request
alone gets. Through the public APIs of the running gateway."""
import uuid
from decimal import Decimal

import eventlet
import psycopg

import binance_testkit as kit
import native_testkit as native

MARKET = "BTC-USDT"
CONCURRENT = 16


def place(settings, trader, quantity, price, client_id=None):
    params = {"symbol": MARKET.replace("-", ""), "side": "BUY", "type": "LIMIT",
              "timeInForce": "GTC", "quantity": quantity, "price": str(price),
              "newOrderRespType": "ACK"}
    if client_id:
        params["newClientOrderId"] = client_id
    response = kit.raw(settings, "POST", "/api/v3/order", trader, params, body=True)
    return response.status_code, response.json()


def test_concurrent_rest_orders_each_get_their_own_answer(settings):
    price = kit.far_bid(settings, MARKET)
    trader = kit.new_trader(settings, {"USDT": str(price * 2)}, prefix="gw-batch")
    # Refusals alone first: what the single request is answered.
    alone_funds = place(settings, trader, "5", price)
    taken = f"taken-{uuid.uuid4().hex[:8]}"
    assert place(settings, trader, "0.001", price, taken)[0] == 200
    alone_duplicate = place(settings, trader, "0.001", price, taken)
    assert alone_funds[0] >= 400 and alone_duplicate[0] >= 400, (alone_funds, alone_duplicate)

    requests = [("0.001", None)] * (CONCURRENT - 2) + [("5", None), ("0.001", taken)]
    answers = list(eventlet.GreenPool(CONCURRENT).imap(
        lambda request: place(settings, trader, request[0], price, request[1]), requests))

    placed = [body for status, body in answers[:-2] if status == 200]
    assert len(placed) == CONCURRENT - 2, answers
    assert len({body["orderId"] for body in placed}) == len(placed)
    assert answers[-2] == alone_funds[:1] + (answers[-2][1],) and \
        answers[-2][1]["code"] == alone_funds[1]["code"], (answers[-2], alone_funds)
    assert answers[-1][0] == alone_duplicate[0] and \
        answers[-1][1]["code"] == alone_duplicate[1]["code"], (answers[-1], alone_duplicate)

    # Each placed order exists once and holds its own funds.
    with kit.rpc_proxy(settings) as rpc:
        mine = {o["order_id"] for o in rpc.orders.open_orders(trader.user_id)}
        balance = rpc.wallets.balance(trader.user_id, "USDT")
    assert {body["orderId"] for body in placed} <= mine and len(mine) == len(placed) + 1
    assert Decimal(balance["locked"]) == price * Decimal("0.001") * (len(placed) + 1)

    # The gateway sent them in batches: several orders share one acceptance
    # transaction (its now() is their created_at; one transaction per order
    # without the batcher). Each order of a place_orders call is a request of
    # its own (its request id derives from the call's and its position), so
    # request ids do not show the batching.
    with psycopg.connect(settings.postgres_dsn()) as conn:
        stamps, transactions = conn.execute(
            "SELECT count(DISTINCT created_at), count(DISTINCT xmin::text) FROM orders "
            "WHERE order_id = ANY(%s)", ([body["orderId"] for body in placed],)).fetchone()
    assert stamps < len(placed) and transactions < len(placed), (stamps, transactions)

    response = kit.raw(settings, "DELETE", "/api/v3/openOrders", trader,
                       {"symbol": MARKET.replace("-", "")})
    assert response.status_code == 200, response.text


def test_concurrent_native_orders_each_get_their_own_answer(settings):
    person = native.new_person(settings, {"USDT": "1000"}, prefix="nat-batch")
    price = kit.far_bid(settings, MARKET)
    bodies = [{"market": MARKET, "side": "buy", "type": "limit", "quantity": "0.001",
               "price": str(price)} for _ in range(CONCURRENT - 1)]
    bodies.append({"market": MARKET, "side": "buy", "type": "limit", "quantity": "100",
                   "price": str(price)})
    answers = list(eventlet.GreenPool(CONCURRENT).imap(
        lambda body: native.api(settings, person, "POST", "/api/v1/orders", json=body), bodies))
    assert [a.status_code for a in answers[:-1]] == [201] * (CONCURRENT - 1), \
        [a.text for a in answers[:-1] if a.status_code != 201][:2]
    assert answers[-1].status_code == 400 and \
        native.error_code(answers[-1]) == "INSUFFICIENT_FUNDS", answers[-1].text
    assert len({a.json()["order_id"] for a in answers[:-1]}) == CONCURRENT - 1
    response = native.api(settings, person, "DELETE", "/api/v1/orders",
                          params={"market": MARKET})
    assert response.status_code == 200, response.text
