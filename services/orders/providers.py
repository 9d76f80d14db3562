"""Storage and consumers of the orders service."""
from __future__ import annotations

import logging
import traceback
import uuid
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

from services.common import events
from services.common.catalogue import RegistryCatalogue
from services.common.config import load_settings
from services.common.consumer import BatchConsumerProvider
from services.common.events import ORDERS_AUDIENCE, UnsupportedEvent, trade_executed, unpack
from services.common.postgres import PostgresPool, autocommitted, make_pool, retry_transient

from services.matching.models import MarketConfig

from . import holds

log = logging.getLogger(__name__)

OPEN = ("new", "partially_filled")
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

    def autocommit_statement(self, statement: str, params, every_row: bool = False):
        """One statement as its own transaction: a single round trip, where
        an explicit transaction costs three (BEGIN, the statement, COMMIT).
        Its first row (every row with ``every_row``). Run again if
        PostgreSQL aborted it to break a deadlock."""
        return retry_transient(lambda: self._autocommit_statement(statement, params, every_row))

    def _autocommit_statement(self, statement: str, params, every_row: bool):
        with autocommitted(self.pool) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if every_row else cursor.fetchone()

    def get_many(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict]:
        """The orders of ``(user, order_id)`` pairs that exist, by pair: one
        autocommitted statement whatever their number."""
        rows = self.autocommit_statement(
            f"{SELECT_ORDER} WHERE (user_id, order_id) IN "
            "(SELECT * FROM unnest(%s::text[], %s::bigint[]))",
            ([key[0] for key in keys], [key[1] for key in keys]), every_row=True)
        return {(row[1], row[0]): order_view(row) for row in rows}

    def get(self, user: str, order_id=None, client_order_id=None, market=None) -> dict | None:
        """One order of the user, by id or client order id: one autocommitted
        statement (one round trip; in a transaction it cost three, and the
        REST cancel reads an order several times). A client order id names
        the user's open order that has it, else the latest that had it (ids
        are unique among open orders only, as on Binance), in ``market`` when
        given (Binance reads an order by symbol and id)."""
        where, args = ("order_id = %s", (order_id,)) if order_id is not None else (
            "client_order_id = %s"
            + (" AND market = %s" if market is not None else "")
            + " ORDER BY status IN ('new', 'partially_filled') DESC, order_id DESC LIMIT 1",
            (client_order_id,) + ((market,) if market is not None else ()))
        row = self.autocommit_statement(f"{SELECT_ORDER} WHERE user_id = %s AND {where}",
                                        (user, *args))
        return None if row is None else order_view(row)


# ---------------------------------------------------------------- events in

