"""The gateway's order path without servers: the placements and cancels of
several users' concurrent requests share one ``orders.place_and_cancel``
call and concurrent order reads one ``orders.get_orders`` call
(gateway/batcher.py), and a Binance cancel waits for the final order with
backing-off polls."""
import contextlib

import eventlet
import pytest
from eventlet.event import Event
from flask import Flask

from gateway.api import binance
from gateway.batcher import OrderBatcher, OrderRefused


class Orders:
    """``services.orders`` with ``place_and_cancel`` recorded and held in
    flight until ``release`` is sent (so that requests queue behind it). A
    placement of quantity 100 is refused for funds; a cancel of order 404 is
    UNKNOWN_ORDER, of 409 ORDER_NOT_OPEN (as orders answers them)."""

    def __init__(self):
        self.calls = []
        self.release = Event()

    def place_and_cancel(self, requests):
        self.calls.append(list(requests))
        self.release.wait()
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        (kind, args), = request.items()
        if kind == "place" and args.get("quantity") == "100":
            return {"error": {"code": "ORDER_REJECTED", "message": "no",
                              "reason": "INSUFFICIENT_FUNDS"}}
        if kind == "cancel" and args["order_id"] in (404, 409):
            code = "UNKNOWN_ORDER" if args["order_id"] == 404 else "ORDER_NOT_OPEN"
            return {"error": {"code": code, "message": "not this one"}}
        if kind == "cancel":
            return {"order": {"order_id": args["order_id"], "user": args["user"],
                              "cancel_requested": True}}
        return {"order": {"order_id": len(self.calls), "user": args["user"]}}


class Pool:
    def __init__(self, orders):
        self.services = type("Services", (), {"orders": orders})()

    @contextlib.contextmanager
    def lease(self):
        yield self.services


def settle():
    for _ in range(50):
        eventlet.sleep(0)


def test_batch_requests_of_several_users_share_one_call():
    orders = Orders()
    batcher = OrderBatcher(Pool(orders), linger_s=0)
    first = eventlet.spawn(batcher.place, "u0", {"quantity": "1"})
    settle()   # the first call is in flight: the requests below queue behind it
    requests = {user: [{"user": user, "quantity": "1"}, {"user": user, "quantity": "100"}]
                for user in ("u1", "u2", "u3")}
    waiting = {user: eventlet.spawn(batcher.place_many, orders_of)
               for user, orders_of in requests.items()}
    settle()
    orders.release.send()
    assert first.wait()["order_id"] == 1
    answers = {user: thread.wait() for user, thread in waiting.items()}
    # Three requests, one call: every order of them in the second batch.
    assert len(orders.calls) == 2 and len(orders.calls[1]) == 6, orders.calls
    assert orders.calls[0] == [{"place": {"user": "u0", "quantity": "1"}}]
    for user, (placed, refused) in answers.items():
        assert placed == {"order_id": 2, "user": user}
        assert isinstance(refused, OrderRefused) and refused.code == "ORDER_REJECTED" \
            and refused.reason == "INSUFFICIENT_FUNDS"


def test_placements_and_cancels_of_one_batch_go_in_one_call():
    """Issue 18: "cancels and amends go through the same batching". The
    cancels that arrive with placements share their call; each caller gets
    its own answer, and a refused cancel raises the code the single
    ``cancel_order`` raises (the views map it: -2011 on /api/v3)."""
    orders = Orders()
    batcher = OrderBatcher(Pool(orders), linger_s=0)
    first = eventlet.spawn(batcher.cancel, "u0", 7)
    settle()   # in flight: the requests below form the next batch
    placing = eventlet.spawn(batcher.place, "u1", {"quantity": "1"})
    cancelling = [eventlet.spawn(batcher.cancel, f"u{n}", order_id)
                  for n, order_id in ((2, 21), (3, 404), (4, 409))]
    many = eventlet.spawn(batcher.place_many, [{"user": "u5", "quantity": "100"},
                                               {"user": "u5", "quantity": "2"}])
    settle()
    orders.release.send()
    assert first.wait() == {"order_id": 7, "user": "u0", "cancel_requested": True}
    assert orders.calls[0] == [{"cancel": {"user": "u0", "order_id": 7}}]
    assert len(orders.calls) == 2, orders.calls
    assert orders.calls[1] == [
        {"place": {"user": "u1", "quantity": "1"}},
        {"cancel": {"user": "u2", "order_id": 21}},
        {"cancel": {"user": "u3", "order_id": 404}},
        {"cancel": {"user": "u4", "order_id": 409}},
        {"place": {"user": "u5", "quantity": "100"}},
        {"place": {"user": "u5", "quantity": "2"}}]
    assert placing.wait() == {"order_id": 2, "user": "u1"}
    assert cancelling[0].wait() == {"order_id": 21, "user": "u2", "cancel_requested": True}
    for thread, code in zip(cancelling[1:], ("UNKNOWN_ORDER", "ORDER_NOT_OPEN")):
        with pytest.raises(OrderRefused) as refused:
            thread.wait()
        assert refused.value.code == code
    refused_place, placed = many.wait()
    assert isinstance(refused_place, OrderRefused) and refused_place.code == "ORDER_REJECTED"
    assert placed == {"order_id": 2, "user": "u5"}


