"""The matching engine of one market: commands in, ordered events out.

Pure and deterministic: no I/O, no clock, no logging, no randomness. The same
command stream always yields the same events (ids included), and
``MatchingEngine.restore(engine.snapshot())`` continues exactly like the
engine it was taken from.

``apply(command)`` gives the command the market's next sequence number and
returns its events as tuples ``(kind, seq, *fields)`` -- see ``EVENT_FIELDS``
in ``models`` and docs/matching-engine.md. Event order within a command:

1. ``command_accepted`` or ``command_rejected`` (a rejection is the only event);
2. for a taker, level by level: each ``trade_executed`` followed by the
   maker's ``order_done`` if it filled (self-trade-expired makers get their
   ``order_done`` in queue order too), then one ``book_level_changed`` for the
   level with its final total;
3. the taker's ``order_done`` (filled / expired) or, if it rests, the
   ``book_level_changed`` of its own level.

The hot paths (``_place``, ``_cancel``, ``_match``) are written for CPython
speed: locals instead of attributes, list records indexed by literal ints
(``book.OID`` .. ``book.POST``: 0 order_id, 1 user_id, 2 side, 3 price,
4 remaining, 5 filled, 6 quantity, 7 stp, 8 post_only; a level is
0 total, 1 queue, 2 compact_at), tuples for events.
"""

from heapq import heappop, heappush
from typing import Hashable, Optional

from .book import COMPACT_MIN, PRUNE_SLACK, SHORT_QUEUE, OrderBook, compact
from .models import (
    BOOK_LEVEL_CHANGED,
    CANCELLED,
    COMMAND_ACCEPTED,
    COMMAND_REJECTED,
    DONE_CANCEL,
    DONE_CANCEL_ALL,
    DONE_SELF_TRADE,
    DONE_TIME_IN_FORCE,
    EXPIRE_MAKER,
    EXPIRE_TAKER,
    EXPIRED,
    FILLED,
    FOK,
    IOC,
    MARKET,
    MARKET_STATUS_CHANGED,
    MAX_PRICE_TICKS,
    ORDER_AMENDED,
    ORDER_DONE,
    REFERENCE_PRICE_SET,
    SIDES,
    STP_MODES,
    STP_NONE,
    TRADE_EXECUTED,
    AmendOrder,
    CancelAll,
    CancelOrder,
    ConfigError,
    Configure,
    Halt,
    InvalidCommand,
    MarketConfig,
    PlaceOrder,
    Reason,
    Resume,
    SetReferencePrice,
)

SNAPSHOT_VERSION = 1

PLACE = "place_order"
CANCEL = "cancel_order"
CANCEL_ALL = "cancel_all"
AMEND = "amend_order"

# Reason codes the fast paths use, as module globals (one LOAD_GLOBAL).
DUPLICATE_ORDER_ID = Reason.DUPLICATE_ORDER_ID
TOO_MANY_OPEN_ORDERS = Reason.TOO_MANY_OPEN_ORDERS
FOK_NOT_FILLABLE = Reason.FOK_NOT_FILLABLE
UNKNOWN_ORDER = Reason.UNKNOWN_ORDER

def _side_index(side) -> Optional[int]:
    """0 for a buy, 1 for a sell, None for anything else (comparisons, not a
    dict lookup: a malformed side may be unhashable). The fast path in
    ``_hot_paths`` inlines it."""
    if side == "buy":
        return 0
    if side == "sell":
        return 1
    return None


# Stands in for "no limit" (max quantity, max open orders) in fast-path guards;
# a value beyond it only sends the command down the slow path.
_HUGE = 1 << 64