class MatchingEvents(BatchConsumerProvider):
    """Applies the engines' events to orders, in publish order, one process at
    a time (quorum queue, single active consumer): fills, state changes, and
    the release of what an order did not spend, in the transaction that
    records its end (wallets.move_funds_batch: every release of a delivery
    in one call, idempotent by ref).

    A batch that fails is applied again message by message; a message that
    still fails on its own (a malformed event, an order that spent more than
    it held) is parked in ``unprocessed_events`` and reported by ``health``,
    and the stream goes on. A database that cannot be reached parks nothing:
    the batch is redelivered."""

    queue = "orders.matching-events"
    exchange = "matching.events"
    # One message per engine batch with the fills and order updates this
    # consumer acts on (services/matching/wire.py); the one-event keys are
    # the format before it (a queue may still hold such, tools may send them).
    routing_keys = [ORDERS_AUDIENCE, "trade_executed", "order_updated"]
    batch = 50   # messages (engine batches) per transaction

    def setup_consumer(self):
        settings = load_settings()
        config = self.container.config
        self.pool = make_pool(settings, config.get("POSTGRES_DB"), min_size=1, max_size=4,
                              name="orders-events")

    def stop(self):
        super().stop()
        self.pool.close()

    kill = stop

    def handle(self, deliveries) -> None:
        batch = []
        for delivery in deliveries:
            try:
                batch.extend(unpack(*delivery))
            except UnsupportedEvent:
                self._park(delivery)
        if not batch:
            return
        try:
            retry_transient(lambda: self._apply(batch))
            return
        except psycopg.OperationalError:
            raise
        except Exception:
            if len(batch) == 1:
                self._park(batch[0])
                return
            log.exception("a batch of %d matching events failed; applying them one by one",
                          len(batch))
        for message in batch:
            try:
                retry_transient(lambda: self._apply([message]))
            except psycopg.OperationalError:
                raise
            except Exception:
                self._park(message)

    def _park(self, message) -> None:
        routing_key, message_id, body = message
        log.exception("parking matching event %s (%s)", message_id, routing_key)
        error = traceback.format_exc(limit=3)
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO unprocessed_events (message_id, routing_key, body, error) "
                         "VALUES (%s, %s, %s, %s) ON CONFLICT (message_id) DO NOTHING",
                         (message_id or f"no-id:{uuid.uuid4()}", routing_key, Jsonb(body), error))

    def _apply(self, batch) -> None:
        """One transaction, a few statements per batch whatever its size: a
        delivery with fills is one statement (FILLS_AND_ENDS: the waiting
        ends read, the accounts and then the order rows locked, the fills
        applied, the ending orders still open returned), the amends (rare,
        one each), then the ends made final with every leftover released in
        one statement (FINISH_AND_RELEASE; FINISH_ORDERS alone when nothing
        is left to release). A delivery without fills locks its ending
        orders' accounts and rows in one SELECT instead."""
        fills, updates = [], []
        for routing_key, _message_id, body in batch:
            if routing_key == "trade_executed":
                fills.extend(self._fills(body))
            elif routing_key == "order_updated":
                updates.append(body)
        finishing: dict[int, tuple] = {}
        amends = []
        for update in updates:
            order_id = update.get("order_id")
            if order_id is None:
                continue
            key = (order_id, update["market"], str(update.get("user_id")))
            if update["event"] == "command_rejected" and update.get("command") == "place_order":
                finishing.setdefault(order_id, (key, "rejected", update.get("reason"), None))
            elif update["event"] == "order_done":
                filled = update.get("filled_quantity")
                finishing.setdefault(order_id, (key, update["status"], update.get("reason"),
                                                None if filled is None else Decimal(filled)))
            elif update["event"] == "order_amended" and order_id not in finishing:
                amends.append((update["price"], update["quantity"], *key))
        with self.pool.connection() as conn, conn.transaction():
            if fills:
                self._apply_fills(conn, fills, amends, finishing)
                return
            # No fills: locks in the one order (docs/order-flow.md, "Lock
            # order"): the ending orders' accounts before the amends lock
            # any order row (an amend that holds its order and waits for the
            # account would otherwise deadlock with us), then the order rows
            # in id order (the amends lock in event order: against an
            # acceptance batch locking the same orders in id order, a
            # deadlock).
            accounts_locked = bool(finishing) and bool(amends)
            if accounts_locked:
                conn.execute(LOCK_HOLD_ACCOUNTS, (sorted(finishing),))
            touched = {a[2] for a in amends}
            if len(touched) > 1 or (touched and accounts_locked):
                conn.execute(LOCK_ORDER_ROWS, (sorted(touched | set(finishing)),))
            for amend in amends:
                conn.execute(APPLY_AMEND, amend)
            if finishing:
                self._finish(conn, [finishing[order_id] for order_id in sorted(finishing)],
                             accounts_locked)

    def _apply_fills(self, conn, fills, amends, finishing) -> None:
        """A delivery with fills, in its transaction: ONE statement
        (FILLS_AND_ENDS) reads the ends that waited for these fills, locks
        the accounts of every ending order (the delivery's and the waiting
        ones) and then every order row of the delivery in id order
        (docs/order-flow.md, "Lock order"), applies the fills, and returns
        the ending orders still open with their amounts after the fills;
        then the amends (rows locked already) and the ends (_finish, which
        locks nothing more). Fills before ends: an end of this delivery
        counts them."""
        touched = {f["order_id"] for f in fills} | {a[2] for a in amends}
        rows = conn.execute(FILLS_AND_ENDS, {
            "fills": Jsonb(fills), "filled": sorted({f["order_id"] for f in fills}),
            "ending": sorted(finishing), "touched": sorted(touched)}).fetchall()
        open_rows = []
        for *order, end_status, end_reason, end_filled, end_market, end_user in rows:
            order_id = order[0]
            if end_status is not None:
                # An end that came before these fills (see _finish): one of
                # this delivery's own ends goes first.
                finishing.setdefault(order_id, ((order_id, end_market, end_user), end_status,
                                                end_reason, end_filled))
            if order_id in finishing:
                open_rows.append(tuple(order))
        for amend in amends:
            conn.execute(APPLY_AMEND, amend)
        if finishing:
            self._finish(conn, [finishing[order_id] for order_id in sorted(finishing)],
                         accounts_locked=True, rows=open_rows)

    @staticmethod
    def _fills(body) -> list[dict]:
        # Only an order of this market and user: an engine command that did not
        # come through this service (an operator's, a test's) cannot touch ours.
        trade = trade_executed(body)  # the one decoding of a trade (services.common.events)
        return [{"trade_id": trade.trade_id, "market": trade.market,
                 "price": trade.price, "quantity": trade.quantity,
                 "quote_quantity": trade.quote_quantity, "is_maker": is_maker,
                 "executed_at": trade.executed_at, "order_id": order_id,
                 "user_id": user}
                for order_id, user, is_maker in trade.sides()]

    @staticmethod
    def _finish(conn, ends: list[tuple], accounts_locked: bool = False,
                rows: list[tuple] | None = None) -> None:
        """The orders that ended (``(key, status, reason, filled)``, key =
        (order_id, market, user), in order id order; ``filled`` the engine's
        cumulative filled quantity at the end, None if not known): each still
        open one final, with what it did not spend released in this
        transaction. An end whose order has recorded less than ``filled``
        came before a fill of it (a batch republished after a later one):
        it waits in pending_order_ends, unfinished and unreleased, for the
        fill (``_apply``). ``accounts_locked``: their accounts are locked
        already; ``rows``: the still open ones among them, locked and read
        already (OPEN_ENDING_ORDERS' columns, FILLS_AND_ENDS)."""
        # Settlement locks accounts in id order; the releases below must
        # too, or the two deadlock. The accounts first, then the orders, in
        # one statement (one round trip) unless they are locked already.
        wanted = {key: (status, reason, filled) for key, status, reason, filled in ends}
        ids = [key[0] for key in wanted]
        if rows is None:
            rows = (conn.execute(LOCK_OPEN_ORDERS, (ids,)) if accounts_locked
                    else conn.execute(LOCK_ENDING_ORDERS, (ids, ids))).fetchall()
        finals, releases, waiting = [], [], []
        for order_id, market, user, side, asset, hold, filled_quantity, filled_quote in rows:
            ending = wanted.get((order_id, market, user))
            if ending is None:
                continue   # not ours (another market or user named it)
            if ending[2] is not None and filled_quantity < ending[2]:
                waiting.append({"order_id": order_id, "market": market, "user_id": user,
                                "status": ending[0], "reason": ending[1],
                                "filled_quantity": str(ending[2])})
                continue
            amount = holds.leftover(side, hold, filled_quantity, filled_quote)
            finals.append({"order_id": order_id, "status": ending[0], "reason": ending[1],
                           "released_amount": str(amount)})
            if amount > 0:
                releases.append((user, asset, amount, f"order:{order_id}:final"))
        if waiting:
            conn.execute(WAIT_FOR_FILLS, (Jsonb(waiting),))
        # Ends already final (a redelivery) found no open row: nothing again.
        if finals and releases:
            # The ends and their releases in one statement (one round trip).
            owners, assets, amounts, refs = (list(column) for column in zip(*releases))
            refused = conn.execute(FINISH_AND_RELEASE, (
                Jsonb(finals), ["release"] * len(releases), owners, assets, amounts,
                refs)).fetchall()
            if refused:
                # Wallets refused a release (an order that spent more than it
                # held): the whole batch fails, and handle() parks the event.
                raise ReleaseRefused("; ".join(f"{code}: {text}" for code, text in refused))
        elif finals:
            conn.execute(FINISH_ORDERS, (Jsonb(finals),))

    def parked(self) -> int:
        with self.pool.connection() as conn:
            return conn.execute("SELECT count(*) FROM unprocessed_events").fetchone()[0]


