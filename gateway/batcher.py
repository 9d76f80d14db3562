"""Concurrent order requests of this gateway process go to orders as batches.

Every REST order placement (``POST /api/v3/order``, ``POST /api/v1/orders``,
each order of ``POST /api/v1/orders/batch``) and every REST cancel of one
order (``DELETE /api/v3/order``, also the cancel of ``cancelReplace``, and
``DELETE /api/v1/orders/<id>``) hands its request to the process's batcher
and waits for its own outcome: the concurrent requests of several users (a
partner trading for a few accounts sends a batch request per account), the
placements and the cancels together, share one ``orders.place_and_cancel``
call instead of one call each (issue 18: "cancels and amends go through the
same batching"). One batch is in flight at a time (one call); the requests
arriving meanwhile form the next (services.common.group_commit: a short
linger when idle, a size cap), and under load a batch leaves at most once per
``EXCHANGE_GATEWAY_BATCH_PACE_MS`` (GroupCommit's ``pace_s``) unless
``PACE_ENOUGH`` requests wait: at high rates the batches stay large and each
order costs less on every hop behind. Each
request is answered with its own order, or raises its own refusal with the
code, reason and field the single call (``place_order``, ``cancel_order``)
would have raised, so the views and the error table are unchanged. A batch
call that fails as a whole (a timeout, the connection lost) fails each of
its requests, placements and cancels alike, the same way: the outcome is
unknown, and a client order id (or reading the order) is how the client
finds out. A cancel never names an
order placed in its own batch: the client has the order id only once that
batch has answered.

The order reads of the requests that wait (a Binance cancel's lookup by
``orderId`` and its polls until the order is final, a RESULT/FULL
placement's polls until it is settled) go the same way as reads: one
``orders.get_orders`` call in flight, no linger.

Needs orders with ``place_and_cancel`` (6102234): on an upgrade, the
services before the gateways (ansible/upgrade.yml does so).
"""
from __future__ import annotations

from flask import current_app

from services.common.errors import CodedError
from services.common.group_commit import GroupCommit

MAX_BATCH = 200   # orders.place_and_cancel takes up to 200 (MAX_ORDERS_PER_CALL)
LINGER_S = 0.002
# A paced batch leaves as soon as this many requests wait (GroupCommit
# enough): about where a batch's cost per request stops falling, and a
# gateway process's waiting requests are bounded by its open connections.
PACE_ENOUGH = 16


class OrderRefused(CodedError):
    """One request's refusal in a batch answer (``place_and_cancel``,
    ``get_orders``), carrying what the single call's exception carries
    (code, message, field, reason)."""

    def __init__(self, error: dict):
        super().__init__(error.get("code"), error.get("message", ""), error.get("field"))
        self.reason = error.get("reason")


class OrderBatcher:
    def __init__(self, rpc_pool, max_batch: int = MAX_BATCH, linger_s: float = LINGER_S,
                 pace_s: float = 0.0, enough: int = PACE_ENOUGH):
        self.rpc_pool = rpc_pool
        # Placements and cancels: ``{"place": {...}}`` / ``{"cancel": {...}}``
        # requests, one ``orders.place_and_cancel`` call per batch.
        self.group = GroupCommit(self._place_and_cancel, max_batch=max_batch,
                                 linger_s=linger_s, pace_s=pace_s, enough=enough)
        # The order reads of the requests that wait for an order's outcome
        # (a Binance cancel until the order is final, a RESULT/FULL placement
        # until it is settled): one ``orders.get_orders`` call in flight, the
        # reads arriving meanwhile form the next; no linger (a poll has
        # already waited).
        self.reads = GroupCommit(self._get_orders, max_batch=MAX_BATCH, linger_s=0)

    def get(self, user: str, order_id: int) -> dict:
        """``orders.get_order(user, order_id=...)``, in the next read batch;
        raises ``OrderRefused`` (UNKNOWN_ORDER) as that call would."""
        return self.reads.submit({"user": user, "order_id": order_id})

    def _get_orders(self, keys: list[dict]) -> list:
        with self.rpc_pool.lease() as services:
            answers = services.orders.get_orders(keys)
        return [answer["order"] if "order" in answer else OrderRefused(answer["error"])
                for answer in answers]

    def place(self, user: str, args: dict) -> dict:
        """``orders.place_order(user, **args)``, in the next batch."""
        return self.group.submit({"place": {"user": user, **args}})

    def place_many(self, orders: list[dict]) -> list:
        """Several ``orders.place_order`` argument dicts (each with its
        ``user``) of one request, queued together: each outcome in order, an
        order or the exception (``OrderRefused``, or the batch call's
        failure), returned, not raised."""
        return self.group.submit_many([{"place": order} for order in orders])

    def cancel(self, user: str, order_id: int) -> dict:
        """``orders.cancel_order(user, order_id)``, in the next batch (with
        the placements): the order with ``cancel_requested``; raises
        ``OrderRefused`` with the single call's code (UNKNOWN_ORDER,
        ORDER_NOT_OPEN, INVALID_ORDER)."""
        return self.group.submit({"cancel": {"user": user, "order_id": order_id}})

    def _place_and_cancel(self, requests: list[dict]) -> list:
        with self.rpc_pool.lease() as services:
            answers = services.orders.place_and_cancel(requests)
        return [answer["order"] if "order" in answer else OrderRefused(answer["error"])
                for answer in answers]


def order_batcher() -> OrderBatcher:
    """The app's batcher (one per gateway process), made on first use."""
    extensions = current_app.extensions
    if "order_batcher" not in extensions:
        settings = current_app.config["SETTINGS"]
        pace_ms = float(settings.get("EXCHANGE_GATEWAY_BATCH_PACE_MS") or 0)
        extensions["order_batcher"] = OrderBatcher(extensions["rpc_pool"], pace_s=pace_ms / 1000)
    return extensions["order_batcher"]


def place_order(user: str, **args) -> dict:
    return order_batcher().place(user, args)


def cancel_order(user: str, order_id: int) -> dict:
    return order_batcher().cancel(user, order_id)


def get_order(user: str, order_id: int) -> dict:
    return order_batcher().get(user, order_id)
