"""Nameko service `orders`: the trading API in front of the engines.

place_order / place_orders: validate (grid, types) -> hand the order to the
process's group commit (acceptance.py): in ONE database transaction per batch
of concurrent requests, write the orders, hold their funds through wallets'
in-database contract (`wallets.move_funds_batch`, idempotent by ref `order:<id>`)
and put their engine commands in the outbox -> answer each caller with its
order. "Accepted" means: durably recorded with its funds held and its command
committed for the engine; all three commit together or not at all, so no
process dying at any moment leaves an order without its hold or a hold
without its order (docs/order-flow.md). A refused order (insufficient funds,
blocked user) writes nothing, and does not fail the others of its batch.
Cancels share the batches.
"""
from __future__ import annotations

import uuid
from decimal import Decimal

from services.common import grammar, json_codec, rpc_replies
from services.common.deadlines import TimedRpcProxy, rpc
from services.common.errors import CodedError, InvalidInput
from services.common.metrics import ServiceMetrics
from services.common.rpc_requests import RequestId, request_rpc
from services.common.outbox import OutboxRelay, enqueue_command
from services.common.principals import AdminPrincipal
from services.matching.models import (
    CancelAll, InvalidValue, MarketConfig, command_to_dict,
    place_order_from_decimals, static_rejection,
)
from services.matching.providers import command_queue_name

from . import holds
from .acceptance import (
    OUTBOX_STREAM, RELAY_LINGER_S, Acceptance, Amend, Cancel, Placement,
    derived_client_order_id, invalid_value_field, merge_engine_commands, several_commands,
)
from .errors import InvalidOrder, OrderRejected, OrdersError, UnknownMarket, UnknownOrder
from .providers import (
    OPEN, MarketCatalog, MatchingEvents, OrderStore, UserStates, order_view,
)

rpc_replies.install()
json_codec.install()

MAX_PAGE = 500
# Orders in one place_orders call.
MAX_ORDERS_PER_CALL = 200
# The market list and the depth for a market buy's protection price: a
# matching process that does not answer fails the call, never blocks it.
MATCHING_CALL_TIMEOUT_S = 2.0


def _parsed(parse, value, field: str, **limits):
    """``value`` through the one strict grammar (services.common.grammar); a
    refusal is ``INVALID_ORDER`` naming the field."""
    try:
        return parse(value, field, **limits)
    except InvalidInput as exc:
        raise InvalidOrder(f"{exc.code}: {exc.message}", field) from None


def _text(name: str, value, max_len: int = 64, optional=False, pattern=None):
    if value is None and optional:
        return None
    return _parsed(grammar.text, value, name, max_len=max_len, pattern=pattern)


def _user(value) -> str:
    return _parsed(grammar.text, value, "user", max_len=64, pattern=grammar.USER_ID)


def _choice(name: str, value, allowed, default=None):
    return _parsed(grammar.choice, value, name, allowed=allowed, default=default)


def _decimal(name: str, value):
    return None if value is None else _parsed(grammar.decimal, value, name)


def _int_id(name: str, value) -> int:
    return _parsed(grammar.integer, value, name, minimum=1)


def _text_of(amount: Decimal | None) -> str | None:
    return None if amount is None else format(amount, "f")


PLACE_ORDER_ARGUMENTS = frozenset({
    "user", "market", "side", "type", "quantity", "quote_amount", "price", "time_in_force",
    "post_only", "stp_mode", "client_order_id", "reuse_client_order_id"})


def batch_answer(outcome) -> dict:
    """One order's answer in a batch call: the order, or its refusal's code.
    Anything but a refusal (the database is down) fails the whole call."""
    if isinstance(outcome, OrdersError):
        error = {"code": outcome.code, "message": outcome.message}
        for name in ("field", "reason"):
            if getattr(outcome, name, None):
                error[name] = getattr(outcome, name)
        return {"error": error}
    if isinstance(outcome, BaseException):
        raise outcome
    return {"order": outcome}


