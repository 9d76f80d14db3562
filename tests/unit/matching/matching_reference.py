"""A small, obviously correct reference model of the matching engine.

It keeps the resting orders in one plain list and finds the best maker by a
full scan each time: slow, but each rule of docs/matching-engine.md reads as
one short piece of code. FOK is decided by running the match on a deep copy.

It produces the engine's events except ``book_level_changed`` (the property
tests check those separately against the book), and its book in the
engine's snapshot format.
"""

import copy
from dataclasses import dataclass

from services.matching.models import (
    COMMAND_ACCEPTED,
    COMMAND_REJECTED,
    MARKET_STATUS_CHANGED,
    MAX_PRICE_TICKS,
    ORDER_AMENDED,
    ORDER_DONE,
    REFERENCE_PRICE_SET,
    STP_MODES,
    TRADE_EXECUTED,
    AmendOrder,
    CancelAll,
    CancelOrder,
    ConfigError,
    Configure,
    Halt,
    PlaceOrder,
    Resume,
    SetReferencePrice,
)


@dataclass
class Order:
    oid: int
    uid: object
    side: str
    price: int
    qty: int
    rem: int
    filled: int
    stp: str
    post_only: bool
    stamp: int


def is_int(x):
    return type(x) is int


class ReferenceEngine:
    def __init__(self, config):
        self.config = config
        self.resting = []  # every open order, in no particular order
        self.seq = 0
        self.trade_seq = 0
        self.last_price = None
        self.reference_price = None
        self.halted = config.halted
        self.stamp = 0

    # -- helpers ---------------------------------------------------------

    def find(self, oid):
        for o in self.resting:
            if o.oid == oid:
                return o
        return None

    def rest(self, o):
        self.stamp += 1
        o.stamp = self.stamp
        self.resting.append(o)

    def crosses(self, taker_side, limit, maker):
        if limit is None:
            return True
        return maker.price <= limit if taker_side == "buy" else maker.price >= limit

    def best_maker(self, taker_side, limit):
        makers = [o for o in self.resting if o.side != taker_side and self.crosses(taker_side, limit, o)]
        if not makers:
            return None
        if taker_side == "buy":
            return min(makers, key=lambda o: (o.price, o.stamp))
        return min(makers, key=lambda o: (-o.price, o.stamp))

    def rules(self, price, qty, band=True):
        c = self.config
        if qty < c.min_lots:
            return "QTY_BELOW_MIN"
        if c.max_lots is not None and qty > c.max_lots:
            return "QTY_ABOVE_MAX"
        if price * qty < c.min_notional_units:
            return "NOTIONAL_BELOW_MIN"
        if band and c.band_num is not None and self.reference_price is not None:
            ref = self.reference_price
            # |price - ref| / ref > band% / 100
            if abs(price - ref) * 100 * c.band_den > ref * c.band_num:
                return "PRICE_OUT_OF_BAND"
        return None

    def match(self, ev, taker_side, limit, oid, uid, rem, stp, budget=None):
        """Returns (rem, killed, budget, budget_bound)."""
        killed = False
        budget_bound = False
        while rem is None or rem > 0:
            m = self.best_maker(taker_side, limit)
            if m is None:
                if budget is not None and budget == 0:
                    budget_bound = True
                break
            if stp != "NONE" and m.uid == uid:
                if stp in ("EXPIRE_MAKER", "EXPIRE_BOTH"):
                    self.resting.remove(m)
                    ev.append((ORDER_DONE, self.seq, m.oid, m.uid, m.side, "expired", "SELF_TRADE", m.filled, m.rem, None))
                if stp in ("EXPIRE_TAKER", "EXPIRE_BOTH"):
                    killed = True
                    break
                continue
            if budget is None:
                q = min(rem, m.rem)
            else:
                afford = budget // m.price
                if afford == 0:
                    budget_bound = True
                    break
                q = min(afford, m.rem)
                budget -= q * m.price
            self.trade_seq += 1
            self.last_price = self.reference_price = m.price
            ev.append((TRADE_EXECUTED, self.seq, self.trade_seq, m.price, q, taker_side, m.oid, m.uid, oid, uid))
            m.rem -= q
            m.filled += q
            if rem is not None:
                rem -= q
            if m.rem == 0:
                self.resting.remove(m)
                ev.append((ORDER_DONE, self.seq, m.oid, m.uid, m.side, "filled", None, m.qty, 0, None))
        return rem, killed, budget, budget_bound

    def fillable(self, taker_side, limit, oid, uid, qty, stp):
        sim = copy.deepcopy(self)
        rem, killed, _, _ = sim.match([], taker_side, limit, oid, uid, qty, stp)
        return rem == 0

    # -- commands --------------------------------------------------------

    def apply(self, cmd):
        self.seq += 1
        if type(cmd) is PlaceOrder:
            return self.place(cmd)
        if type(cmd) is CancelOrder:
            o = self.find(cmd.order_id)
            if o is None or (cmd.user_id is not None and cmd.user_id != o.uid):
                return [(COMMAND_REJECTED, self.seq, "cancel_order", cmd.order_id, cmd.user_id, "UNKNOWN_ORDER")]
            self.resting.remove(o)
            return [
                (COMMAND_ACCEPTED, self.seq, "cancel_order", o.oid, o.uid),
                (ORDER_DONE, self.seq, o.oid, o.uid, o.side, "cancelled", "CANCEL", o.filled, o.rem, None),
            ]
        if type(cmd) is CancelAll:
            ev = [(COMMAND_ACCEPTED, self.seq, "cancel_all", None, cmd.user_id)]
            for o in sorted((o for o in self.resting if o.uid == cmd.user_id), key=lambda o: o.oid):
                self.resting.remove(o)
                ev.append((ORDER_DONE, self.seq, o.oid, o.uid, o.side, "cancelled", "CANCEL_ALL", o.filled, o.rem, None))
            return ev
        if type(cmd) is AmendOrder:
            return self.amend(cmd)
        if type(cmd) is Halt:
            self.halted = True
            return [(COMMAND_ACCEPTED, self.seq, "halt", None, None), (MARKET_STATUS_CHANGED, self.seq, True)]
        if type(cmd) is Resume:
            self.halted = False
            return [(COMMAND_ACCEPTED, self.seq, "resume", None, None), (MARKET_STATUS_CHANGED, self.seq, False)]
        if type(cmd) is Configure:
            try:
                self.config = self.config.with_limits(cmd)
            except ConfigError:
                return [(COMMAND_REJECTED, self.seq, "configure", None, None, "INVALID_LIMITS")]
            return [(COMMAND_ACCEPTED, self.seq, "configure", None, None)]
        if type(cmd) is SetReferencePrice:
            if not is_int(cmd.price) or not 0 < cmd.price <= MAX_PRICE_TICKS:
                return [(COMMAND_REJECTED, self.seq, "set_reference_price", None, None, "INVALID_PRICE")]
            self.reference_price = cmd.price
            return [(COMMAND_ACCEPTED, self.seq, "set_reference_price", None, None), (REFERENCE_PRICE_SET, self.seq, cmd.price)]
        raise TypeError(cmd)

    def place(self, cmd):
        oid, uid, side = cmd.order_id, cmd.user_id, cmd.side

        def reject(reason):
            return [(COMMAND_REJECTED, self.seq, "place_order", oid, uid, reason)]

        if self.halted:
            return reject("MARKET_HALTED")
        if side not in ("buy", "sell"):
            return reject("INVALID_SIDE")
        if cmd.order_type not in ("limit", "market"):
            return reject("INVALID_ORDER_TYPE")
        market = cmd.order_type == "market"
        tif = cmd.time_in_force or ("IOC" if market else "GTC")
        if market:
            if tif not in ("IOC", "FOK") or (tif == "FOK" and cmd.quote_amount is not None):
                return reject("INVALID_TIME_IN_FORCE")
            if cmd.post_only is not False:
                return reject("INVALID_POST_ONLY")
        else:
            if tif not in ("GTC", "IOC", "FOK"):
                return reject("INVALID_TIME_IN_FORCE")
            if cmd.post_only not in (False, True) or (cmd.post_only is True and tif != "GTC"):
                return reject("INVALID_POST_ONLY")
        stp = cmd.stp if cmd.stp is not None else self.config.default_stp
        if stp not in STP_MODES:
            return reject("INVALID_STP_MODE")
        if market:
            if cmd.price is not None:
                return reject("INVALID_PRICE")
            if cmd.quote_amount is not None:
                if side != "buy" or cmd.quantity is not None or not is_int(cmd.quote_amount) or cmd.quote_amount <= 0:
                    return reject("INVALID_QUANTITY")
            elif not is_int(cmd.quantity) or cmd.quantity <= 0:
                return reject("INVALID_QUANTITY")
        else:
            if not is_int(cmd.price) or not 0 < cmd.price <= MAX_PRICE_TICKS:
                return reject("INVALID_PRICE")
            if not is_int(cmd.quantity) or cmd.quantity <= 0 or cmd.quote_amount is not None:
                return reject("INVALID_QUANTITY")
        if self.find(oid) is not None:
            return reject("DUPLICATE_ORDER_ID")

        if market:
            return self.place_market(cmd, tif, stp, reject)

        price, qty = cmd.price, cmd.quantity
        reason = self.rules(price, qty)
        if reason:
            return reject(reason)
        c = self.config
        if tif == "GTC" and c.max_open_orders is not None:
            if sum(1 for o in self.resting if o.uid == uid) >= c.max_open_orders:
                return reject("TOO_MANY_OPEN_ORDERS")
        would_take = self.best_maker(side, price) is not None
        if cmd.post_only and would_take:
            return reject("POST_ONLY_WOULD_TAKE")
        if tif == "FOK" and not self.fillable(side, price, oid, uid, qty, stp):
            return reject("FOK_NOT_FILLABLE")
        ev = [(COMMAND_ACCEPTED, self.seq, "place_order", oid, uid)]
        rem, killed, _, _ = self.match(ev, side, price, oid, uid, qty, stp)
        if rem == 0:
            ev.append((ORDER_DONE, self.seq, oid, uid, side, "filled", None, qty, 0, None))
        elif killed:
            ev.append((ORDER_DONE, self.seq, oid, uid, side, "expired", "SELF_TRADE", qty - rem, rem, None))
        elif tif != "GTC":
            ev.append((ORDER_DONE, self.seq, oid, uid, side, "expired", "TIME_IN_FORCE", qty - rem, rem, None))
        else:
            self.rest(Order(oid, uid, side, price, qty, rem, qty - rem, stp, cmd.post_only, 0))
        return ev

    def place_market(self, cmd, tif, stp, reject):
        oid, uid, side = cmd.order_id, cmd.user_id, cmd.side
        c = self.config
        if cmd.quote_amount is None:
            qty = cmd.quantity
            if qty < c.min_lots:
                return reject("QTY_BELOW_MIN")
            if c.max_lots is not None and qty > c.max_lots:
                return reject("QTY_ABOVE_MAX")
        elif cmd.quote_amount < c.min_notional_units:
            return reject("NOTIONAL_BELOW_MIN")
        if not any(o.side != side for o in self.resting):
            return reject("NO_LIQUIDITY")
        if tif == "FOK" and not self.fillable(side, None, oid, uid, cmd.quantity, stp):
            return reject("FOK_NOT_FILLABLE")
        ev = [(COMMAND_ACCEPTED, self.seq, "place_order", oid, uid)]
        if cmd.quote_amount is None:
            qty = cmd.quantity
            rem, killed, _, _ = self.match(ev, side, None, oid, uid, qty, stp)
            if rem == 0:
                ev.append((ORDER_DONE, self.seq, oid, uid, side, "filled", None, qty, 0, None))
            else:
                why = "SELF_TRADE" if killed else "TIME_IN_FORCE"
                ev.append((ORDER_DONE, self.seq, oid, uid, side, "expired", why, qty - rem, rem, None))
            return ev
        n_before = len(ev)
        _, killed, left, budget_bound = self.match(ev, side, None, oid, uid, None, stp, budget=cmd.quote_amount)
        filled = sum(e[4] for e in ev[n_before:] if e[0] == TRADE_EXECUTED)
        if killed:
            ev.append((ORDER_DONE, self.seq, oid, uid, side, "expired", "SELF_TRADE", filled, 0, left))
        elif budget_bound and filled:
            ev.append((ORDER_DONE, self.seq, oid, uid, side, "filled", None, filled, 0, left))
        else:
            ev.append((ORDER_DONE, self.seq, oid, uid, side, "expired", "TIME_IN_FORCE", filled, 0, left))
        return ev

    def amend(self, cmd):
        oid, uid = cmd.order_id, cmd.user_id

        def reject(reason):
            return [(COMMAND_REJECTED, self.seq, "amend_order", oid, uid, reason)]

        if self.halted:
            return reject("MARKET_HALTED")
        o = self.find(oid)
        if o is None or (uid is not None and uid != o.uid):
            return reject("UNKNOWN_ORDER")
        if cmd.price is not None and (not is_int(cmd.price) or not 0 < cmd.price <= MAX_PRICE_TICKS):
            return reject("INVALID_PRICE")
        if cmd.quantity is not None and (not is_int(cmd.quantity) or cmd.quantity <= 0):
            return reject("INVALID_QUANTITY")
        price = o.price if cmd.price is None else cmd.price
        qty = o.qty if cmd.quantity is None else cmd.quantity
        if qty <= o.filled:
            return reject("QTY_NOT_ABOVE_FILLED")
        reason = self.rules(price, qty, band=price != o.price)
        if reason:
            return reject(reason)
        rem = qty - o.filled
        ev = [(COMMAND_ACCEPTED, self.seq, "amend_order", oid, o.uid)]
        if price == o.price and qty <= o.qty:
            o.qty, o.rem = qty, rem
            ev.append((ORDER_AMENDED, self.seq, oid, o.uid, o.side, price, qty, rem, True))
            return ev
        if o.post_only and self.best_maker(o.side, price) is not None:
            return reject("POST_ONLY_WOULD_TAKE")
        self.resting.remove(o)
        ev.append((ORDER_AMENDED, self.seq, oid, o.uid, o.side, price, qty, rem, False))
        rem, killed, _, _ = self.match(ev, o.side, price, oid, o.uid, rem, o.stp)
        if rem == 0:
            ev.append((ORDER_DONE, self.seq, oid, o.uid, o.side, "filled", None, qty, 0, None))
        elif killed:
            ev.append((ORDER_DONE, self.seq, oid, o.uid, o.side, "expired", "SELF_TRADE", qty - rem, rem, None))
        else:
            self.rest(Order(oid, o.uid, o.side, price, qty, rem, qty - rem, o.stp, o.post_only, 0))
        return ev

    # -- views -------------------------------------------------------------

    def snapshot_side(self, side):
        """Same shape as ``OrderBook.snapshot_levels``."""
        orders = sorted(
            (o for o in self.resting if o.side == side),
            key=lambda o: ((-o.price if side == "buy" else o.price), o.stamp),
        )
        out = []
        for o in orders:
            if not out or out[-1][0] != o.price:
                out.append([o.price, []])
            out[-1][1].append([o.oid, o.uid, o.qty, o.rem, o.filled, o.stp, o.post_only])
        return out