class MatchingEngine:
    """One market's order book and rules. Not thread-safe: one caller at a time.

    ``apply(command)`` applies one command and returns its events (tuples).
    It raises ``InvalidCommand`` only for an object that is not a command;
    every command, valid or not, consumes the next sequence number.
    """

    __slots__ = (
        "config",
        "book",
        "seq",
        "trade_seq",
        "last_price",
        "_reference_price",
        "_halted",
        "apply",
        # Fast-path bounds: a limit price in [_lo, _hi] is a valid int64 tick
        # count inside the price band of an open market; halted: empty range.
        "_lo",
        "_hi",
        # Direct references to the book's containers and the config's ints,
        # so the hot paths read one attribute instead of two.
        "_orders",
        "_user_orders",
        "_levels",
        "_heaps",
        "_best",
        "_min_lots",
        "_max_lots",
        "_min_notional",
        "_band_num",
        "_band_den100",
        "_max_open",
        "_default_stp",
    )

    def __init__(self, config: MarketConfig):
        self.book = book = OrderBook()
        self.seq = 0  # sequence number of the last command applied
        self.trade_seq = 0  # id of the last trade (trade ids are 1, 2, 3, ... per market)
        self.last_price: Optional[int] = None  # price of the last trade, ticks
        self._reference_price: Optional[int] = None  # price band centre, ticks
        self._halted = config.halted
        self._orders = book.orders
        self._user_orders = book.user_orders
        self._levels = book.levels
        self._heaps = book.heaps
        self._best = book.best
        self._use_config(config)

    def _use_config(self, config: MarketConfig) -> None:
        """Take ``config``'s rules: the cached ints, the band and the hot
        paths, whose closures hold the rules in cells (rebuilt, so the next
        ``apply`` uses them)."""
        self.config = config
        self._min_lots = config.min_lots
        self._max_lots = config.max_lots
        self._min_notional = config.min_notional_units
        self._band_num = config.band_num
        self._band_den100 = None if config.band_den is None else 100 * config.band_den
        self._max_open = config.max_open_orders
        self._default_stp = config.default_stp
        self._set_bounds()
        self.apply = self._hot_paths()

    @property
    def halted(self) -> bool:
        """True while the market rejects new orders and amends."""
        return self._halted

    @halted.setter
    def halted(self, value: bool) -> None:
        self._halted = value
        self._set_bounds()

    @property
    def reference_price(self) -> Optional[int]:
        """Centre of the price band in ticks: the last trade or SetReferencePrice."""
        return self._reference_price

    @reference_price.setter
    def reference_price(self, value: Optional[int]) -> None:
        self._reference_price = value
        self._set_bounds()

    def _set_bounds(self) -> None:
        """Recompute ``_lo`` / ``_hi`` after the halt state or the reference price changed.

        ``|price - ref| * 100 * den > ref * num`` (outside the band) is, for
        an int price, ``|price - ref| > ref * num // (100 * den)``, so the band
        is the closed int range ``ref -/+ ref * num // (100 * den)``.
        """
        ref = self._reference_price
        if self._halted:
            self._lo, self._hi = 1, 0
        elif self._band_num is None or ref is None:
            self._lo, self._hi = 1, MAX_PRICE_TICKS
        else:
            width = ref * self._band_num // self._band_den100
            self._lo = max(1, ref - width)
            self._hi = min(MAX_PRICE_TICKS, ref + width)

    def _hot_paths(self):
        """Build ``apply`` and the fast paths of place (limit) and cancel as closures.

        The closures read the book's containers and the market's rules from
        cells (one ``LOAD_DEREF``) instead of ``self`` attributes. The fast
        place path handles limit orders whose price, quantity, band and
        notional pass one combined guard; everything else (halted market,
        market orders, post-only, any rejection before the duplicate check)
        goes to ``_place_slow``, which runs every check in the documented
        order, so reason codes do not depend on the path taken.
        """
        engine = self
        book = self.book
        orders = book.orders
        user_orders = book.user_orders
        levels = book.levels
        heaps = book.heaps
        best = book.best
        known = book.known
        min_lots = self._min_lots
        max_lots = _HUGE if self._max_lots is None else self._max_lots
        min_notional = self._min_notional
        max_open = _HUGE if self._max_open is None else self._max_open
        default_stp = self._default_stp
        place_slow = self._place_slow
        place_other = self._place_other
        match = self._match
        after_match = self._after_match
        prune_slack = PRUNE_SLACK
        short_queue = SHORT_QUEUE
        dispatch = {
            CancelAll: self._cancel_all,
            AmendOrder: self._amend,
            Halt: self._halt,
            Resume: self._resume,
            SetReferencePrice: self._set_reference_price,
            Configure: self._configure,
        }

        def apply(command: tuple) -> list:
            """Apply one command; return its events as tuples ``(kind, seq, *fields)``."""
            # place_order and cancel_order (85% of a typical stream) run in this
            # frame: a Python call per command less.
            cls = command.__class__
            if cls is PlaceOrder:
                oid, uid, side, otype, price, qty, quote, tif, post_only, stp = command
                engine.seq = seq = engine.seq + 1
                if not (
                    type(price) is int
                    and type(qty) is int
                    and engine._lo <= price <= engine._hi
                    and min_lots <= qty <= max_lots
                    and price * qty >= min_notional
                    and quote is None
                    and post_only is False
                    and otype == "limit"
                ):
                    if otype == "limit":
                        return place_slow(seq, command)
                    return place_other(seq, command)  # market orders, unknown types
                if side == "buy":
                    s = 0
                    lk = price  # the asks cross at keys (prices) <= price
                    key = -price
                elif side == "sell":
                    s = 1
                    lk = -price  # the bids cross at keys (-prices) <= -price
                    key = price
                else:
                    return place_slow(seq, command)
                if tif is None or tif == "GTC":
                    rests = True
                elif tif == "IOC" or tif == "FOK":
                    rests = False
                else:
                    return place_slow(seq, command)
                if stp is None:
                    stp = default_stp
                elif stp not in STP_MODES:
                    return place_slow(seq, command)
                if oid in orders:
                    return [(COMMAND_REJECTED, seq, PLACE, oid, uid, DUPLICATE_ORDER_ID)]
                mine = user_orders.get(uid)
                if rests and mine is not None and len(mine) >= max_open:
                    return [(COMMAND_REJECTED, seq, PLACE, oid, uid, TOO_MANY_OPEN_ORDERS)]
                opp_best = best[1 - s]
                if opp_best is not None and opp_best <= lk:
                    if tif == "FOK" and not engine._fillable(1 - s, lk, uid, qty, stp):
                        return [(COMMAND_REJECTED, seq, PLACE, oid, uid, FOK_NOT_FILLABLE)]
                    ev = [(COMMAND_ACCEPTED, seq, PLACE, oid, uid)]
                    rem, killed = match(seq, ev, s, lk, oid, uid, qty, stp, side)
                    return after_match(ev, seq, oid, uid, s, side, price, qty, rem, killed, rests,
                                       stp, False)
                if not rests:
                    if tif == "FOK":
                        return [(COMMAND_REJECTED, seq, PLACE, oid, uid, FOK_NOT_FILLABLE)]
                    return [
                        (COMMAND_ACCEPTED, seq, PLACE, oid, uid),
                        (ORDER_DONE, seq, oid, uid, side, EXPIRED, DONE_TIME_IN_FORCE, 0, qty, None),
                    ]
                # Passive GTC: the common case, rested in one go (inlines OrderBook.rest).
                order = [oid, uid, s, price, qty, 0, qty, stp, False]
                side_levels = levels[s]
                level = side_levels.get(key)
                if level is None:
                    side_levels[key] = [qty, [order], COMPACT_MIN]
                    total = qty
                    heap = heaps[s]
                    heappush(heap, key)
                    b = best[s]
                    if b is None or key < b:
                        best[s] = key
                    if key not in known[s] or len(heap) > 2 * len(side_levels) + prune_slack:
                        book.index_level(s, key)
                else:
                    level[0] = total = level[0] + qty
                    queue = level[1]
                    queue.append(order)
                    if len(queue) > level[2]:
                        compact(level)
                orders[oid] = order
                if mine is None:
                    user_orders[uid] = {oid: order}
                else:
                    mine[oid] = order
                return [(COMMAND_ACCEPTED, seq, PLACE, oid, uid), (BOOK_LEVEL_CHANGED, seq, side, price, total)]

            if cls is CancelOrder:
                oid, uid = command
                engine.seq = seq = engine.seq + 1
                order = orders.get(oid)
                if order is None or (uid is not None and order[1] != uid):
                    return [(COMMAND_REJECTED, seq, CANCEL, oid, uid, UNKNOWN_ORDER)]
                # Inlines OrderBook.unlink.
                del orders[oid]
                owner = order[1]
                mine = user_orders[owner]
                del mine[oid]
                if not mine:
                    del user_orders[owner]
                rem = order[4]
                order[4] = 0
                price = order[3]
                if order[2] == 0:
                    side = "buy"
                    level = levels[0][-price]
                    level[0] = total = level[0] - rem
                    if not total:
                        book.level_removed(0, -price)
                    elif len(level[1]) <= short_queue:
                        level[1].remove(order)  # short queue: drop the record now (C-level scan)
                else:
                    side = "sell"
                    level = levels[1][price]
                    level[0] = total = level[0] - rem
                    if not total:
                        book.level_removed(1, price)
                    elif len(level[1]) <= short_queue:
                        level[1].remove(order)
                return [
                    (COMMAND_ACCEPTED, seq, CANCEL, oid, owner),
                    (ORDER_DONE, seq, oid, owner, side, CANCELLED, DONE_CANCEL, order[5], rem, None),
                    (BOOK_LEVEL_CHANGED, seq, side, price, total),
                ]

            handler = dispatch.get(cls)
            if handler is None:
                raise InvalidCommand(f"not a command: {command!r}")
            return handler(command)

        return apply

    # ------------------------------------------------------------ public API

    def best_bid(self) -> Optional[int]:
        """Best bid price in ticks (None if no bids). O(1)."""
        best = self._best[0]
        return None if best is None else -best

    def best_ask(self) -> Optional[int]:
        """Best ask price in ticks (None if no asks). O(1)."""
        return self._best[1]

    def depth(self, n: Optional[int] = None) -> dict:
        """``{"buy": [(price, quantity), ...], "sell": [...]}``, best first, ``n`` levels per side."""
        return self.book.depth(n)

    def order(self, order_id) -> Optional[dict]:
        """An open order as a dict (see ``book.order_view``), or None."""
        return self.book.order(order_id)

    def open_orders(self, user_id: Hashable) -> list:
        """A user's open orders as dicts, ascending order id."""
        return self.book.open_orders(user_id)

    def snapshot(self) -> dict:
        """A JSON-serialisable image of the whole engine state."""
        return {
            "version": SNAPSHOT_VERSION,
            "config": self.config.to_dict(),
            "seq": self.seq,
            "trade_seq": self.trade_seq,
            "last_price": self.last_price,
            "reference_price": self.reference_price,
            "halted": self.halted,
            "bids": self.book.snapshot_levels(0),
            "asks": self.book.snapshot_levels(1),
        }

    @classmethod
    def restore(cls, snapshot: dict) -> "MatchingEngine":
        """A new engine identical in behaviour to the one that took ``snapshot``."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported snapshot version {snapshot.get('version')!r}")
        engine = cls(MarketConfig.from_dict(snapshot["config"]))
        engine.seq = snapshot["seq"]
        engine.trade_seq = snapshot["trade_seq"]
        engine.last_price = snapshot["last_price"]
        engine.reference_price = snapshot["reference_price"]
        engine.halted = snapshot["halted"]
        engine.book.restore_levels(0, snapshot["bids"])
        engine.book.restore_levels(1, snapshot["asks"])
        return engine

    # ------------------------------------------------------------ place

    def _place_slow(self, seq: int, cmd: PlaceOrder) -> list:
        """Every place_order the fast path in ``_hot_paths`` does not take.

        Runs each check in the documented order (``seq`` is already taken).
        """
        oid, uid, side, otype, price, qty, quote, tif, post_only, stp = cmd
        if otype != "limit" or self._halted:
            return self._place_other(seq, cmd)
        s = _side_index(side)
        if s is None:
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.INVALID_SIDE)]
        if tif is None or tif == "GTC":
            rests = True
        elif tif == "IOC" or tif == "FOK":
            rests = False
        else:
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.INVALID_TIME_IN_FORCE)]
        if post_only is not False and (post_only is not True or not rests):
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.INVALID_POST_ONLY)]
        if stp is None:
            stp = self._default_stp
        elif stp not in STP_MODES:
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.INVALID_STP_MODE)]
        if type(price) is not int or not 0 < price <= MAX_PRICE_TICKS:
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.INVALID_PRICE)]
        if type(qty) is not int or qty <= 0 or quote is not None:
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.INVALID_QUANTITY)]
        orders = self._orders
        if oid in orders:
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.DUPLICATE_ORDER_ID)]
        # Market rules (same order as _check_rules).
        if qty < self._min_lots:
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.QTY_BELOW_MIN)]
        max_lots = self._max_lots
        if max_lots is not None and qty > max_lots:
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.QTY_ABOVE_MAX)]
        if price * qty < self._min_notional:
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.NOTIONAL_BELOW_MIN)]
        band_num = self._band_num
        if band_num is not None:
            ref = self.reference_price
            if ref is not None and abs(price - ref) * self._band_den100 > ref * band_num:
                return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.PRICE_OUT_OF_BAND)]
        user_orders = self._user_orders
        mine = user_orders.get(uid)
        if rests and mine is not None:
            limit = self._max_open
            if limit is not None and len(mine) >= limit:
                return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.TOO_MANY_OPEN_ORDERS)]

        # lk: limit key against the opposite side, which crosses keys <= lk.
        lk = price if s == 0 else -price
        opp_best = self._best[1 - s]
        if opp_best is not None and opp_best <= lk:
            if post_only:
                return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.POST_ONLY_WOULD_TAKE)]
            if tif == "FOK" and not self._fillable(1 - s, lk, uid, qty, stp):
                return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.FOK_NOT_FILLABLE)]
            ev = [(COMMAND_ACCEPTED, seq, PLACE, oid, uid)]
            rem, killed = self._match(seq, ev, s, lk, oid, uid, qty, stp, side)
            return self._after_match(ev, seq, oid, uid, s, side, price, qty, rem, killed, rests,
                                     stp, post_only)
        if rests:
            # Passive (post-only, and what the fast path in _hot_paths did not
            # take; it rests the common passive order itself, inlined).
            return self._after_match([(COMMAND_ACCEPTED, seq, PLACE, oid, uid)], seq, oid, uid, s,
                                     side, price, qty, qty, False, True, stp, post_only)
        if tif == "FOK":
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.FOK_NOT_FILLABLE)]
        return [
            (COMMAND_ACCEPTED, seq, PLACE, oid, uid),
            (ORDER_DONE, seq, oid, uid, side, "expired", "TIME_IN_FORCE", 0, qty, None),
        ]

    def _after_match(self, ev: list, seq: int, oid, uid, s: int, side: str, price: int, qty: int,
                     rem: int, killed: bool, rests: bool, stp: str, post_only: bool) -> list:
        """An order after it took what it could (``rem`` lots left of ``qty``):
        done when filled, expired by self-trade prevention or by its time in
        force, else the remainder rests at the back of its level. ``ev``
        (its events so far) is returned with the last of them appended. One
        home for place (both paths) and amend."""
        if not rem:
            ev.append((ORDER_DONE, seq, oid, uid, side, FILLED, None, qty, 0, None))
        elif killed:
            ev.append((ORDER_DONE, seq, oid, uid, side, EXPIRED, DONE_SELF_TRADE, qty - rem, rem,
                       None))
        elif not rests:
            ev.append((ORDER_DONE, seq, oid, uid, side, EXPIRED, DONE_TIME_IN_FORCE, qty - rem, rem,
                       None))
        else:
            total = self.book.rest([oid, uid, s, price, rem, qty - rem, qty, stp, post_only])
            ev.append((BOOK_LEVEL_CHANGED, seq, side, price, total))
        return ev

    def _place_other(self, seq: int, cmd: PlaceOrder) -> list:
        """Halted market, market orders and unknown order types."""
        oid, uid, side, otype, price, qty, quote, tif, post_only, stp = cmd
        if self.halted:
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.MARKET_HALTED)]
        s = _side_index(side)
        if s is None:
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.INVALID_SIDE)]
        if otype == MARKET:
            return self._place_market(seq, oid, uid, s, side, price, qty, quote, tif, post_only, stp)
        return [(COMMAND_REJECTED, seq, PLACE, oid, uid, Reason.INVALID_ORDER_TYPE)]

    def _check_rules(self, price: int, qty: int, band: bool) -> Optional[str]:
        """Quantity bounds, min notional and (if ``band``) the price band."""
        config = self.config
        if qty < config.min_lots:
            return Reason.QTY_BELOW_MIN
        max_lots = config.max_lots
        if max_lots is not None and qty > max_lots:
            return Reason.QTY_ABOVE_MAX
        if price * qty < config.min_notional_units:
            return Reason.NOTIONAL_BELOW_MIN
        if band and config.band_num is not None:
            ref = self.reference_price
            if ref is not None and abs(price - ref) * 100 * config.band_den > ref * config.band_num:
                return Reason.PRICE_OUT_OF_BAND
        return None

    def _place_market(self, seq, oid, uid, s, side, price, qty, quote, tif, post_only, stp) -> list:
        def reject(reason: str) -> list:
            return [(COMMAND_REJECTED, seq, PLACE, oid, uid, reason)]

        if tif is None:
            tif = IOC
        if tif != IOC and (tif != FOK or quote is not None):
            return reject(Reason.INVALID_TIME_IN_FORCE)
        if post_only is not False:
            return reject(Reason.INVALID_POST_ONLY)
        if stp is None:
            stp = self.config.default_stp
        elif stp not in STP_MODES:
            return reject(Reason.INVALID_STP_MODE)
        if price is not None:
            return reject(Reason.INVALID_PRICE)
        if quote is not None:
            if s != 0 or qty is not None or type(quote) is not int or quote <= 0:
                return reject(Reason.INVALID_QUANTITY)
        elif type(qty) is not int or qty <= 0:
            return reject(Reason.INVALID_QUANTITY)
        book = self.book
        if oid in book.orders:
            return reject(Reason.DUPLICATE_ORDER_ID)
        config = self.config
        if quote is None:
            if qty < config.min_lots:
                return reject(Reason.QTY_BELOW_MIN)
            if config.max_lots is not None and qty > config.max_lots:
                return reject(Reason.QTY_ABOVE_MAX)
        elif quote < config.min_notional_units:
            return reject(Reason.NOTIONAL_BELOW_MIN)
        o = 1 - s
        if book.best[o] is None:
            return reject(Reason.NO_LIQUIDITY)
        lk = _NO_LIMIT
        if tif == FOK and not self._fillable(o, lk, uid, qty, stp):
            return reject(Reason.FOK_NOT_FILLABLE)
        ev = [(COMMAND_ACCEPTED, seq, PLACE, oid, uid)]
        if quote is None:
            rem, killed = self._match(seq, ev, s, lk, oid, uid, qty, stp, side)
            if not rem:
                ev.append((ORDER_DONE, seq, oid, uid, side, FILLED, None, qty, 0, None))
            else:
                why = DONE_SELF_TRADE if killed else DONE_TIME_IN_FORCE
                ev.append((ORDER_DONE, seq, oid, uid, side, EXPIRED, why, qty - rem, rem, None))
            return ev
        left, filled, killed, spent_out = self._match_quote(seq, ev, oid, uid, quote, stp)
        if killed:
            ev.append((ORDER_DONE, seq, oid, uid, side, EXPIRED, DONE_SELF_TRADE, filled, 0, left))
        elif spent_out and filled:
            ev.append((ORDER_DONE, seq, oid, uid, side, FILLED, None, filled, 0, left))
        else:
            ev.append((ORDER_DONE, seq, oid, uid, side, EXPIRED, DONE_TIME_IN_FORCE, filled, 0, left))
        return ev

    # ------------------------------------------------------------ matching

    def _match(self, seq, ev, s, lk, oid, uid, rem, stp, taker_side):
        """Take liquidity from the side opposite ``s`` at keys <= ``lk``.

        Appends trade / maker done / level events to ``ev``; returns
        ``(remaining, killed)`` where ``killed`` means self-trade prevention
        expired the taker. Records of fully filled makers are dropped without
        being updated: nothing references them any more.
        """
        o = 1 - s
        levels = self._levels[o]
        heap = self._heaps[o]
        orders = self._orders
        user_orders = self._user_orders
        append = ev.append
        maker_side = "buy" if o == 0 else "sell"
        bids = o == 0
        stp_on = stp != "NONE"
        tid = self.trade_seq
        killed = False
        last = None
        key = self._best[o]
        while key is not None and key <= lk:
            level = levels[key]
            queue = level[1]
            total = before = level[0]
            price = -key if bids else key
            i = 0  # queue[:i] is consumed; dropped once per level below
            while True:  # total > 0, so queue[i:] holds a live record
                m = queue[i]
                mrem = m[4]
                if not mrem:
                    i += 1
                    continue
                if stp_on and m[1] == uid:
                    if stp != "EXPIRE_TAKER":  # expire the maker
                        i += 1
                        moid = m[0]
                        del orders[moid]
                        mine = user_orders[uid]
                        del mine[moid]
                        if not mine:
                            del user_orders[uid]
                        m[4] = 0
                        total -= mrem
                        append((ORDER_DONE, seq, moid, uid, maker_side, "expired", "SELF_TRADE", m[5], mrem, None))
                    if stp != "EXPIRE_MAKER":  # expire the taker
                        killed = True
                        break
                    if not total:
                        break
                    continue
                tid += 1
                last = price
                if mrem <= rem:
                    i += 1
                    moid = m[0]
                    muid = m[1]
                    del orders[moid]
                    mine = user_orders[muid]
                    del mine[moid]
                    if not mine:
                        del user_orders[muid]
                    append((TRADE_EXECUTED, seq, tid, price, mrem, taker_side, moid, muid, oid, uid))
                    append((ORDER_DONE, seq, moid, muid, maker_side, "filled", None, m[6], 0, None))
                    rem -= mrem
                    total -= mrem
                    if not rem or not total:
                        break
                else:
                    m[4] = mrem - rem
                    m[5] += rem
                    append((TRADE_EXECUTED, seq, tid, price, rem, taker_side, m[0], m[1], oid, uid))
                    total -= rem
                    rem = 0
                    break
            if total != before:
                level[0] = total
                append((BOOK_LEVEL_CHANGED, seq, maker_side, price, total))
            if total:
                if i:
                    del queue[:i]
                break  # the level survives: the taker is done or was expired
            del levels[key]
            while heap and heap[0] not in levels:
                heappop(heap)
            key = heap[0] if heap else None
            if killed or not rem:
                break
        self._best[o] = key
        if last is not None:
            self.trade_seq = tid
            self.last_price = self._reference_price = last
            self._set_bounds()
        return rem, killed

    def _match_quote(self, seq, ev, oid, uid, budget, stp):
        """A market buy spending ``budget`` notional units against the asks.

        Each fill takes as many whole lots as the maker has and the budget
        affords at the maker's price (``budget // price``). Returns
        ``(unspent, filled_lots, killed, budget_bound)``; ``budget_bound`` is
        True when matching stopped because the unspent amount cannot buy one
        lot at the next price.
        """
        book = self.book
        levels = book.levels[1]
        heap = book.heaps[1]
        orders = book.orders
        user_orders = book.user_orders
        append = ev.append
        stp_on = stp != STP_NONE
        expire_maker = stp != EXPIRE_TAKER
        expire_taker = stp != EXPIRE_MAKER
        tid = self.trade_seq
        killed = False
        budget_bound = False
        last = None
        filled_total = 0
        key = book.best[1]
        while key is not None:
            level = levels[key]
            queue = level[1]
            total = before = level[0]
            price = key
            i = 0
            while True:
                m = queue[i]
                mrem = m[4]
                if not mrem:
                    i += 1
                    continue
                if stp_on and m[1] == uid:
                    if expire_maker:
                        i += 1
                        del orders[m[0]]
                        mine = user_orders[uid]
                        del mine[m[0]]
                        if not mine:
                            del user_orders[uid]
                        m[4] = 0
                        total -= mrem
                        append((ORDER_DONE, seq, m[0], uid, "sell", EXPIRED, DONE_SELF_TRADE, m[5], mrem, None))
                    if expire_taker:
                        killed = True
                        break
                    if not total:
                        break
                    continue
                afford = budget // price
                if not afford:
                    budget_bound = True
                    break
                tq = mrem if mrem <= afford else afford
                tid += 1
                last = price
                budget -= tq * price
                filled_total += tq
                total -= tq
                m[5] += tq
                if tq == mrem:
                    i += 1
                    m[4] = 0
                    del orders[m[0]]
                    mine = user_orders[m[1]]
                    del mine[m[0]]
                    if not mine:
                        del user_orders[m[1]]
                    append((TRADE_EXECUTED, seq, tid, price, tq, "buy", m[0], m[1], oid, uid))
                    append((ORDER_DONE, seq, m[0], m[1], "sell", FILLED, None, m[5], 0, None))
                    if not total:
                        break
                else:
                    m[4] = mrem - tq
                    append((TRADE_EXECUTED, seq, tid, price, tq, "buy", m[0], m[1], oid, uid))
            if total != before:
                level[0] = total
                append((BOOK_LEVEL_CHANGED, seq, "sell", price, total))
            if total:
                if i:
                    del queue[:i]
                break
            del levels[key]
            while heap and heap[0] not in levels:
                heappop(heap)
            key = heap[0] if heap else None
            if killed:
                break
        if not killed and key is None and not budget:
            budget_bound = True
        book.best[1] = key
        if last is not None:
            self.trade_seq = tid
            self.last_price = self._reference_price = last
            self._set_bounds()
        return budget, filled_total, killed, budget_bound

    def _fillable(self, o: int, lk: int, uid, need: int, stp: str) -> bool:
        """Would an IOC taker of ``need`` lots fill completely? (FOK pre-check, no side effects.)"""
        book = self.book
        levels = book.levels[o]
        stp_on = stp != STP_NONE
        expire_taker = stp in (EXPIRE_TAKER, "EXPIRE_BOTH")
        for key in book.index[o].irange(maximum=lk):
            level = levels.get(key)
            if level is None:
                continue
            for m in level[1]:
                mrem = m[4]
                if not mrem:
                    continue
                if stp_on and m[1] == uid:
                    if expire_taker:
                        return False
                    continue
                need -= mrem
                if need <= 0:
                    return True
        return False

    # ------------------------------------------------------------ cancel

    def _cancel_all(self, cmd: CancelAll) -> list:
        (uid,) = cmd
        self.seq = seq = self.seq + 1
        book = self.book
        ev = [(COMMAND_ACCEPTED, seq, CANCEL_ALL, None, uid)]
        mine = book.user_orders.get(uid)
        if mine:
            for oid in sorted(mine):
                order = mine[oid]
                rem = order[4]
                total = book.unlink(order)
                side = SIDES[order[2]]
                ev.append((ORDER_DONE, seq, oid, uid, side, CANCELLED, DONE_CANCEL_ALL, order[5], rem, None))
                ev.append((BOOK_LEVEL_CHANGED, seq, side, order[3], total))
        return ev

    # ------------------------------------------------------------ amend

    def _amend(self, cmd: AmendOrder) -> list:
        oid, uid, new_price, new_qty = cmd
        self.seq = seq = self.seq + 1

        def reject(reason: str) -> list:
            return [(COMMAND_REJECTED, seq, AMEND, oid, uid, reason)]

        if self.halted:
            return reject(Reason.MARKET_HALTED)
        book = self.book
        order = book.orders.get(oid)
        if order is None or (uid is not None and order[1] != uid):
            return reject(Reason.UNKNOWN_ORDER)
        if new_price is not None and (type(new_price) is not int or not 0 < new_price <= MAX_PRICE_TICKS):
            return reject(Reason.INVALID_PRICE)
        if new_qty is not None and (type(new_qty) is not int or new_qty <= 0):
            return reject(Reason.INVALID_QUANTITY)
        old_price, old_qty, filled = order[3], order[6], order[5]
        price = old_price if new_price is None else new_price
        qty = old_qty if new_qty is None else new_qty
        if qty <= filled:
            return reject(Reason.QTY_NOT_ABOVE_FILLED)
        reason = self._check_rules(price, qty, price != old_price)
        if reason is not None:
            return reject(reason)
        s, owner, stp, post_only = order[2], order[1], order[7], order[8]
        side = SIDES[s]
        rem = qty - filled
        ev = [(COMMAND_ACCEPTED, seq, AMEND, oid, owner)]
        if price == old_price and qty <= old_qty:
            ev.append((ORDER_AMENDED, seq, oid, owner, side, price, qty, rem, True))
            if qty != old_qty:
                level = book.levels[s][-price if s == 0 else price]
                level[0] -= order[4] - rem
                order[4] = rem
                order[6] = qty
                ev.append((BOOK_LEVEL_CHANGED, seq, side, price, level[0]))
            return ev

        lk = price if s == 0 else -price
        opp_best = book.best[1 - s]
        crosses = opp_best is not None and opp_best <= lk
        if crosses and post_only:
            return reject(Reason.POST_ONLY_WOULD_TAKE)
        # Lose priority: the old record dies, a new one takes its place.
        total = book.unlink(order)
        ev.append((ORDER_AMENDED, seq, oid, owner, side, price, qty, rem, False))
        ev.append((BOOK_LEVEL_CHANGED, seq, side, old_price, total))
        killed = False
        if crosses:
            # The amended order is not in the book while it takes liquidity.
            rem, killed = self._match(seq, ev, s, lk, oid, owner, rem, stp, side)
        # A resting order's remainder rests again (qty > filled: rem > 0 here).
        return self._after_match(ev, seq, oid, owner, s, side, price, qty, rem, killed, True, stp,
                                 post_only)

    # ------------------------------------------------------------ market state

    def _halt(self, cmd: Halt) -> list:
        self.seq = seq = self.seq + 1
        self.halted = True
        return [(COMMAND_ACCEPTED, seq, "halt", None, None), (MARKET_STATUS_CHANGED, seq, True)]

    def _resume(self, cmd: Resume) -> list:
        self.seq = seq = self.seq + 1
        self.halted = False
        return [(COMMAND_ACCEPTED, seq, "resume", None, None), (MARKET_STATUS_CHANGED, seq, False)]

    def _configure(self, cmd: Configure) -> list:
        self.seq = seq = self.seq + 1
        try:
            config = self.config.with_limits(cmd)
        except ConfigError:
            return [(COMMAND_REJECTED, seq, "configure", None, None, Reason.INVALID_LIMITS)]
        self._use_config(config)
        return [(COMMAND_ACCEPTED, seq, "configure", None, None)]

    def _set_reference_price(self, cmd: SetReferencePrice) -> list:
        (price,) = cmd
        self.seq = seq = self.seq + 1
        if type(price) is not int or not 0 < price <= MAX_PRICE_TICKS:
            return [(COMMAND_REJECTED, seq, "set_reference_price", None, None, Reason.INVALID_PRICE)]
        self.reference_price = price
        return [(COMMAND_ACCEPTED, seq, "set_reference_price", None, None), (REFERENCE_PRICE_SET, seq, price)]


# A limit key beyond every valid price: market orders cross every level.
_NO_LIMIT = MAX_PRICE_TICKS + 1
