"""Storage and consumers of the orders service."""
from __future__ import annotations

import logging
from decimal import Decimal

import eventlet
from nameko.extensions import DependencyProvider
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.config import load_settings
from services.common.consumer import BatchConsumerProvider
from services.common.postgres import PostgresPool, make_pool

from . import holds

log = logging.getLogger(__name__)

OPEN = ("pending", "new", "partially_filled")
FINAL = ("filled", "cancelled", "expired", "rejected")
ORDER_COLUMNS = ("order_id", "user_id", "market", "client_order_id", "side", "order_type", "price",
                 "quantity", "quote_amount", "time_in_force", "post_only", "stp_mode", "status",
                 "reason", "hold_asset", "hold_amount", "filled_quantity", "filled_quote",
                 "released_amount", "created_at", "updated_at")
SELECT_ORDER = f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders"


def order_view(row) -> dict:
    """An order as the API returns it: decimals as strings, times ISO-8601."""
    out = {}
    for name, value in zip(ORDER_COLUMNS, row):
        if isinstance(value, Decimal):
            value = format(value.normalize(), "f") if value else "0"
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        out[name] = value
    return out


class OrderStore(PostgresPool):
    """The orders tables, with the verbs the service needs."""

    def get_dependency(self, worker_ctx):
        return OrdersDb(self.pool)


class OrdersDb:
    def __init__(self, pool):
        self.pool = pool

    def transaction(self):
        from services.common.postgres import Database
        return Database(self.pool).transaction()

    def autocommit_statement(self, statement: str, params) -> tuple | None:
        """One statement as its own transaction: a single round trip, where
        an explicit transaction costs three (BEGIN, the statement, COMMIT)."""
        with self.pool.connection() as conn:
            conn.autocommit = True
            try:
                return conn.execute(statement, params).fetchone()
            finally:
                if not conn.closed:
                    conn.autocommit = False

    def get(self, conn, user: str, order_id=None, client_order_id=None, lock=False):
        where, args = ("order_id = %s", (order_id,)) if order_id is not None else (
            "client_order_id = %s", (client_order_id,))
        row = conn.execute(f"{SELECT_ORDER} WHERE user_id = %s AND {where}"
                           + (" FOR UPDATE" if lock else ""), (user, *args)).fetchone()
        return None if row is None else order_view(row)


# ---------------------------------------------------------------- events in

class MatchingEvents(BatchConsumerProvider):
    """Applies the engines' events to orders, in publish order, one process at
    a time (quorum queue, single active consumer): fills, state changes, and
    the leftover release when an order ends."""

    queue = "orders.matching-events"
    exchange = "matching.events"
    routing_keys = ["trade_executed", "order_updated"]

    def setup_consumer(self):
        settings = load_settings()
        config = self.container.config
        self.pool = make_pool(settings, config.get("POSTGRES_DB"), min_size=1, max_size=4,
                              name="orders-events")
        self.rpc_config = {k: v for k, v in config.items()}

    def start(self):
        super().start()
        self.release_thread = self.container.spawn_managed_thread(self._release_loop)

    def stop(self):
        super().stop()
        self.release_thread.kill()
        self.pool.close()

    kill = stop

    def handle(self, batch) -> None:
        with self.pool.connection() as conn, conn.transaction():
            for routing_key, _message_id, body in batch:
                if routing_key == "trade_executed":
                    self._trade(conn, body)
                elif routing_key == "order_updated":
                    self._order_update(conn, body)

    def _trade(self, conn, trade) -> None:
        for order_id, user, is_maker in ((trade["maker_order_id"], trade["maker_user_id"], True),
                                         (trade["taker_order_id"], trade["taker_user_id"], False)):
            # Only an order of this market and user: an engine command that did not
            # come through this service (an operator's, a test's) cannot touch ours.
            inserted = conn.execute(
                "INSERT INTO order_fills (trade_id, order_id, market, price, quantity, "
                "quote_quantity, is_maker, executed_at) "
                "SELECT %s, order_id, %s, %s, %s, %s, %s, %s FROM orders "
                "WHERE order_id = %s AND market = %s AND user_id = %s "
                "ON CONFLICT DO NOTHING RETURNING order_id",
                (trade["trade_id"], trade["market"], trade["price"], trade["quantity"],
                 trade["quote_quantity"], is_maker, trade["executed_at"], order_id,
                 trade["market"], str(user))).fetchone()
            if inserted:
                conn.execute(
                    "UPDATE orders SET filled_quantity = filled_quantity + %s, "
                    "filled_quote = filled_quote + %s, updated_at = now(), "
                    "status = CASE WHEN status IN ('pending', 'new') THEN 'partially_filled' "
                    "ELSE status END WHERE order_id = %s",
                    (trade["quantity"], trade["quote_quantity"], order_id))

    def _order_update(self, conn, update) -> None:
        event, order_id = update["event"], update.get("order_id")
        if order_id is None:
            return
        key = (order_id, update["market"], str(update.get("user_id")))
        if event == "command_rejected" and update.get("command") == "place_order":
            self._finish(conn, key, "rejected", update.get("reason"))
        elif event == "order_done":
            self._finish(conn, key, update["status"], update.get("reason"))
        elif event == "order_amended":
            conn.execute("UPDATE orders SET price = %s, quantity = %s, updated_at = now() "
                         "WHERE order_id = %s AND market = %s AND user_id = %s "
                         "AND status IN ('new', 'partially_filled')",
                         (update["price"], update["quantity"], *key))

    def _finish(self, conn, key: tuple, status: str, reason) -> None:
        order_id = key[0]
        row = conn.execute(
            "SELECT user_id, side, hold_asset, hold_amount, filled_quantity, filled_quote "
            "FROM orders WHERE order_id = %s AND market = %s AND user_id = %s "
            "AND status IN ('pending', 'new', 'partially_filled') FOR UPDATE", key).fetchone()
        if row is None:
            return  # not ours, or already final (a redelivery)
        user, side, asset, hold, filled_quantity, filled_quote = row
        amount = holds.leftover(side, hold, filled_quantity, filled_quote)
        conn.execute("UPDATE orders SET status = %s, reason = %s, released_amount = %s, "
                     "updated_at = now() WHERE order_id = %s", (status, reason, amount, order_id))
        if amount > 0:
            conn.execute("INSERT INTO pending_releases (ref, order_id, user_id, asset, amount) "
                         "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                         (f"order:{order_id}:final", order_id, user, asset, amount))

    # -- releases out ---------------------------------------------------------
    def _release_loop(self) -> None:
        while True:
            try:
                if self.consumer.active and self.release_pending() == 0:
                    eventlet.sleep(0.2)
                elif not self.consumer.active:
                    eventlet.sleep(0.5)
            except Exception:
                log.exception("releasing leftover holds failed; retrying")
                eventlet.sleep(1)

    def release_pending(self, limit: int = 200) -> int:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT ref, user_id, asset, amount FROM pending_releases "
                                "WHERE done_at IS NULL ORDER BY created_at LIMIT %s",
                                (limit,)).fetchall()
        if not rows:
            return 0
        with ClusterRpcProxy(self.rpc_config, timeout=30) as rpc:
            for ref, user, asset, amount in rows:
                rpc.wallets.release(user, asset, format(amount.normalize(), "f"), ref)
                with self.pool.connection() as conn:
                    conn.execute("UPDATE pending_releases SET done_at = now() WHERE ref = %s", (ref,))
        return len(rows)


