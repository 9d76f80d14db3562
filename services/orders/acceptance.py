"""Batched acceptance (group commit): concurrent placements and cancels of one
orders process share one PostgreSQL transaction.

Every ``place_order`` / ``place_orders`` / ``cancel_order`` / ``cancel_orders`` /
``amend_order`` worker hands its validated requests to the process's ``Acceptance``; one
batch is in flight at a time, and the requests arriving meanwhile form the
next one (services.common.group_commit). A batch is ONE transaction:

1. ``place_orders_tx`` (functions/place_orders_tx.sql): the orders, their holds
   (accounts locked in id order, with the amended orders' accounts when the
   batch has amends) -- each refused on its own with the single path's code
   and message;
2. the orders of the cancels and amends locked in id order; the cancels, each
   refused on its own (unknown, not open); then the amends, each in a
   savepoint (refused alone: unknown, not open, off grid, the extra hold
   refused);
3. the engine commands of what was accepted: one message per market
   (``enqueue_engine_commands``).

It commits before any caller is answered, so "accepted" means what it meant
for one order (docs/order-flow.md). A transaction PostgreSQL aborts for a
deadlock runs again; a batch that fails otherwise wrote nothing, and its
requests run again one by one, so one bad request fails only its caller (a
database out of reach fails them all).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

import psycopg
from nameko.extensions import DependencyProvider
from psycopg.types.json import Jsonb

from services.common import json_codec
from services.common.config import load_settings
from services.common.group_commit import GroupCommit, run_or_each_alone
from services.common.outbox import COMMANDS_EXCHANGE, enqueue_many
from services.common.postgres import make_pool, retry_transient
from services.matching.models import AmendOrder, CancelOrder, InvalidValue, command_to_dict
from services.matching.providers import command_queue_name
from services.matching.wire import MalformedCommandMessage, command_batch_message, commands_of

from . import holds
from .errors import (
    DuplicateClientOrderId, InvalidOrder, OrderNotOpen, OrderRejected, OrdersError, UnknownOrder,
)
from .providers import OPEN, ORDER_COLUMNS, SELECT_ORDER, order_view


OUTBOX_STREAM = "orders"
MAX_BATCH = 200
LINGER_S = 0.002
# Under load an acceptance batch starts at most once per PACE_S (GroupCommit
# pace_s): without it every process starts its next batch as soon as the
# previous one commits, and at 1,000 requests/s the batches stay small
# enough (5-8) to keep both cores busy; paced (with the gateways' pace and
# the relays' linger below) the open loop at 1,000/s costs about 1.2-1.5 ms
# of machine CPU per request instead of 2.3 (bench/README.md, session 14).
# A request arriving when the previous batch started longer ago than this
# is not held, and a paced batch starts as soon as PACE_ENOUGH requests wait
# (one gateway's batch is usually that many at such rates).
PACE_S = 0.02
PACE_ENOUGH = 16
# Orders' outbox relay reads at most once per RELAY_LINGER_S while acceptance
# batches commit faster than that (services.common.outbox.Relay.linger_s),
# and sends each engine queue the read's commands as one message
# (merge_engine_commands): the engine gets fuller batches, and every hop
# after it (its journal statement, its events, the consumers' deliveries and
# transactions) fewer per order. An order waits at most this long more for
# the engine, whenever its commit comes within RELAY_LINGER_S of the relay's
# previous read -- not only at high rates: with irregular arrivals at a mean
# of 100 commits/s, about 99 % of the gaps are shorter than 50 ms. It adds at
# most RELAY_LINGER_S to acceptance -> fill (an /api/v3 FULL answer waits for
# the engine); the live push's trade latency starts after the engine.
# 50 ms, not 10: engine batches of 33-64 commands at 1,000/s instead of 9-32,
# and every hop behind the engine pays per batch (session 14).
RELAY_LINGER_S = 0.05
# Commands in one merged message at most (the engine's batch: MAX_COMMANDS).
MERGED_COMMANDS = 2000

# An amend's extra hold: wallets' set-based movement with one element (its
# refusal comes back as a row).
HOLD_MORE = ("SELECT m.refusal_code, m.refusal "
             "FROM wallets.move_funds_batch(%s, %s, %s, %s, %s) m")
# The accounts an amended order holds from (the amending user's own orders
# only; user and hold asset never change) and the placements' accounts, in
# ONE call (wallets.lock_user_accounts: id order), so the batch's accounts
# are taken in id order as a whole. place_orders_tx locks its own again
# (rows this transaction holds already: no wait).
LOCK_ACCOUNTS = """
SELECT wallets.lock_user_accounts(array_agg(a.owner), array_agg(a.asset))
  FROM (SELECT o.user_id, o.hold_asset FROM orders o
         WHERE (o.order_id, o.user_id) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))
        UNION ALL
        SELECT * FROM unnest(%s::text[], %s::text[])) AS a (owner, asset)