def test_a_batch_call_that_fails_fails_its_placements_and_cancels_alike():
    class Down:
        def __init__(self):
            self.calls = []

        def place_and_cancel(self, requests):
            self.calls.append(requests)
            raise TimeoutError("orders did not answer")
    orders = Down()
    batcher = OrderBatcher(Pool(orders), linger_s=0.05)   # one batch: all arrive in the linger
    placing = eventlet.spawn(batcher.place, "u1", {"quantity": "1"})
    cancelling = eventlet.spawn(batcher.cancel, "u2", 21)
    many = eventlet.spawn(batcher.place_many, [{"user": "u3", "quantity": "1"}])
    for thread in (placing, cancelling):
        with pytest.raises(TimeoutError):
            thread.wait()
    outcome, = many.wait()
    assert isinstance(outcome, TimeoutError)
    assert len(orders.calls) == 1 and len(orders.calls[0]) == 3, orders.calls


def test_concurrent_order_reads_share_one_get_orders_call():
    class Reads:
        def __init__(self):
            self.calls, self.release = [], Event()

        def get_orders(self, keys):
            self.calls.append(list(keys))
            self.release.wait()
            return [{"error": {"code": "UNKNOWN_ORDER", "message": "no such order"}}
                    if key["order_id"] == 404 else {"order": {"order_id": key["order_id"]}}
                    for key in keys]
    orders = Reads()
    batcher = OrderBatcher(Pool(orders))
    first = eventlet.spawn(batcher.get, "u0", 1)
    settle()
    others = [eventlet.spawn(batcher.get, f"u{n}", n) for n in (2, 3, 404)]
    settle()
    orders.release.send()
    assert first.wait() == {"order_id": 1}
    assert [thread.wait() for thread in others[:2]] == [{"order_id": 2}, {"order_id": 3}]
    try:
        others[2].wait()
        raise AssertionError("an unknown order must raise")
    except OrderRefused as exc:
        assert exc.code == "UNKNOWN_ORDER"
    assert orders.calls == [[{"user": "u0", "order_id": 1}],
                            [{"user": f"u{n}", "order_id": n} for n in (2, 3, 404)]]


class CancelledAfter:
    """``services.orders`` whose order turns ``cancelled`` at the n-th read."""

    def __init__(self, reads_until_final):
        self.reads = 0
        self.until = reads_until_final

    def cancel_order(self, user, order_id):
        pass

    def get_order(self, user, order_id):
        self.reads += 1
        return {"order_id": order_id, "status": "cancelled" if self.reads >= self.until
                else "new"}