class OrdersService:
    name = "orders"

    db = OrderStore()
    catalog = MarketCatalog()
    events = MatchingEvents()
    user_states = UserStates()
    relay = OutboxRelay(OUTBOX_STREAM, linger_s=RELAY_LINGER_S, merge=merge_engine_commands,
                        linger_after=several_commands)
    matching_rpc = TimedRpcProxy("matching", timeout_s=MATCHING_CALL_TIMEOUT_S)
    request_id = RequestId()
    metrics = ServiceMetrics()
    acceptance = Acceptance()
    caller = AdminPrincipal()

    @rpc
    def health(self):
        with self.db.transaction() as conn:
            conn.execute("SELECT 1")
            parked, waiting = conn.execute(
                "SELECT (SELECT count(*) FROM unprocessed_events), "
                "(SELECT count(*) FROM pending_order_ends)").fetchone()
        # A parked event is an order whose state (or released funds) an
        # operator must put right: the service is degraded, not down. An end
        # waiting for its order's last fill is normal for a moment (a batch
        # republished late); one that keeps waiting holds funds.
        return {"status": "degraded" if parked else "ok",
                "events_consumer_active": self.events.active, "parked_events": parked,
                "ends_waiting_for_fills": waiting}

    # -- markets ---------------------------------------------------------------
    def _market(self, symbol) -> MarketConfig:
        symbol = _text("market", symbol, 32)
        config = self.catalog.config(symbol)
        if config is None:
            raise UnknownMarket(symbol)
        return config

    def _trading_market(self, symbol) -> MarketConfig:
        """The market's config if it takes orders; OrderRejected MARKET_HALTED
        while the registry says it is not trading (halted, pre-trading,
        delisted: ``config.halted``). Cancels are not refused: they go
        through ``_market``."""
        config = self._market(symbol)
        if config.halted:
            raise OrderRejected("MARKET_HALTED", f"{config.symbol} is not trading")
        return config

    # -- place -------------------------------------------------------------------
    def _request_id(self) -> str | None:
        """This request's own id (the same when the broker redelivers it after
        a process died mid-call), recorded with its orders: a redelivered
        request finds its orders instead of being refused as a duplicate or
        placing more."""
        return self.request_id if isinstance(self.request_id, str) \
            and grammar.CLIENT_ORDER_ID.fullmatch(self.request_id) else None

    @request_rpc(expected_exceptions=OrdersError)
    def place_order(self, user, market, side, type="limit", quantity=None, quote_amount=None,
                    price=None, time_in_force=None, post_only=False, stp_mode=None,
                    client_order_id=None, reuse_client_order_id=False):
        """One order, accepted in the process's next batch (group commit):
        returns it with status ``new`` once committed with its hold and its
        engine command; raises its refusal (InvalidOrder, UnknownMarket,
        OrderRejected with the reason, DuplicateClientOrderId). A client
        order id is the user's for good (a retry with it is safe), unless
        ``reuse_client_order_id``: then it is refused only while an open
        order has it (Binance's rule, docs/order-flow.md)."""
        request_id = self._request_id()
        # Without a client order id, the request's id stands in for one.
        return self.acceptance.submit(self._placement(
            user, market, side, type, quantity, quote_amount, price, time_in_force, post_only,
            stp_mode, client_order_id if client_order_id is not None else request_id,
            request_id, reuse_client_order_id=reuse_client_order_id))

    @request_rpc(expected_exceptions=OrdersError)
    def place_orders(self, orders):
        """Several orders (a list of ``place_order``'s keyword arguments, at
        most MAX_ORDERS_PER_CALL), accepted together: each answer in order is
        ``{"order": {...}}`` or ``{"error": {"code", "message", "field"?,
        "reason"?}}`` with the code ``place_order`` would raise; a refused
        order does not fail the others. A redelivered call (same request)
        answers with the orders it placed; an order without a client order id
        gets one derived from the request id and its position."""
        if not isinstance(orders, list) or not 1 <= len(orders) <= MAX_ORDERS_PER_CALL:
            raise InvalidOrder(f"orders must be a list of 1 to {MAX_ORDERS_PER_CALL} orders",
                               "orders")
        request_id, protection = self._request_id(), {}
        return self._accepted([self._batch_placement(index, args, request_id, protection)
                               for index, args in enumerate(orders)])

    @request_rpc(expected_exceptions=OrdersError)
    def place_and_cancel(self, requests):
        """Places and cancels in ONE call and one acceptance batch (a bot's
        or the gateway's concurrent requests of both kinds: one RPC instead
        of a ``place_orders`` and a ``cancel_orders`` call). Each request is
        ``{"place": {place_order's keyword arguments}}`` or ``{"cancel":
        {"user", "order_id"}}``, at most MAX_ORDERS_PER_CALL in all; each
        answer in order is what ``place_orders`` or ``cancel_orders`` answers
        for it. A cancel and a place of one call are in one transaction, so a
        cancel cannot name an order placed by the same call (it has no id
        yet). A redelivered call replays its places (their client order ids
        derive from the request id and their position) and asks its cancels
        again (an order already cancelled answers ``ORDER_NOT_OPEN``)."""
        if not isinstance(requests, list) or not 1 <= len(requests) <= MAX_ORDERS_PER_CALL:
            raise InvalidOrder(f"requests must be a list of 1 to {MAX_ORDERS_PER_CALL}",
                               "requests")
        request_id, protection = self._request_id(), {}
        parsed = []
        for index, request in enumerate(requests):
            kind = next(iter(request)) if isinstance(request, dict) and len(request) == 1 \
                else None
            if kind == "place":
                parsed.append(self._batch_placement(index, request["place"], request_id,
                                                    protection))
            elif kind == "cancel":
                parsed.append(self._batch_cancel(request["cancel"]))
            else:
                parsed.append(InvalidOrder('a request is {"place": {...}} or {"cancel": {...}}',
                                           "requests"))
        return self._accepted(parsed)

    def _accepted(self, parsed: list) -> list:
        """``parsed``: per request, its validated Placement / Cancel or its
        refusal. The valid ones go to the group commit together; the answers
        in order (``batch_answer``)."""
        pending = [(index, item) for index, item in enumerate(parsed)
                   if not isinstance(item, OrdersError)]
        answers = list(parsed)
        for (index, _), outcome in zip(pending, self.acceptance.submit_many(
                [item for _, item in pending])):
            answers[index] = outcome
        return [batch_answer(answer) for answer in answers]

    def _batch_placement(self, index: int, args, request_id, protection: dict):
        """One order of a batch call: its Placement, or its refusal (returned)."""
        try:
            if not isinstance(args, dict):
                raise InvalidOrder("an order is an object of place_order's arguments", "orders")
            args = dict(args)
            unknown = sorted(set(args) - PLACE_ORDER_ARGUMENTS)
            if unknown:
                raise InvalidOrder(f"unknown argument {unknown[0]}", unknown[0])
            # Each order of the call is a request of its own (its position in
            # the call names it): a redelivered call replays each, while two
            # orders of one call naming the same client order id are a
            # duplicate, not one request seen twice.
            item_request_id = None if request_id is None \
                else derived_client_order_id(request_id, index)
            if args.get("client_order_id") is None:
                args["client_order_id"] = item_request_id
            return self._placement(request_id=item_request_id, protection=protection, **args)
        except OrdersError as exc:
            return exc
        except TypeError:
            return InvalidOrder("an order needs user, market and side", "orders")

    def _placement(self, user, market, side, type="limit", quantity=None, quote_amount=None,
                   price=None, time_in_force=None, post_only=False, stp_mode=None,
                   client_order_id=None, request_id=None, protection=None,
                   reuse_client_order_id=False) -> Placement:
        """A validated order, or its refusal raised. ``protection``: market
        buys' protection prices already read during this call, by market."""
        user = _user(user)
        config = self._trading_market(market)
        side = _choice("side", side, ("buy", "sell"))
        if side is None:
            raise InvalidOrder("side is required", "side")
        order_type = _choice("type", type, ("limit", "market"), "limit")
        tif = _choice("time_in_force", time_in_force, ("GTC", "IOC", "FOK"))
        stp = _choice("stp_mode", stp_mode, ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"))
        if not isinstance(post_only, bool):
            raise InvalidOrder("post_only must be true or false", "post_only")
        if not isinstance(reuse_client_order_id, bool):
            raise InvalidOrder("reuse_client_order_id must be true or false",
                               "reuse_client_order_id")
        client_order_id = _text("client_order_id", client_order_id, 36, optional=True,
                                pattern=grammar.CLIENT_ORDER_ID)
        price, quantity, quote_amount = (_decimal("price", price), _decimal("quantity", quantity),
                                         _decimal("quote_amount", quote_amount))
        engine_type, engine_price = order_type, price
        if order_type == "limit":
            if price is None or quantity is None or quote_amount is not None:
                raise InvalidOrder("a limit order needs price and quantity, and no quote_amount",
                                   "price" if price is None else "quantity" if quantity is None
                                   else "quote_amount")
            tif = tif or "GTC"
        else:
            if price is not None or post_only:
                raise InvalidOrder("a market order has no price and cannot be post-only",
                                   "price" if price is not None else "post_only")
            if (quantity is None) == (quote_amount is None):
                raise InvalidOrder("a market order needs exactly one of quantity or quote_amount",
                                   "quantity")
            if quote_amount is not None and side == "sell":
                raise InvalidOrder("a market sell is by quantity", "quote_amount")
            tif = tif or "IOC"
            if tif == "GTC":
                raise InvalidOrder("a market order is IOC or FOK", "time_in_force")
            if side == "buy" and quantity is not None:
                # Protect the hold: an IOC limit at the band's edge above the best ask.
                protection = {} if protection is None else protection
                if config.symbol not in protection:
                    protection[config.symbol] = self._protection_price(config)
                engine_type, engine_price = "limit", protection[config.symbol]
        try:
            place = place_order_from_decimals(config, 0, user, side, engine_type, engine_price,
                                              quantity, quote_amount, tif, post_only, stp)
        except InvalidValue as exc:
            raise InvalidOrder(str(exc), invalid_value_field(exc)) from None
        # The market's static rules before anything is written: an order the
        # engine would refuse on its face is refused here, not held,
        # journaled and rejected later.
        reason = static_rejection(config, place)
        if reason is not None:
            raise OrderRejected(reason, f"the order breaks {config.symbol}'s limits")
        hold = holds.initial_hold(config.base_asset, config.quote_asset, side, order_type,
                                  engine_price, quantity, quote_amount)
        return Placement(row={
            "user_id": user, "market": config.symbol, "client_order_id": client_order_id,
            "side": side, "order_type": order_type, "price": _text_of(price),
            "quantity": _text_of(quantity), "quote_amount": _text_of(quote_amount),
            "time_in_force": tif, "post_only": post_only, "stp_mode": stp,
            "hold_asset": hold.asset, "hold_amount": _text_of(hold.amount),
            "cap_price": _text_of(hold.cap_price), "cap_quantity": _text_of(hold.cap_quantity),
            "request_id": request_id, "reuse_client_order_id": reuse_client_order_id},
            command=command_to_dict(place))

    def _protection_price(self, config: MarketConfig) -> Decimal:
        depth = self.matching_rpc.get_depth(config.symbol, 1)
        if not depth["sell"]:
            raise OrderRejected("NO_LIQUIDITY", "no sell orders to buy from")
        best_ask = Decimal(depth["sell"][0][0])
        band = 1 + Decimal(config.price_band_percent or "5") / 100
        # Within the engine's band around its reference price, or it would be refused.
        anchor = Decimal(depth["reference_price"] or best_ask)
        cap = min(best_ask, anchor) * band
        tick = Decimal(config.tick_size)
        return max(best_ask, (cap / tick).to_integral_value(rounding="ROUND_FLOOR") * tick)

    # -- cancel / amend ------------------------------------------------------------
    def _send(self, conn, market: str, message_id: str, command) -> None:
        enqueue_command(conn, OUTBOX_STREAM, command_queue_name(market), message_id,
                        {"command": command_to_dict(command)})

    @rpc(expected_exceptions=OrdersError)
    def cancel_order(self, user, order_id):
        """Ask the engine to cancel (in the process's next batch); the order
        becomes `cancelled` when it has. Raises UnknownOrder, OrderNotOpen."""
        return self.acceptance.submit(Cancel(_user(user), _int_id("order_id", order_id)))

    @rpc(expected_exceptions=OrdersError)
    def cancel_orders(self, cancels):
        """Several cancels (a list of ``{"user", "order_id"}``), requested
        together: each answer in order is ``{"order": {..., "cancel_requested":
        true}}`` or ``{"error": {"code", "message"}}`` as ``cancel_order``
        would raise it."""
        if not isinstance(cancels, list) or not 1 <= len(cancels) <= MAX_ORDERS_PER_CALL:
            raise InvalidOrder(f"cancels must be a list of 1 to {MAX_ORDERS_PER_CALL}", "cancels")
        return self._accepted([self._batch_cancel(cancel) for cancel in cancels])

    @staticmethod
    def _batch_cancel(cancel):
        """One cancel of a batch call: its Cancel, or its refusal (returned)."""
        try:
            if not isinstance(cancel, dict) or set(cancel) != {"user", "order_id"}:
                raise InvalidOrder("a cancel is an object of user and order_id", "cancels")
            return Cancel(_user(cancel["user"]), _int_id("order_id", cancel["order_id"]))
        except OrdersError as exc:
            return exc

    @rpc(expected_exceptions=OrdersError)
    def cancel_all(self, user, market):
        user = _user(user)
        config = self._market(market)
        with self.db.transaction() as conn:
            self._send(conn, config.symbol, f"cancel_all:{config.symbol}:{user}:{uuid.uuid4()}",
                       CancelAll(user))
            count = conn.execute("SELECT count(*) FROM orders WHERE user_id = %s AND market = %s "
                                 "AND status IN ('new', 'partially_filled')",
                                 (user, config.symbol)).fetchone()[0]
        return {"market": config.symbol, "open_orders": count, "cancel_requested": True}

    @rpc(expected_exceptions=CodedError)
    def cancel_market_orders(self, market):
        """Admin sweep (delisting, incident): one CancelAll per user with an
        open order in the market, in this stream after the places: every
        order acknowledged before the call is cancelled, even one whose place
        has not reached the engine yet (docs/order-flow.md, "The admin
        sweep"). Raises UNAUTHENTICATED / PERSON_REQUIRED /
        ADMIN_REQUIRED, UNKNOWN_MARKET."""
        self.caller.admin()
        config = self._market(market)
        sweep = uuid.uuid4()
        with self.db.transaction() as conn:
            users = [row[0] for row in conn.execute(
                "SELECT DISTINCT user_id FROM orders WHERE market = %s "
                "AND status IN ('new', 'partially_filled') ORDER BY 1", (config.symbol,))]
            command_ids = [f"sweep:{config.symbol}:{sweep}:{user}" for user in users]
            for user, command_id in zip(users, command_ids):
                self._send(conn, config.symbol, command_id, CancelAll(user))
        return {"market": config.symbol, "users": len(users), "command_ids": command_ids}

    @rpc(expected_exceptions=OrdersError)
    def amend_order(self, user, order_id, price=None, quantity=None):
        """New price and/or new total quantity, in the process's next batch.
        Raising either holds the extra in the batch's transaction; whatever
        is left over is released when the order ends."""
        price, quantity = _decimal("price", price), _decimal("quantity", quantity)
        if price is None and quantity is None:
            raise InvalidOrder("give a new price or quantity", "price")
        return self.acceptance.submit(Amend(_user(user), _int_id("order_id", order_id), price,
                                            quantity, self._trading_market))

    # -- queries -----------------------------------------------------------------
    @rpc(expected_exceptions=OrdersError)
    def get_order(self, user, order_id=None, client_order_id=None, market=None):
        """The user's order by id, or by client order id: its open order with
        that id, else the latest that had it; only in ``market`` when given
        (an id may be reused on another market once its order has ended)."""
        user = _user(user)
        if (order_id is None) == (client_order_id is None):
            raise InvalidOrder("give exactly one of order_id or client_order_id", "order_id")
        order = self.db.get(user, order_id=None if order_id is None else
                            _int_id("order_id", order_id),
                            client_order_id=_text("client_order_id", client_order_id, 36,
                                                  optional=True),
                            market=_text("market", market, 32, optional=True))
        if order is None:
            raise UnknownOrder("no such order for this user")
        return order

    @rpc(expected_exceptions=OrdersError)
    def get_orders(self, keys):
        """Several orders by id (a list of ``{"user", "order_id"}``, at most
        MAX_ORDERS_PER_CALL), read in one statement: each answer in order is
        ``{"order": {...}}`` or ``{"error": {"code", "message"}}`` as
        ``get_order`` would raise it (the gateway's pollers, gateway/batcher.py)."""
        if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_ORDERS_PER_CALL:
            raise InvalidOrder(f"keys must be a list of 1 to {MAX_ORDERS_PER_CALL}", "keys")
        wanted: list = []
        for key in keys:
            try:
                if not isinstance(key, dict) or set(key) != {"user", "order_id"}:
                    raise InvalidOrder("a key is an object of user and order_id", "keys")
                wanted.append((_user(key["user"]), _int_id("order_id", key["order_id"])))
            except OrdersError as exc:
                wanted.append(exc)
        found = self.db.get_many([key for key in wanted if not isinstance(key, OrdersError)])
        return [batch_answer(key if isinstance(key, OrdersError) else
                             found.get(key) or UnknownOrder("no such order for this user"))
                for key in wanted]

    @rpc(expected_exceptions=OrdersError)
    def open_orders(self, user, market=None):
        user = _user(user)
        from .providers import SELECT_ORDER, order_view
        with self.db.transaction() as conn:
            if market is None:
                rows = conn.execute(f"{SELECT_ORDER} WHERE user_id = %s AND status = ANY(%s) "
                                    "ORDER BY order_id", (user, list(OPEN))).fetchall()
            else:
                rows = conn.execute(f"{SELECT_ORDER} WHERE user_id = %s AND market = %s AND "
                                    "status = ANY(%s) ORDER BY order_id",
                                    (user, self._market(market).symbol, list(OPEN))).fetchall()
        return [order_view(row) for row in rows]

    @rpc(expected_exceptions=OrdersError)
    def order_history(self, user, cursor=None, limit=100):
        """Newest first; pass the returned ``next_cursor`` for the next page."""
        user = _user(user)
        if not isinstance(limit, int):
            raise InvalidOrder("limit must be an integer", "limit")
        limit = _parsed(grammar.integer, limit, "limit", minimum=1, maximum=MAX_PAGE)
        before = 2 ** 63 - 1 if cursor is None else _int_id("cursor", cursor)
        from .providers import SELECT_ORDER, order_view
        with self.db.transaction() as conn:
            rows = conn.execute(f"{SELECT_ORDER} WHERE user_id = %s AND order_id < %s "
                                "ORDER BY order_id DESC LIMIT %s", (user, before, limit)).fetchall()
        orders = [order_view(row) for row in rows]
        return {"orders": orders,
                "next_cursor": orders[-1]["order_id"] if len(orders) == limit else None}