def user_lock(conn, user: str, shared: bool) -> None:
    """Serialises a freeze against in-flight placements of the same user: a
    placement either commits (and its command is queued) before the freeze's
    cancel, or sees the block."""
    fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(f"SELECT {fn}(hashtextextended(%s, 7))", (f"user:{user}",))


def trading_block(conn, user: str):
    row = conn.execute("SELECT state FROM user_trading_blocks WHERE user_id = %s",
                       (user,)).fetchone()
    return None if row is None else row[0]


class UserStates(BatchConsumerProvider):
    """Frozen and closed users from the users service: block them, and cancel
    what they have open (one CancelAll per market, through the outbox)."""

    queue = "orders.user-states"
    exchange = "users.events"
    routing_keys = ["user_frozen", "user_unfrozen", "user_closed"]
    batch = 50

    def setup_consumer(self):
        self.pool = make_pool(load_settings(), self.container.config.get("POSTGRES_DB"),
                              min_size=1, max_size=2, name="orders-users")

    def stop(self):
        super().stop()
        self.pool.close()

    kill = stop

    def handle(self, batch) -> None:
        from services.matching.models import CancelAll, command_to_dict
        from services.matching.providers import command_queue_name
        from services.common.outbox import enqueue_command
        with self.pool.connection() as conn, conn.transaction():
            for routing_key, message_id, body in batch:
                user, at = body["user_id"], int(body.get("at") or 0)
                user_lock(conn, user, shared=False)
                if routing_key == "user_unfrozen":
                    conn.execute("DELETE FROM user_trading_blocks WHERE user_id = %s AND "
                                 "state = 'frozen' AND event_at <= %s", (user, at))
                    continue
                state = "closed" if routing_key == "user_closed" else "frozen"
                conn.execute(
                    "INSERT INTO user_trading_blocks (user_id, state, event_at) VALUES (%s, %s, %s) "
                    "ON CONFLICT (user_id) DO UPDATE SET state = CASE WHEN "
                    "user_trading_blocks.state = 'closed' THEN 'closed' ELSE EXCLUDED.state END, "
                    "event_at = greatest(user_trading_blocks.event_at, EXCLUDED.event_at), "
                    "updated_at = now()", (user, state, at))
                markets = [r[0] for r in conn.execute(
                    "SELECT DISTINCT market FROM orders WHERE user_id = %s AND status IN "
                    "('pending', 'new', 'partially_filled')", (user,))]
                # The engine dedupes commands by id: one per event and market.
                event_id = message_id or f"{user}:{at}"
                for market in markets:
                    enqueue_command(conn, "orders", command_queue_name(market),
                                    f"{routing_key}:{event_id}:{market}",
                                    {"command": command_to_dict(CancelAll(user))})


class MarketCatalog(DependencyProvider):
    """Market configs, cached per process (refreshed from matching by the service)."""

    def setup(self):
        self.markets: dict[str, dict] = {}
        self.loaded_at = 0.0

    def get_dependency(self, worker_ctx):
        return self