# The ending orders' hold accounts locked through wallets' declared function
# (orders reads no wallets table), in id order as settlement does.
LOCK_HOLD_ACCOUNTS = ("SELECT wallets.lock_user_accounts(array_agg(user_id), "
                      "array_agg(hold_asset)) FROM orders WHERE order_id = ANY(%s)")
OPEN_ENDING_ORDERS = """
SELECT o.order_id, o.market, o.user_id, o.side, o.hold_asset, o.hold_amount,
       o.filled_quantity, o.filled_quote
  FROM orders o
 WHERE o.order_id = ANY(%s) AND o.status IN ('new', 'partially_filled')
"""
# The still open ones among the ending orders, locked and read (their
# accounts locked before).
LOCK_OPEN_ORDERS = OPEN_ENDING_ORDERS + " ORDER BY o.order_id FOR UPDATE"
# Both in one statement (one round trip): the accounts (the InitPlan runs
# first), then the orders.
LOCK_ENDING_ORDERS = (f"WITH accounts AS MATERIALIZED ({LOCK_HOLD_ACCOUNTS})"
                      + OPEN_ENDING_ORDERS
                      + " AND (SELECT count(*) FROM accounts) = 1 ORDER BY o.order_id FOR UPDATE")

# A delivery with fills in ONE statement (one round trip where it cost four,
# six with ends: the waiting ends' read, the accounts' lock, the order rows'
# lock, the fills, the ending orders' read). In this order, each step forced
# to finish before the next by the MATERIALIZED CTE it waits for:
# 1. ``pending``: the ends that waited for a fill of these orders (migration
#    013);
# 2. ``accounts``: the accounts of every ending order (the delivery's own
#    ends and those waiting) locked through wallets' declared function, in
#    id order as settlement locks them, and only if there is one;
# 3. ``locked``: then every order row of the delivery (fills, amends, ends),
#    FOR UPDATE in id order (docs/order-flow.md, "Lock order"), read at its
#    latest version;
# 4. the fills once each (a redelivered trade inserts nothing) and every
#    order's filled amounts raised by what it got in this delivery (its row
#    is locked already);
# 5. the ending orders still open after the fills, with their amounts after
#    them and the waiting end, if any: ``(order_id, market, user_id, side,
#    hold_asset, hold_amount, filled_quantity, filled_quote, end_status,
#    end_reason, end_filled, end_market, end_user)``.
# Parameters: fills (JSON array of order_fills rows plus each order's user),
# filled (their order ids), ending (the delivery's ending order ids), touched
# (the order ids of its fills and amends).
FILLS_AND_ENDS = """
WITH pending AS MATERIALIZED (
    SELECT order_id, market, user_id, status, reason, filled_quantity
      FROM pending_order_ends WHERE order_id = ANY(%(filled)s::bigint[])
), ending AS MATERIALIZED (
    SELECT unnest(%(ending)s::bigint[]) AS order_id
     UNION
    SELECT order_id FROM pending
), accounts AS MATERIALIZED (
    SELECT wallets.lock_user_accounts(array_agg(user_id), array_agg(hold_asset))
      FROM orders WHERE order_id = ANY(ARRAY(SELECT order_id FROM ending))
    HAVING count(*) > 0
), locked AS MATERIALIZED (
    SELECT order_id, market, user_id, side, hold_asset, hold_amount, filled_quantity,
           filled_quote, status
      FROM orders
     WHERE order_id = ANY(%(touched)s::bigint[] || ARRAY(SELECT order_id FROM ending))
       AND (SELECT count(*) FROM accounts) >= 0
     ORDER BY order_id FOR UPDATE
), batch AS (
    SELECT * FROM jsonb_to_recordset(%(fills)s) AS f(trade_id text, market text,
        price numeric, quantity numeric, quote_quantity numeric, is_maker boolean,
        executed_at bigint, order_id bigint, user_id text)
     WHERE (SELECT count(*) FROM locked) >= 0
), filled AS (
    INSERT INTO order_fills (trade_id, order_id, market, price, quantity, quote_quantity,
                             is_maker, executed_at)
    SELECT b.trade_id, o.order_id, b.market, b.price, b.quantity, b.quote_quantity,
           b.is_maker, b.executed_at
      FROM batch b JOIN locked o
        ON o.order_id = b.order_id AND o.market = b.market AND o.user_id = b.user_id
    ON CONFLICT DO NOTHING
    RETURNING order_id, quantity, quote_quantity
), per_order AS (
    SELECT order_id, sum(quantity) AS quantity, sum(quote_quantity) AS quote_quantity
      FROM filled GROUP BY order_id
), updated AS (
    UPDATE orders o
       SET filled_quantity = o.filled_quantity + f.quantity,
           filled_quote = o.filled_quote + f.quote_quantity,
           updated_at = now(),
           status = CASE WHEN o.status = 'new' THEN 'partially_filled' ELSE o.status END
      FROM per_order f
     WHERE o.order_id = f.order_id
    RETURNING o.order_id, o.filled_quantity, o.filled_quote, o.status
)
SELECT l.order_id, l.market, l.user_id, l.side, l.hold_asset, l.hold_amount,
       coalesce(u.filled_quantity, l.filled_quantity),
       coalesce(u.filled_quote, l.filled_quote),
       p.status, p.reason, p.filled_quantity, p.market, p.user_id
  FROM locked l
  LEFT JOIN updated u ON u.order_id = l.order_id
  LEFT JOIN pending p ON p.order_id = l.order_id
 WHERE l.order_id = ANY(ARRAY(SELECT order_id FROM ending))
   AND coalesce(u.status, l.status) IN ('new', 'partially_filled')
 ORDER BY l.order_id
"""

