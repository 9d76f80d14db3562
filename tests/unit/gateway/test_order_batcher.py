"""The gateway's order path without servers: the batch requests of several
users share one ``orders.place_orders`` call and concurrent order reads one
``orders.get_orders`` call (gateway/batcher.py), and a Binance cancel waits
for the final order with backing-off polls."""
import contextlib

import eventlet
from eventlet.event import Event

from gateway.api import binance
from gateway.batcher import OrderBatcher, OrderRefused


class Orders:
    """``services.orders`` with ``place_orders`` recorded and held in flight
    until ``release`` is sent (so that requests queue behind it)."""

    def __init__(self):
        self.calls = []
        self.release = Event()

    def place_orders(self, orders):
        self.calls.append(list(orders))
        self.release.wait()
        return [{"error": {"code": "ORDER_REJECTED", "message": "no", "reason": "INSUFFICIENT_FUNDS"}}
                if order.get("quantity") == "100" else {"order": {"order_id": len(self.calls),
                                                                  "user": order["user"]}}
                for order in orders]


class Pool:
    def __init__(self, orders):
        self.services = type("Services", (), {"orders": orders})()

    @contextlib.contextmanager
    def lease(self):
        yield self.services


def settle():
    for _ in range(50):
        eventlet.sleep(0)


def test_batch_requests_of_several_users_share_one_place_orders_call():
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
    for user, (placed, refused) in answers.items():
        assert placed == {"order_id": 2, "user": user}
        assert isinstance(refused, OrderRefused) and refused.code == "ORDER_REJECTED" \
            and refused.reason == "INSUFFICIENT_FUNDS"


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
    # The polls read through the process's read batcher (one get_orders call
    # for the concurrent reads); here straight from the fake.
    monkeypatch.setattr(binance.batcher, "get_order",
                        lambda user, order_id: services.orders.get_order(user, order_id))
    who = type("Who", (), {"user_id": "u1"})()
    order = binance._cancel(services, who, {"order_id": 7, "status": "new"}, None,
                            deadline=float("inf"))
    assert order["status"] == "cancelled" and services.orders.reads == 8
    # As settle() polls: short first, then longer (a fixed 10 ms poll made
    # about ten get_order calls per cancel under load).
    assert slept == [*binance.POLL_S, *[binance.POLL_S[-1]] * (8 - len(binance.POLL_S))]