"""
PLACE_ORDERS = ("SELECT t.item, t.outcome, t.refusal_code, t.refusal, "
                + ", ".join(f"(t.placed).{column}" for column in ORDER_COLUMNS)
                + " FROM place_orders_tx(%s) t")


@dataclass(frozen=True)
class Placement:
    """A validated order: its row as ``place_orders_tx`` reads it (the
    columns of ``orders``, decimals as strings) and its engine command
    (``order_id`` filled in once the order has one)."""
    row: dict
    command: dict


@dataclass(frozen=True)
class Cancel:
    user: str
    order_id: int


@dataclass(frozen=True)
class Amend:
    """A new price and/or total quantity (Decimals, validated) for an order;
    ``config_of(symbol)``: the market's MarketConfig (raises UnknownMarket)."""
    user: str
    order_id: int
    price: Decimal | None
    quantity: Decimal | None
    config_of: Callable


def invalid_value_field(exc: InvalidValue) -> str:
    """The argument an engine grid refusal is about."""
    return {"PRICE_OFF_TICK": "price", "QTY_OFF_LOT": "quantity",
            "AMOUNT_OFF_GRID": "quote_amount"}.get(exc.code, "price")


def refusal_error(code: str, message: str) -> OrdersError:
    """A refusal decided in the database (the user is blocked, the client
    order id is taken, or wallets refused the hold: its code and text) as
    the typed error."""
    if code == DuplicateClientOrderId.code:
        return DuplicateClientOrderId(message)
    return OrderRejected(code, message)


