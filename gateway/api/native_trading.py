"""Orders and fills of the native API (the caller's own only).

An order is accepted (``status: new``) before the engine matches it: fills
and final statuses arrive asynchronously; read them back with
``GET /orders/{order_id}`` or the live push. Cancel and amend answer with
``cancel_requested`` / ``amend_requested``: the engine has been asked.
"""
from __future__ import annotations

from flask import request

from gateway import batcher, fees, ratelimit
from gateway.api.native import (NEEDS_READ, NEEDS_TRADE, PRIVATE, TAG_TRADING, blueprint, caller,
                                reply)
from gateway.api.native_market import known_market
from gateway.errors import ApiError, from_service_error
from gateway.schemas import (MAX_BATCH_ORDERS, AmendOrder, CancelAll, CancelAllQuery, Fill, Fills,
                             FillsQuery, HistoryQuery, Order, OrderHistory, OrderList,
                             OrderOutcome, OrderOutcomes, OrderPath, OrderRefusal, OrdersQuery,
                             PlaceOrder, PlaceOrders, epoch_ms)


def order_out(order: dict) -> Order:
    return Order.model_validate({**order, "type": order["order_type"],
                                 "created_at": epoch_ms(order["created_at"]),
                                 "updated_at": epoch_ms(order["updated_at"])})


@blueprint.post("/orders", tags=[TAG_TRADING], security=PRIVATE, openapi_extensions=NEEDS_TRADE,
                responses={201: Order},
                summary="Place an order (limit GTC/IOC/FOK, post-only; market by quantity or, "
                        "buying, by quote amount)")
def place_order(body: PlaceOrder):
    who = caller("trade", new_order=True)
    known_market(body.market)
    # Accepted in this process's next batch of orders (gateway/batcher.py).
    order = batcher.place_order(who.user_id, **placement(body))
    return reply(order_out(order), 201)


def placement(body: PlaceOrder) -> dict:
    """``orders.place_order``'s arguments for one order of the API."""
    return dict(market=body.market, side=body.side, type=body.type, quantity=body.quantity,
                quote_amount=body.quote_amount, price=body.price,
                time_in_force=body.time_in_force, post_only=body.post_only,
                stp_mode=body.stp_mode, client_order_id=body.client_order_id)


def batch_weight() -> int:
    """A batch weighs one per order (its rate limits count each order)."""
    body = request.get_json(silent=True, cache=True)
    orders = body.get("orders") if isinstance(body, dict) else None
    return min(max(len(orders), 1), MAX_BATCH_ORDERS) if isinstance(orders, list) else 1


def refusal(exc: ApiError) -> OrderOutcome:
    return OrderOutcome(error=OrderRefusal(status=exc.status, code=exc.code,
                                           message=exc.message, field=exc.field))


@blueprint.post("/orders/batch", tags=[TAG_TRADING], security=PRIVATE,
                openapi_extensions=NEEDS_TRADE, responses={200: OrderOutcomes},
                summary=f"Place 1 to {MAX_BATCH_ORDERS} orders in one request, each accepted "
                        "or refused on its own")
@ratelimit.weight(batch_weight)
def place_orders(body: PlaceOrders):
    """Each order is checked as ``POST /orders`` checks it and answered in
    ``results`` at its position: ``{order}`` or ``{error: {status, code,
    message, field}}`` with what ``POST /orders`` would have answered; one
    refused order does not fail the others. The accepted ones go to orders
    with the process's next batch (gateway/batcher.py: one
    ``orders.place_orders`` call for the orders of concurrent requests). A
    client order id makes an order idempotent: sent again, in this or a
    later batch, it is refused with DUPLICATE_CLIENT_ORDER_ID. Rate limits
    count every order's weight, and as new orders only those placed (the
    refused ones are given back, as a refused single order is)."""
    from gateway.batcher import OrderRefused
    who = caller("trade", new_order=len(body.orders))
    results: list[OrderOutcome | None] = [None] * len(body.orders)
    pending: list[tuple[int, dict]] = []
    for index, order in enumerate(body.orders):
        try:
            known_market(order.market)
        except ApiError as exc:
            results[index] = refusal(exc)
            continue
        pending.append((index, {"user": who.user_id, **placement(order)}))
    if pending:
        # With the other requests' orders in this process's next batch
        # (gateway/batcher.py); a failed batch call fails the request.
        outcomes = batcher.order_batcher().place_many([args for _, args in pending])
        for outcome in outcomes:
            if isinstance(outcome, Exception) and not isinstance(outcome, OrderRefused):
                raise outcome
        for (index, _), outcome in zip(pending, outcomes):
            results[index] = refusal(from_service_error(outcome)) \
                if isinstance(outcome, OrderRefused) else OrderOutcome(order=order_out(outcome))
    ratelimit.limiter().give_back_orders(sum(r.order is None for r in results))
    return reply(OrderOutcomes(results=results))