APPLY_AMEND = ("UPDATE orders SET price = %s, quantity = %s, updated_at = now() "
               "WHERE order_id = %s AND market = %s AND user_id = %s "
               "AND status IN ('new', 'partially_filled')")

# The ended orders (``f``: id, status, reason, released amount) and any end
# of theirs that waited for a fill gone: the CTEs and the UPDATE that
# FINISH_ORDERS and FINISH_AND_RELEASE share.
_ENDED = """
WITH f AS (
    SELECT * FROM jsonb_to_recordset(%s) AS f(order_id bigint, status text, reason text,
                                              released_amount numeric)
), waited AS (
    DELETE FROM pending_order_ends p USING f WHERE p.order_id = f.order_id
)"""
_MAKE_FINAL = """
UPDATE orders o
   SET status = f.status, reason = f.reason, released_amount = f.released_amount,
       updated_at = now()
  FROM f
 WHERE o.order_id = f.order_id"""

# The ended orders final, and any end of theirs that waited for a fill gone
# (one statement).
FINISH_ORDERS = _ENDED + _MAKE_FINAL

# Ends that came before a fill of their order: kept until it comes (a
# redelivered end is the same end).
WAIT_FOR_FILLS = """
INSERT INTO pending_order_ends (order_id, market, user_id, status, reason, filled_quantity)
SELECT order_id, market, user_id, status, reason, filled_quantity
  FROM jsonb_to_recordset(%s) AS w(order_id bigint, market text, user_id text, status text,
                                   reason text, filled_quantity numeric)
ON CONFLICT (order_id) DO NOTHING
"""
# Every order row of a delivery without fills (amends, ends), locked once in
# id order (docs/order-flow.md, "Lock order"), after the accounts.
LOCK_ORDER_ROWS = ("SELECT 1 FROM orders WHERE order_id = ANY(%s) "
                   "ORDER BY order_id FOR UPDATE")