def derived_client_order_id(request_id: str, index: int) -> str:
    """The client order id of the ``index``-th order of a batch request sent
    without one: the same on every redelivery of the request, so a redelivered
    batch finds its orders (36 characters, in the client order id grammar)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"orders.place_orders:{request_id}:{index}"))


def enqueue_engine_commands(conn, commands: list[tuple[str, str, dict]]) -> None:
    """The engine commands of one accepted batch, ``(market, command_id,
    command_dict)`` in acceptance order, into this transaction's outbox: ONE
    message per market (matching's wire format, wire.command_batch_message),
    its commands in acceptance order."""
    by_market: dict[str, list[tuple[str, dict]]] = {}
    for market, command_id, command in commands:
        by_market.setdefault(market, []).append((command_id, command))
    enqueue_many(conn, OUTBOX_STREAM, [
        (COMMANDS_EXCHANGE, command_queue_name(market), *command_batch_message(market, batch))
        for market, batch in by_market.items()])


def several_commands(rows: list) -> bool:
    """Whether one outbox read of orders' stream (rows as merge_engine_commands
    takes them) carried more than one engine command: the relay lingers
    before its next read only then (Relay.linger_after). A read of one
    command is a lone order or cancel, often of a client that sends its next
    one after this one's answer: lingering would add up to RELAY_LINGER_S to
    each of its RESULT / FULL answers. A row that is not a well-formed
    command message counts as several (the relay lingers, as it always did)."""
    if len(rows) != 1:
        return len(rows) > 1
    _, _, _, message_id, payload = rows[0]
    try:
        return len(commands_of(message_id, json.loads(payload))) > 1
    except (MalformedCommandMessage, ValueError):
        return True


def merge_engine_commands(rows: list) -> list:
    """The messages for one outbox read of orders' stream (rows ``(id,
    exchange, routing_key, message_id, payload text)`` in commit order): the
    command messages to one engine queue become ONE batch message with their
    commands in the same order (at most MERGED_COMMANDS each), at the place of
    the first; other rows pass as they are. A queue's rows are merged only
    until MERGED_COMMANDS commands are taken: the rest of the read goes as it
    is, after the merged message, so the work per read is bounded (a backlog
    after a broker outage, 500 rows of up to 200 commands, would otherwise be
    parsed and written again in the relay's greenthread without a yield). A
    queue with a row that is not a well-formed command message keeps its rows
    as they are. The engine dedupes by command id, so a merged message sent
    again after a nack (the rows stay in the outbox until confirmed) is
    applied once."""
    by_queue: dict[str, list] = {}
    for row in rows:
        if (row[1] or COMMANDS_EXCHANGE) == COMMANDS_EXCHANGE:
            by_queue.setdefault(row[2], []).append(row)
    merged: dict[int, list] = {}   # the first row's id -> its queue's messages
    for queue, queue_rows in by_queue.items():
        if len(queue_rows) < 2:
            continue
        commands, market = [], queue.removeprefix(command_queue_name(""))
        taken = 0
        try:
            for _, _, _, message_id, payload in queue_rows:
                if len(commands) >= MERGED_COMMANDS:
                    break
                errors: list = []
                commands += commands_of(message_id, json.loads(payload), errors)
                if errors:
                    raise MalformedCommandMessage(errors[0])
                taken += 1
        except (MalformedCommandMessage, ValueError):
            continue
        if taken < 2:
            continue
        queue_rows = queue_rows[:taken]
        first = queue_rows[0]
        merged[first[0]] = [
            (first[0], COMMANDS_EXCHANGE, queue, message_id,
             json_codec.dumps(payload).decode())
            for message_id, payload in (
                command_batch_message(market, commands[start:start + MERGED_COMMANDS])
                for start in range(0, len(commands), MERGED_COMMANDS))]
        for row in queue_rows[1:]:
            merged[row[0]] = []
    if not merged:
        return rows
    return [message for row in rows for message in merged.get(row[0], [row])]


class Acceptance(DependencyProvider):
    """The process's group commit. Workers get ``submit`` / ``submit_many``
    (outcomes: an order dict, or an ``OrdersError`` instance)."""

    def setup(self):
        config = self.container.config
        self.pool = make_pool(load_settings(), config.get("POSTGRES_DB"), min_size=1, max_size=2,
                              name="orders-acceptance")
        self.batcher = GroupCommit(
            self._run, max_batch=int(config.get("ORDERS_MAX_BATCH", MAX_BATCH)),
            linger_s=float(config.get("ORDERS_BATCH_LINGER_S", LINGER_S)),
            pace_s=float(config.get("ORDERS_BATCH_PACE_S", PACE_S)),
            enough=int(config.get("ORDERS_BATCH_PACE_ENOUGH", PACE_ENOUGH)),
            spawn=self.container.spawn_managed_thread)

    def stop(self):
        self.batcher.close()
        self.pool.close()

    def kill(self):
        self.batcher.close()
        self.pool.close(timeout=0)

    def get_dependency(self, worker_ctx):
        return self.batcher

    # -- one batch -----------------------------------------------------------
    def _run(self, requests: list) -> list:
        # One request the database refused in a way no refusal code covers
        # must not fail the others: each alone, in its own transaction
        # (nothing of the failed one was committed). The database out of
        # reach: every caller of the batch learns it.
        return run_or_each_alone(lambda batch: retry_transient(lambda: self._transaction(batch)),
                                 requests, fatal=(psycopg.OperationalError,))

    def _transaction(self, requests: list) -> list:
        outcomes: list = [None] * len(requests)
        placements = [(i, r) for i, r in enumerate(requests) if isinstance(r, Placement)]
        cancels = [(i, r) for i, r in enumerate(requests) if isinstance(r, Cancel)]
        amends = [(i, r) for i, r in enumerate(requests) if isinstance(r, Amend)]
        commands: list[tuple[str, str, dict]] = []
        with self.pool.connection() as conn, conn.transaction():
            # Locks in the one order (docs/order-flow.md, "Lock order"):
            # every account the batch holds from, in id order, then the
            # order rows, in id order. An amend's extra hold needs its
            # account: locked here with the placements', before any order
            # row (a consumer that holds the account and waits for the
            # order would otherwise deadlock with us).
            if amends:
                conn.execute(LOCK_ACCOUNTS, self._accounts(placements, amends))
            if placements:
                self._place(conn, placements, outcomes, commands)
            if cancels or amends:
                ids = sorted({request.order_id for _, request in cancels + amends})
                locked = {row[0]: order_view(row) for row in conn.execute(
                    f"{SELECT_ORDER} WHERE order_id = ANY(%s) ORDER BY order_id FOR UPDATE",
                    (ids,)).fetchall()}
            if cancels:
                self._cancel(cancels, locked, outcomes, commands)
            for index, amend in amends:
                try:
                    with conn.transaction():   # a savepoint: a refused amend alone
                        outcomes[index], command = self._amend(conn, amend)
                    commands.append(command)
                except OrdersError as exc:
                    outcomes[index] = exc
            if commands:
                enqueue_engine_commands(conn, commands)
        return outcomes

    @staticmethod
    def _place(conn, placements, outcomes, commands) -> None:
        # The same request delivered twice (a redelivery) can land in one
        # batch: it is placed once and both deliveries get its outcome.
        first_of, copies = {}, []
        for index, placement in placements:
            key = (placement.row["user_id"], placement.row["client_order_id"],
                   placement.row["request_id"])
            if None in key:
                continue
            if key in first_of:
                copies.append((index, first_of[key]))
            else:
                first_of[key] = index
        copied = {index for index, _ in copies}
        placements = [(i, placement) for i, placement in placements if i not in copied]
        rows = conn.execute(PLACE_ORDERS, (Jsonb([placement.row for _, placement in placements]),)
                            ).fetchall()
        for item, outcome, code, refusal, *order in sorted(rows, key=lambda row: row[0]):
            index, placement = placements[item - 1]
            if outcome == "refused":
                outcomes[index] = refusal_error(code, refusal)
                continue
            view = order_view(order)
            outcomes[index] = view
            if outcome == "placed":
                commands.append((view["market"], f"place:{view['order_id']}",
                                 {**placement.command, "order_id": view["order_id"]}))
        for index, first in copies:
            outcomes[index] = outcomes[first]

    @staticmethod
    def _accounts(placements, amends) -> tuple:
        """LOCK_ACCOUNTS' arguments: the amended orders (order id, user) and
        the placements' (user, hold asset)."""
        rows = [placement.row for _, placement in placements]
        return ([amend.order_id for _, amend in amends], [amend.user for _, amend in amends],
                [row["user_id"] for row in rows], [row["hold_asset"] for row in rows])

    @staticmethod
    def _cancel(cancels, found, outcomes, commands) -> None:
        """``found``: the orders of the batch's cancels and amends, locked."""
        for index, cancel in cancels:
            order = found.get(cancel.order_id)
            if order is None or order["user_id"] != cancel.user:
                outcomes[index] = UnknownOrder(f"no order {cancel.order_id} for this user")
            elif order["status"] not in OPEN:
                outcomes[index] = OrderNotOpen(f"order {cancel.order_id} is {order['status']}")
            else:
                outcomes[index] = {**order, "cancel_requested": True}
                commands.append((order["market"], f"cancel:{order['order_id']}:{uuid.uuid4()}",
                                 command_to_dict(CancelOrder(order["order_id"],
                                                             order["user_id"]))))

    @staticmethod
    def _amend(conn, amend: Amend) -> tuple[dict, tuple[str, str, dict]]:
        """Raising the price or quantity holds the extra in the batch's
        transaction; whatever is left over is released when the order ends.
        Its account and its order are locked already (``_transaction``); the
        row is read again here, as an earlier amend of the batch left it."""
        row = conn.execute(f"{SELECT_ORDER} WHERE order_id = %s AND user_id = %s",
                           (amend.order_id, amend.user)).fetchone()
        if row is None:
            raise UnknownOrder(f"no order {amend.order_id} for this user")
        order = order_view(row)
        if order["status"] not in OPEN:
            raise OrderNotOpen(f"order {amend.order_id} is {order['status']}")
        if order["order_type"] != "limit":
            raise InvalidOrder("only limit orders can be amended", "order_id")
        config = amend.config_of(order["market"])
        hold, cap_price, cap_quantity, amends = conn.execute(
            "SELECT hold_amount, cap_price, cap_quantity, amends FROM orders WHERE order_id = %s",
            (amend.order_id,)).fetchone()
        new_price = amend.price if amend.price is not None else Decimal(order["price"])
        new_quantity = amend.quantity if amend.quantity is not None else Decimal(order["quantity"])
        try:
            command = AmendOrder(
                amend.order_id, amend.user,
                None if amend.price is None else config.price_to_ticks(amend.price),
                None if amend.quantity is None else config.qty_to_lots(amend.quantity))
        except InvalidValue as exc:
            raise InvalidOrder(str(exc), invalid_value_field(exc)) from None
        extra, cap_price, cap_quantity = holds.amend_extra(
            order["side"], hold, cap_price, cap_quantity, new_price, new_quantity)
        amends += 1
        if extra > 0:
            code, message = conn.execute(HOLD_MORE, (
                ["hold"], [amend.user], [order["hold_asset"]], [extra],
                [f"order:{amend.order_id}:amend:{amends}"])).fetchone()
            if code is not None:
                raise refusal_error(code, message)
        conn.execute("UPDATE orders SET hold_amount = hold_amount + %s, cap_price = %s, "
                     "cap_quantity = %s, amends = %s, updated_at = now() WHERE order_id = %s",
                     (extra, cap_price, cap_quantity, amends, amend.order_id))
        amended = order_view(conn.execute(f"{SELECT_ORDER} WHERE order_id = %s",
                                          (amend.order_id,)).fetchone())
        return ({**amended, "amend_requested": True},
                (order["market"], f"amend:{amend.order_id}:{amends}", command_to_dict(command)))