@blueprint.get("/orders", tags=[TAG_TRADING], security=PRIVATE, openapi_extensions=NEEDS_READ,
               responses={200: OrderList},
               summary="The caller's open orders (of one market, or all)")
def open_orders(query: OrdersQuery):
    from gateway.app import rpc
    who = caller("read")
    if query.market is not None:
        known_market(query.market)
    with rpc() as services:
        orders = services.orders.open_orders(who.user_id, query.market)
    return reply(OrderList(orders=[order_out(o) for o in orders]))


@blueprint.delete("/orders", tags=[TAG_TRADING], security=PRIVATE, openapi_extensions=NEEDS_TRADE,
                  responses={200: CancelAll},
                  summary="Cancel every open order of the caller in one market")
def cancel_all(query: CancelAllQuery):
    from gateway.app import rpc
    who = caller("trade")
    known_market(query.market)
    with rpc() as services:
        return reply(CancelAll.model_validate(services.orders.cancel_all(who.user_id,
                                                                         query.market)))


@blueprint.get("/orders/history", tags=[TAG_TRADING], security=PRIVATE,
               openapi_extensions=NEEDS_READ, responses={200: OrderHistory},
               summary="Every order of the caller, newest first; next_cursor pages on")
def order_history(query: HistoryQuery):
    from gateway.app import rpc
    who = caller("read")
    with rpc() as services:
        page = services.orders.order_history(who.user_id, query.cursor, query.limit)
    return reply(OrderHistory(orders=[order_out(o) for o in page["orders"]],
                              next_cursor=page["next_cursor"]))


@blueprint.get("/orders/<order_id>", tags=[TAG_TRADING], security=PRIVATE,
               openapi_extensions=NEEDS_READ, responses={200: Order},
               summary="One of the caller's orders")
def get_order(path: OrderPath):
    from gateway.app import rpc
    who = caller("read")
    with rpc() as services:
        return reply(order_out(services.orders.get_order(who.user_id, order_id=path.order_id)))


@blueprint.patch("/orders/<order_id>", tags=[TAG_TRADING], security=PRIVATE,
                 openapi_extensions=NEEDS_TRADE, responses={200: Order},
                 summary="Amend an open limit order's price and/or quantity")
def amend_order(path: OrderPath, body: AmendOrder):
    from gateway.app import rpc
    who = caller("trade")
    with rpc() as services:
        order = services.orders.amend_order(who.user_id, path.order_id, price=body.price,
                                            quantity=body.quantity)
    return reply(order_out(order))


@blueprint.delete("/orders/<order_id>", tags=[TAG_TRADING], security=PRIVATE,
                  openapi_extensions=NEEDS_TRADE,
                  responses={200: Order}, summary="Cancel one open order")
def cancel_order(path: OrderPath):
    who = caller("trade")
    # With the process's next batch of orders (gateway/batcher.py: one
    # orders.place_and_cancel call for the placements and cancels of
    # concurrent requests); a refusal raises the single call's code.
    return reply(order_out(batcher.cancel_order(who.user_id, path.order_id)))


@blueprint.get("/fills", tags=[TAG_TRADING], security=PRIVATE, openapi_extensions=NEEDS_READ,
               responses={200: Fills},
               summary="The caller's trades (fills), newest first")
def list_fills(query: FillsQuery):
    from gateway.app import rpc
    who = caller("read")
    if query.market is not None:
        known_market(query.market)
    with rpc() as services:
        page = services.marketdata.get_user_trades(who.user_id, query.limit, query.start,
                                                   query.end)
        found = [t for t in page["trades"] if query.market is None or t["market"] == query.market]
        paid = fees.fill_fees(services, who.user_id, found)
    fills = [Fill.model_validate({**t, "fee": {"asset": fee.asset, "amount": format(fee.amount, "f"),
                                               "settled": fee.settled}})
             for t, fee in zip(found, paid)]
    return reply(Fills(fills=fills))