def test_a_cancel_polls_for_the_final_order_backing_off(monkeypatch):
    slept = []
    monkeypatch.setattr(binance.eventlet, "sleep", slept.append)
    services = type("Services", (), {"orders": CancelledAfter(8)})()
    # The cancel and the polls go through the process's batcher (one
    # place_and_cancel / get_orders call for the concurrent requests); here
    # straight to the fake.
    monkeypatch.setattr(binance.batcher, "cancel_order", services.orders.cancel_order)
    monkeypatch.setattr(binance.batcher, "get_order",
                        lambda user, order_id: services.orders.get_order(user, order_id))
    who = type("Who", (), {"user_id": "u1"})()
    order = binance._cancel(who, {"order_id": 7, "status": "new"}, None,
                            deadline=float("inf"))
    assert order["status"] == "cancelled" and services.orders.reads == 8
    # As settle() polls: short first, then longer (a fixed 10 ms poll made
    # about ten get_order calls per cancel under load).
    assert slept == [*binance.POLL_S, *[binance.POLL_S[-1]] * (8 - len(binance.POLL_S))]


def test_a_cancel_refused_by_orders_is_binances_unknown_order(monkeypatch):
    """UNKNOWN_ORDER and ORDER_NOT_OPEN from the batch answer are -2011
    "Unknown order sent.", as the single call's were."""
    from gateway.errors import ApiError
    who = type("Who", (), {"user_id": "u1"})()
    for code in ("UNKNOWN_ORDER", "ORDER_NOT_OPEN"):
        def refuse(user, order_id, code=code):
            raise OrderRefused({"code": code, "message": "no"})
        monkeypatch.setattr(binance.batcher, "cancel_order", refuse)
        with pytest.raises(ApiError) as refused:
            binance._cancel(who, {"order_id": 7, "status": "new"}, None, deadline=0)
        assert (refused.value.status, refused.value.binance_code, refused.value.binance_msg) \
            == (400, -2011, "Unknown order sent.")


def test_a_cancel_by_order_id_reads_in_the_batch_and_by_client_id_with_the_market(
        monkeypatch):
    """A cancel's lookup by ``orderId`` is a batched read (``get_orders``),
    not a ``get_order`` call of its own; by ``origClientOrderId`` it stays a
    ``get_order`` with the symbol's market (orders filters on it)."""
    from types import SimpleNamespace

    from gateway.api.binance import _find_order
    from gateway.errors import ApiError
    from test_binance_markets import btc_usdt

    class Orders:
        def __init__(self):
            self.calls = []

        def get_order(self, user, order_id=None, client_order_id=None, market=None):
            self.calls.append((order_id, client_order_id, market))
            return {"order_id": 5, "market": market, "client_order_id": client_order_id}
    batched = []

    def read(user, order_id):
        batched.append((user, order_id))
        if order_id == 404:
            raise OrderRefused({"code": "UNKNOWN_ORDER", "message": "no such order"})
        return {"order_id": order_id, "market": "BTC-USDT", "client_order_id": "c"}
    monkeypatch.setattr(binance.batcher, "get_order", read)
    services, who = SimpleNamespace(orders=Orders()), SimpleNamespace(user_id="u1")

    def find(query):
        with Flask(__name__).test_request_context(f"/api/v3/order?symbol=BTCUSDT&{query}"):
            return _find_order(services, who, btc_usdt(), -2011, "Unknown order sent.",
                               batched=True)
    assert find("orderId=12")["order_id"] == 12
    with pytest.raises(ApiError) as unknown:
        find("orderId=404")
    assert unknown.value.binance_code == -2011
    assert find("origClientOrderId=grid-1")["client_order_id"] == "grid-1"
    assert batched == [("u1", 12), ("u1", 404)]
    assert services.orders.calls == [(None, "grid-1", "BTC-USDT")]


def test_the_process_batcher_takes_its_pace_from_the_settings():
    """EXCHANGE_GATEWAY_BATCH_PACE_MS (config/defaults.env) is the process's
    batcher's pace (GroupCommit pace_s), in seconds; 0 leaves it unpaced."""
    from gateway.batcher import order_batcher
    from services.common.config import load_settings

    def pace(value):
        app = Flask(__name__)
        app.config["SETTINGS"] = load_settings().with_overrides(
            EXCHANGE_GATEWAY_BATCH_PACE_MS=value)
        app.extensions["rpc_pool"] = Pool(Orders())
        with app.app_context():
            return order_batcher().group.pace_s

    assert pace("40") == pytest.approx(0.04)
    assert pace("0") == 0
    assert float(load_settings()["EXCHANGE_GATEWAY_BATCH_PACE_MS"]) > 0
