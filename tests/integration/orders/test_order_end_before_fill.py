"""An order's end that reaches the orders consumer before its last fill (the
matching relay republishes a batch the broker refused after the batches it
had in flight behind it) waits for the fill: the order ends, and releases
hold - what it actually spent, only once the fill is recorded. Before: the
end released the whole unfilled hold at once (the fill's part too), and the
fill came to an order already final (review finding, session 10)."""
import uuid
from decimal import Decimal as D

import psycopg

from services.common.config import load_settings
from services.common.postgres import make_pool
from services.orders.providers import MatchingEvents
from tests.integration.orders.conftest import balance, fund

NOBODY_ORDER = 2 ** 62   # an order id no test places: the trade's other side


def test_an_end_delivered_before_its_fill_releases_only_after_the_fill(
        exchange, nameko_config, test_settings):
    user = fund(exchange, {"USDT": "100"})
    with psycopg.connect(test_settings.postgres_dsn(), autocommit=True) as conn:
        # An order the engine never saw (no command in the outbox): only the
        # events below touch it. Holds 10 USDT (0.1 at 100).
        order_id = conn.execute(
            "INSERT INTO orders (order_id, user_id, market, side, order_type, price, "
            "quantity, time_in_force, status, hold_asset, hold_amount) "
            "VALUES (nextval('order_ids'), %s, 'BTC-USDT', 'buy', 'limit', 100, 0.1, 'GTC', "
            "'new', 'USDT', 10) RETURNING order_id", (user,)).fetchone()[0]
        conn.execute("SELECT wallets.hold_funds(%s, 'USDT', 10, %s)",
                     (user, f"order:{order_id}"))
    trade_id = f"test-BTC-USDT-{uuid.uuid4()}"
    fill = ("trade_executed", trade_id, {
        "market": "BTC-USDT", "seq": 1, "trade_id": trade_id, "price": "100",
        "quantity": "0.05", "quote_quantity": "5", "taker_side": "buy",
        "maker_order_id": NOBODY_ORDER, "maker_user_id": "nobody",
        "taker_order_id": order_id, "taker_user_id": user, "executed_at": 1})
    end = ("order_updated", f"test-done-{uuid.uuid4()}", {
        "event": "order_done", "status": "cancelled", "reason": "USER_CANCEL",
        "market": "BTC-USDT", "order_id": order_id, "user_id": user, "side": "buy",
        "filled_quantity": "0.05", "remaining_quantity": "0.05"})
    events = MatchingEvents()
    events.pool = make_pool(load_settings(), nameko_config["POSTGRES_DB"], min_size=1,
                            max_size=2, name="test-orders-events")
    try:
        # The end, twice (a redelivery), before the fill: nothing ends yet.
        events.handle([end])
        events.handle([end])
        order = exchange.orders.get_order(user, order_id)
        assert (order["status"], order["released_amount"]) == ("new", None), order
        assert balance(exchange, user, "USDT") == (D("90"), D("10"))
        # The fill (twice too): the order ends, releasing 10 - 5 once.
        events.handle([fill])
        events.handle([fill, end])
    finally:
        events.pool.close()
    order = exchange.orders.get_order(user, order_id)
    assert (order["status"], order["filled_quantity"], order["released_amount"]) == (
        "cancelled", "0.05", "5"), order
    # Settlement of the fill is wallets' (not run here): 5 still held for it.
    assert balance(exchange, user, "USDT") == (D("95"), D("5"))
    with psycopg.connect(test_settings.postgres_dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pending_order_ends WHERE order_id = %s",
                            (order_id,)).fetchone()[0] == 0
