"""An order's end that reaches the orders consumer before its last fill (the
matching relay republishes a batch the broker refused after the batches it
had in flight behind it) waits for the fill: the order ends, and releases
hold - what it actually spent, only once the fill is recorded. Before: the
end released the whole unfilled hold at once (the fill's part too), and the
fill came to an order already final (review finding, session 10)."""
import uuid
from decimal import Decimal as D

import psycopg

from tests.integration.orders.conftest import (
    balance, fund, matching_events, taker_fill, unseen_order,
)


def test_an_end_delivered_before_its_fill_releases_only_after_the_fill(
        exchange, nameko_config, test_settings):
    user = fund(exchange, {"USDT": "100"})
    with psycopg.connect(test_settings.postgres_dsn(), autocommit=True) as conn:
        order_id = unseen_order(conn, user)   # holds 10 USDT (0.1 at 100)
    fill = taker_fill(order_id, user, quantity="0.05", quote="5")
    end = ("order_updated", f"test-done-{uuid.uuid4()}", {
        "event": "order_done", "status": "cancelled", "reason": "USER_CANCEL",
        "market": "BTC-USDT", "order_id": order_id, "user_id": user, "side": "buy",
        "filled_quantity": "0.05", "remaining_quantity": "0.05"})
    with matching_events(nameko_config) as events:
        # The end, twice (a redelivery), before the fill: nothing ends yet.
        events.handle([end])
        events.handle([end])
        order = exchange.orders.get_order(user, order_id)
        assert (order["status"], order["released_amount"]) == ("new", None), order
        assert balance(exchange, user, "USDT") == (D("90"), D("10"))
        assert exchange.orders.health()["ends_waiting_for_fills"] >= 1
        # The fill (twice too, the second time with the end again): the
        # order ends, releasing 10 - 5 once.
        events.handle([fill])
        events.handle([fill, end])
    order = exchange.orders.get_order(user, order_id)
    assert (order["status"], order["filled_quantity"], order["released_amount"]) == (
        "cancelled", "0.05", "5"), order
    # Settlement of the fill is wallets' (not run here): 5 still held for it.
    assert balance(exchange, user, "USDT") == (D("95"), D("5"))
    with psycopg.connect(test_settings.postgres_dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pending_order_ends WHERE order_id = %s",
                            (order_id,)).fetchone()[0] == 0
