"""Concurrent REST cancels go to orders with the placements, in the same
``orders.place_and_cancel`` calls (gateway/batcher.py; issue 18: "cancels
and amends go through the same batching"), and each HTTP request keeps its
own answer.

Through a gateway of this tree and the services it calls, real processes in
the test namespace (own_stack.py), counting the calls each RPC entrypoint
of orders served (its Prometheus metrics). A first cancel is held inside
orders' acceptance transaction (the test locks its order row), so that the
requests sent meanwhile queue in the gateway's batcher behind that one call
in flight, as they do under load.
"""
import uuid
from decimal import ROUND_UP, Decimal

import eventlet
import psycopg
import pytest

import binance_testkit as kit
import native_testkit as native
from own_stack import OwnStack

pytestmark = pytest.mark.timeout(600)

MARKET, SYMBOL = "BTC-USDT", "BTCUSDT"
EACH = 6   # requests of each kind (place, cancel) and API (/api/v3, /api/v1)
QUANTITY = Decimal("0.01")
# One call per request: what the gateway sent before (a /api/v3 cancel was a
# get_order and a cancel_order call, a native cancel a cancel_order call).
SINGLE = ("place_order", "place_orders", "cancel_order", "cancel_orders", "get_order")


@pytest.fixture
def own(test_settings, nameko_config, test_run_dir):
    stack = OwnStack(test_settings, nameko_config,
                     test_run_dir / f"own-gateway-{uuid.uuid4().hex[:8]}")
    try:
        yield stack.start()
    finally:
        stack.stop()


def resting_quantity(settings, price: Decimal) -> Decimal:
    """QUANTITY, or more where the far bid is so low that QUANTITY would
    fall under the market's minimum notional (another test moved its
    reference price): from the gateway's own exchangeInfo filters."""
    info = kit.raw(settings, "GET", "/api/v3/exchangeInfo", params={"symbol": SYMBOL})
    assert info.status_code == 200, info.text
    filters = {f["filterType"]: f for f in info.json()["symbols"][0]["filters"]}
    step = Decimal(filters["LOT_SIZE"]["stepSize"]).normalize()
    floor = Decimal(filters["NOTIONAL"]["minNotional"]) * 2 / price
    return max(QUANTITY, floor.quantize(step, rounding=ROUND_UP))


def v3_place(settings, trader, price, quantity):
    response = kit.raw(settings, "POST", "/api/v3/order", trader, {
        "symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
        "quantity": str(quantity), "price": str(price), "newOrderRespType": "ACK"}, body=True)
    return response.status_code, response.json()


def v3_cancel(settings, trader, order_id):
    response = kit.raw(settings, "DELETE", "/api/v3/order", trader,
                       {"symbol": SYMBOL, "orderId": order_id})
    return response.status_code, response.json()


def native_place(settings, person, price, quantity):
    response = native.api(settings, person, "POST", "/api/v1/orders", json={
        "market": MARKET, "side": "buy", "type": "limit", "quantity": str(quantity),
        "price": str(price)})
    return response.status_code, response.json()


def native_cancel(settings, person, order_id):
    response = native.api(settings, person, "DELETE", f"/api/v1/orders/{order_id}")
    return response.status_code, response.json()


def waiting_for(settings, lock_pid: int) -> int:
    """Backends waiting for a lock the test's connection holds."""
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity "
                            "WHERE %s = ANY(pg_blocking_pids(pid))", (lock_pid,)).fetchone()[0]