# The ended orders final (FINISH_ORDERS) and every leftover released in one
# call of wallets' declared set-based movement (idempotent by ref; one journal
# statement, one balances_changed), in one statement: the refusals, if any.
# The two touch different rows (orders', wallets'), locked already.
FINISH_AND_RELEASE = _ENDED + ", finished AS (" + _MAKE_FINAL + """
)
SELECT r.refusal_code, r.refusal
  FROM wallets.move_funds_batch(%s, %s, %s, %s, %s) r
 WHERE r.refusal_code IS NOT NULL
"""


class ReleaseRefused(Exception):
    """Wallets refused the release of what an ended order did not spend."""


# A freeze's exclusive locks of its users, against in-flight placements of
# the same users (place_orders_tx takes them shared): a placement either
# commits (and its command is queued) before the freeze's cancel, or sees the
# block. In user order, as place_orders_tx takes its own.
LOCK_USERS = ("SELECT count(pg_advisory_xact_lock(hashtextextended('user:' || u.user_id, 7))) "
              "FROM (SELECT DISTINCT unnest(%s::text[]) AS user_id ORDER BY 1) u")


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
        # Each event parsed by its definition (version checked).
        batch = [(routing_key, message_id, events.ALL[routing_key].parse(body))
                 for routing_key, message_id, body in batch]
        with self.pool.connection() as conn, conn.transaction():
            # The users' locks in user order, sorted by the database as
            # place_orders_tx sorts its shared ones (docs/order-flow.md,
            # "Lock order"): in batch order the two deadlocked.
            conn.execute(LOCK_USERS, ([body["user_id"] for _key, _id, body in batch],))
            for routing_key, message_id, body in batch:
                user, at = body["user_id"], int(body.get("at") or 0)
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
                    "('new', 'partially_filled')", (user,))]
                # The engine dedupes commands by id: one per event and market.
                event_id = message_id or f"{user}:{at}"
                for market in markets:
                    enqueue_command(conn, "orders", command_queue_name(market),
                                    f"{routing_key}:{event_id}:{market}",
                                    {"command": command_to_dict(CancelAll(user))})


class MarketCatalog(RegistryCatalogue):
    """The registry's markets (services.common.catalogue), loaded at start and
    followed: placing an order depends on no other service being up. Workers
    get ``config(symbol)``: the engine's MarketConfig, built once per
    catalogue version."""

    def setup(self):
        super().setup()
        self.configs: dict = {}
        self.version = None

    def config(self, symbol) -> MarketConfig | None:
        market = self.follower.market(symbol)
        if market is None:
            return None
        if self.version != self.follower.current.version:
            self.configs, self.version = {}, self.follower.current.version
        config = self.configs.get(market.symbol)
        if config is None:
            config = self.configs[market.symbol] = MarketConfig.from_dict(market.engine_config())
        return config

    def get_dependency(self, worker_ctx):
        return self