def test_concurrent_rest_places_and_cancels_share_place_and_cancel_calls(own):
    settings = own.settings
    price = kit.far_bid(settings, MARKET)
    quantity = resting_quantity(settings, price)
    trader = kit.new_trader(settings, {"USDT": str(price * quantity * 4 * (EACH + 1))},
                            prefix="gw-pc")
    person = native.Person(trader.username, trader.user_id, trader.token)
    resting = [v3_place(settings, trader, price, quantity) for _ in range(1 + 2 * EACH)]
    assert {status for status, _ in resting} == {200}, resting
    blocker, *ids = [body["orderId"] for _, body in resting]
    # What an unknown order's cancel is answered alone (and must be in a batch).
    unknown_alone = native_cancel(settings, person, ids[-1] + 10_000)
    assert unknown_alone[0] == 400 and unknown_alone[1]["error"]["code"] == "UNKNOWN_ORDER"

    requests = ([("v3 cancel", order_id) for order_id in ids[:EACH]]
                + [("native cancel", order_id) for order_id in ids[EACH:]]
                + [("v3 place", None)] * EACH + [("native place", None)] * EACH
                + [("native cancel", ids[-1] + 10_000)])

    def send(request):
        kind, order_id = request
        if kind == "v3 cancel":
            return v3_cancel(settings, trader, order_id)
        if kind == "native cancel":
            return native_cancel(settings, person, order_id)
        return (v3_place if kind == "v3 place" else native_place)(
            settings, trader if kind == "v3 place" else person, price, quantity)

    before = own.entrypoint_calls("orders")
    with psycopg.connect(settings.postgres_dsn()) as lock:
        lock_pid = lock.execute("SELECT pg_backend_pid()").fetchone()[0]
        lock.execute("SELECT 1 FROM orders WHERE order_id = %s FOR UPDATE", (blocker,))
        held = eventlet.spawn(v3_cancel, settings, trader, blocker)
        for _ in range(600):   # the blocker's call is in orders, waiting for the row
            if waiting_for(settings, lock_pid):
                break
            eventlet.sleep(0.1)
        assert waiting_for(settings, lock_pid), "the first cancel never reached orders"
        pool = eventlet.GreenPool(len(requests))
        burst = [pool.spawn(send, request) for request in requests]
        # Let the burst reach the gateway's batcher (not needed for the
        # answers: a straggler only makes one more call).
        eventlet.sleep(2.0)
        lock.rollback()
    assert held.wait()[0] == 200 and held.wait()[1]["status"] == "CANCELED", held.wait()
    answers = [thread.wait() for thread in burst]
    calls = {name: count - before.get(name, 0)
             for name, count in own.entrypoint_calls("orders").items()}

    # Each request its own answer, as alone.
    for (kind, order_id), (status, body) in zip(requests, answers):
        if kind == "v3 cancel":
            assert (status, body["orderId"], body["status"]) == (200, order_id, "CANCELED"), body
        elif kind == "native cancel" and order_id in ids:
            assert (status, body["order_id"], body["cancel_requested"]) == \
                (200, order_id, True), body
        elif kind == "native cancel":
            assert (status, body["error"]["code"]) == \
                (unknown_alone[0], unknown_alone[1]["error"]["code"]), body
        elif kind == "v3 place":
            assert status == 200 and body["orderId"] > blocker, body
        else:
            assert status == 201 and body["order_id"] > blocker and body["status"] == "new", body
    placed = {body["orderId"] for (kind, _), (_, body) in zip(requests, answers)
              if kind == "v3 place"} | {body["order_id"] for (kind, _), (_, body)
                                        in zip(requests, answers) if kind == "native place"}
    assert len(placed) == 2 * EACH
    with kit.rpc_proxy(settings) as rpc:
        still_open = {o["order_id"] for o in rpc.orders.open_orders(trader.user_id, MARKET)}
    assert placed <= still_open and not still_open & set(ids), (placed, still_open, ids)

    # The calls: no request had one of its own; the 4 x EACH + 1 requests of
    # the burst (places and cancels of both APIs) went to orders in a few
    # place_and_cancel calls, the blocker's one before them.
    assert {name: calls.get(name, 0) for name in SINGLE} == dict.fromkeys(SINGLE, 0), calls
    assert 2 <= calls["place_and_cancel"] <= 1 + EACH, calls

    with kit.rpc_proxy(settings) as rpc:
        rpc.orders.cancel_all(trader.user_id, MARKET)
