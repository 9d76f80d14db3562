"""Unit tests of the engine: order types, time in force, self-trade prevention,
market rules and each rejection reason, amend, cancel, halt, queries."""

import json

import pytest

from services.matching.engine import MatchingEngine
from services.matching.models import (
    BOOK_LEVEL_CHANGED,
    COMMAND_ACCEPTED,
    COMMAND_REJECTED,
    ORDER_AMENDED,
    ORDER_DONE,
    TRADE_EXECUTED,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Configure,
    Halt,
    InvalidCommand,
    MarketConfig,
    PlaceOrder,
    Resume,
    SetReferencePrice,
    command_from_dict,
    command_to_dict,
)


def market(**rules):
    return MatchingEngine(MarketConfig("T-U", "T", "U", tick_size="1", lot_size="1", **rules))


def limit(oid, user, side, price, qty, **kw):
    return PlaceOrder(oid, user, side, "limit", price, qty, **kw)


def mkt(oid, user, side, qty=None, quote=None, **kw):
    return PlaceOrder(oid, user, side, "market", None, qty, quote, **kw)


def of(kind, events):
    return [e for e in events if e[0] == kind]


def trades(events):
    """(price, qty, maker id, taker id) of each trade."""
    return [(e[3], e[4], e[6], e[8]) for e in of(TRADE_EXECUTED, events)]


def done(events, oid):
    """(status, reason, filled, remaining) of one order's done event, or None."""
    for e in of(ORDER_DONE, events):
        if e[2] == oid:
            return e[5], e[6], e[7], e[8]
    return None


def rejected(events):
    assert len(events) == 1 and events[0][0] == COMMAND_REJECTED, events
    return events[0][5]


def book(engine):
    return engine.depth()


# ---------------------------------------------------------------- limit orders


def test_resting_limit_order_is_acknowledged_and_shows_in_the_book():
    e = market()
    events = e.apply(limit(1, "a", "buy", 100, 5))
    assert events == [
        (COMMAND_ACCEPTED, 1, "place_order", 1, "a"),
        (BOOK_LEVEL_CHANGED, 1, "buy", 100, 5),
    ]
    assert e.best_bid() == 100 and e.best_ask() is None
    assert e.order(1) == {
        "order_id": 1, "user_id": "a", "side": "buy", "price": 100, "quantity": 5,
        "remaining_quantity": 5, "filled_quantity": 0, "stp": "NONE", "post_only": False,
    }


def test_crossing_limit_trades_at_maker_prices_best_first_and_rests_the_rest():
    e = market()
    e.apply(limit(1, "a", "sell", 101, 2))
    e.apply(limit(2, "a", "sell", 100, 2))
    e.apply(limit(3, "a", "sell", 103, 2))
    events = e.apply(limit(4, "b", "buy", 102, 5))
    assert trades(events) == [(100, 2, 2, 4), (101, 2, 1, 4)]
    assert done(events, 2) == ("filled", None, 2, 0)
    assert done(events, 4) is None  # still open
    assert of(BOOK_LEVEL_CHANGED, events) == [
        (BOOK_LEVEL_CHANGED, 4, "sell", 100, 0),
        (BOOK_LEVEL_CHANGED, 4, "sell", 101, 0),
        (BOOK_LEVEL_CHANGED, 4, "buy", 102, 1),
    ]
    assert book(e) == {"buy": [(102, 1)], "sell": [(103, 2)]}
    assert e.last_price == 101


def test_time_priority_within_a_level():
    e = market()
    for oid in (1, 2, 3):
        e.apply(limit(oid, f"m{oid}", "sell", 100, 2))
    events = e.apply(limit(9, "t", "buy", 100, 5))
    assert [t[2] for t in trades(events)] == [1, 2, 3]
    assert trades(events)[-1][1] == 1
    assert e.order(3)["remaining_quantity"] == 1


def test_trade_event_schema_and_deterministic_trade_ids():
    e = market()
    e.apply(limit(1, "maker", "sell", 100, 3))
    events = e.apply(limit(2, "taker", "buy", 100, 1))
    assert of(TRADE_EXECUTED, events) == [(TRADE_EXECUTED, 2, 1, 100, 1, "buy", 1, "maker", 2, "taker")]
    events = e.apply(limit(3, "taker", "buy", 100, 1))
    assert of(TRADE_EXECUTED, events)[0][2] == 2  # trade ids count per market


# ---------------------------------------------------------------- time in force


def test_ioc_fills_what_it_can_and_expires_the_rest():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 2))
    events = e.apply(limit(2, "b", "buy", 100, 5, time_in_force="IOC"))
    assert trades(events) == [(100, 2, 1, 2)]
    assert done(events, 2) == ("expired", "TIME_IN_FORCE", 2, 3)
    assert book(e) == {"buy": [], "sell": []}


def test_ioc_that_does_not_cross_expires_unfilled():
    e = market()
    events = e.apply(limit(1, "b", "buy", 100, 5, time_in_force="IOC"))
    assert events[0][0] == COMMAND_ACCEPTED
    assert done(events, 1) == ("expired", "TIME_IN_FORCE", 0, 5)


def test_fok_fills_completely_or_is_rejected_without_side_effects():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 2))
    e.apply(limit(2, "a", "sell", 101, 2))
    assert rejected(e.apply(limit(3, "b", "buy", 101, 5, time_in_force="FOK"))) == "FOK_NOT_FILLABLE"
    assert rejected(e.apply(limit(4, "b", "buy", 100, 3, time_in_force="FOK"))) == "FOK_NOT_FILLABLE"
    assert rejected(e.apply(limit(5, "b", "buy", 99, 1, time_in_force="FOK"))) == "FOK_NOT_FILLABLE"
    assert book(e)["sell"] == [(100, 2), (101, 2)]
    events = e.apply(limit(6, "b", "buy", 101, 4, time_in_force="FOK"))
    assert done(events, 6) == ("filled", None, 4, 0)


def test_fok_does_not_count_own_orders_it_would_not_trade_with():
    e = market(default_stp="EXPIRE_TAKER")
    e.apply(limit(1, "me", "sell", 100, 5))
    e.apply(limit(2, "other", "sell", 101, 5))
    assert rejected(e.apply(limit(3, "me", "buy", 101, 3, time_in_force="FOK"))) == "FOK_NOT_FILLABLE"
    e2 = market(default_stp="EXPIRE_MAKER")
    e2.apply(limit(1, "me", "sell", 100, 5))
    e2.apply(limit(2, "other", "sell", 101, 5))
    events = e2.apply(limit(3, "me", "buy", 101, 3, time_in_force="FOK"))
    assert done(events, 1) == ("expired", "SELF_TRADE", 0, 5)
    assert trades(events) == [(101, 3, 2, 3)]


def test_post_only_rests_or_is_rejected_if_it_would_take():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 2))
    assert rejected(e.apply(limit(2, "b", "buy", 100, 1, post_only=True))) == "POST_ONLY_WOULD_TAKE"
    events = e.apply(limit(3, "b", "buy", 99, 1, post_only=True))
    assert events[-1] == (BOOK_LEVEL_CHANGED, 3, "buy", 99, 1)


# ---------------------------------------------------------------- market orders


def test_market_sell_by_quantity_sweeps_bids():
    e = market()
    e.apply(limit(1, "a", "buy", 100, 2))
    e.apply(limit(2, "a", "buy", 98, 2))
    events = e.apply(mkt(3, "b", "sell", qty=3))
    assert trades(events) == [(100, 2, 1, 3), (98, 1, 2, 3)]
    assert done(events, 3) == ("filled", None, 3, 0)


def test_market_order_larger_than_the_book_expires_the_remainder():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 2))
    events = e.apply(mkt(2, "b", "buy", qty=5))
    assert done(events, 2) == ("expired", "TIME_IN_FORCE", 2, 3)


def test_market_order_on_an_empty_side_is_rejected():
    e = market()
    e.apply(limit(1, "a", "buy", 100, 2))
    assert rejected(e.apply(mkt(2, "b", "buy", qty=1))) == "NO_LIQUIDITY"


def test_market_fok_by_quantity():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 2))
    assert rejected(e.apply(mkt(2, "b", "buy", qty=3, time_in_force="FOK"))) == "FOK_NOT_FILLABLE"
    assert done(e.apply(mkt(3, "b", "buy", qty=2, time_in_force="FOK")), 3) == ("filled", None, 2, 0)


def test_market_buy_by_quote_amount_never_spends_more_than_the_amount():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 3))
    e.apply(limit(2, "a", "sell", 110, 5))
    events = e.apply(mkt(3, "b", "buy", quote=555))
    # 3 lots at 100 (300), then 555 - 300 = 255 buys 2 lots at 110 (220); 35 left.
    assert trades(events) == [(100, 3, 1, 3), (110, 2, 2, 3)]
    assert of(ORDER_DONE, events)[-1] == (ORDER_DONE, 3, 3, "b", "buy", "filled", None, 5, 0, 35)


def test_market_buy_by_quote_amount_that_empties_the_book_expires_with_the_unspent_amount():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 3))
    events = e.apply(mkt(2, "b", "buy", quote=1000))
    assert of(ORDER_DONE, events)[-1] == (ORDER_DONE, 2, 2, "b", "buy", "expired", "TIME_IN_FORCE", 3, 0, 700)


def test_market_buy_by_quote_amount_spending_exactly_the_book_is_filled():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 3))
    events = e.apply(mkt(2, "b", "buy", quote=300))
    assert of(ORDER_DONE, events)[-1][5:] == ("filled", None, 3, 0, 0)


def test_market_buy_by_quote_amount_too_small_for_one_lot_expires_unfilled():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 3))
    events = e.apply(mkt(2, "b", "buy", quote=99))
    assert of(ORDER_DONE, events)[-1][5:] == ("expired", "TIME_IN_FORCE", 0, 0, 99)


@pytest.mark.parametrize(
    "cmd, reason",
    [
        (mkt(9, "b", "buy", qty=1, quote=100), "INVALID_QUANTITY"),
        (mkt(9, "b", "sell", quote=100), "INVALID_QUANTITY"),
        (mkt(9, "b", "buy"), "INVALID_QUANTITY"),
        (mkt(9, "b", "buy", quote=100, time_in_force="FOK"), "INVALID_TIME_IN_FORCE"),
        (mkt(9, "b", "buy", qty=1, time_in_force="GTC"), "INVALID_TIME_IN_FORCE"),
        (mkt(9, "b", "buy", qty=1, post_only=True), "INVALID_POST_ONLY"),
        (PlaceOrder(9, "b", "buy", "market", 100, 1), "INVALID_PRICE"),
    ],
)
def test_malformed_market_orders_are_rejected(cmd, reason):
    e = market()
    e.apply(limit(1, "a", "sell", 100, 3))
    assert rejected(e.apply(cmd)) == reason


# ---------------------------------------------------------------- self-trade prevention


def self_trade_setup(mode, **rules):
    e = market(**rules)
    e.apply(limit(1, "me", "sell", 100, 2))
    e.apply(limit(2, "other", "sell", 100, 2))
    return e, e.apply(limit(3, "me", "buy", 100, 3, stp=mode))


def test_stp_none_lets_a_user_trade_with_itself():
    _, events = self_trade_setup("NONE")
    assert trades(events) == [(100, 2, 1, 3), (100, 1, 2, 3)]


def test_stp_expire_taker_stops_the_taker_at_its_own_order():
    e, events = self_trade_setup("EXPIRE_TAKER")
    assert trades(events) == []
    assert done(events, 3) == ("expired", "SELF_TRADE", 0, 3)
    assert e.order(1)["remaining_quantity"] == 2


def test_stp_expire_maker_removes_own_orders_and_keeps_matching():
    e, events = self_trade_setup("EXPIRE_MAKER")
    assert done(events, 1) == ("expired", "SELF_TRADE", 0, 2)
    assert trades(events) == [(100, 2, 2, 3)]
    assert e.order(3)["remaining_quantity"] == 1  # the rest rests


def test_stp_expire_both():
    e, events = self_trade_setup("EXPIRE_BOTH")
    assert done(events, 1) == ("expired", "SELF_TRADE", 0, 2)
    assert done(events, 3) == ("expired", "SELF_TRADE", 0, 3)
    assert trades(events) == []
    assert book(e) == {"buy": [], "sell": [(100, 2)]}


def test_stp_mode_defaults_to_the_market_setting_and_the_taker_mode_governs():
    _, events = self_trade_setup(None, default_stp="EXPIRE_TAKER")
    assert done(events, 3) == ("expired", "SELF_TRADE", 0, 3)
    e = market(default_stp="EXPIRE_TAKER")
    e.apply(limit(1, "me", "sell", 100, 2))  # maker says EXPIRE_TAKER ...
    events = e.apply(limit(2, "me", "buy", 100, 1, stp="NONE"))  # ... the taker says NONE
    assert trades(events) == [(100, 1, 1, 2)]


def test_stp_applies_to_market_orders_by_quote_amount():
    e = market()
    e.apply(limit(1, "me", "sell", 100, 2))
    e.apply(limit(2, "x", "sell", 101, 2))
    events = e.apply(mkt(3, "me", "buy", quote=1000, stp="EXPIRE_MAKER"))
    assert done(events, 1) == ("expired", "SELF_TRADE", 0, 2)
    assert trades(events) == [(101, 2, 2, 3)]


# ---------------------------------------------------------------- market rules


@pytest.mark.parametrize(
    "rules, cmd, reason",
    [
        ({"min_quantity": "3"}, limit(1, "a", "buy", 100, 2), "QTY_BELOW_MIN"),
        ({"max_quantity": "3"}, limit(1, "a", "buy", 100, 4), "QTY_ABOVE_MAX"),
        ({"min_quantity": "3"}, mkt(1, "a", "sell", qty=2), "QTY_BELOW_MIN"),
        ({"max_quantity": "3"}, mkt(1, "a", "sell", qty=4), "QTY_ABOVE_MAX"),
        ({"min_notional": "500"}, limit(1, "a", "buy", 100, 4), "NOTIONAL_BELOW_MIN"),
        ({"min_notional": "500"}, mkt(1, "a", "buy", quote=499), "NOTIONAL_BELOW_MIN"),
        ({"halted": True}, limit(1, "a", "buy", 100, 4), "MARKET_HALTED"),
    ],
)
def test_market_rules_reject_before_anything_rests(rules, cmd, reason):
    e = market(**rules)
    if not rules.get("halted"):
        e.apply(limit(100, "z", "sell", 150, 10))
        e.apply(limit(101, "z", "buy", 50, 10))
    before = book(e)
    assert rejected(e.apply(cmd)) == reason
    assert book(e) == before


def test_min_notional_accepts_exactly_the_minimum():
    e = market(min_notional="400")
    assert e.apply(limit(1, "a", "buy", 100, 4))[0][0] == COMMAND_ACCEPTED


def test_price_band_around_the_reference_and_last_trade_price():
    e = market(price_band_percent="10")
    assert e.apply(limit(1, "a", "buy", 1, 1))[0][0] == COMMAND_ACCEPTED  # no reference yet
    e.apply(SetReferencePrice(100))
    assert e.apply(limit(2, "a", "buy", 90, 1))[0][0] == COMMAND_ACCEPTED  # exactly 10% away
    assert rejected(e.apply(limit(3, "a", "buy", 89, 1))) == "PRICE_OUT_OF_BAND"
    assert rejected(e.apply(limit(4, "a", "sell", 111, 1))) == "PRICE_OUT_OF_BAND"
    e.apply(limit(5, "b", "sell", 90, 1))  # trades at 90: the reference follows
    assert e.last_price == 90 and e.reference_price == 90
    assert rejected(e.apply(limit(6, "a", "sell", 100, 1))) == "PRICE_OUT_OF_BAND"
    assert e.apply(limit(7, "a", "sell", 99, 1))[0][0] == COMMAND_ACCEPTED


def test_fractional_price_band_is_exact():
    e = market(price_band_percent="2.5")
    e.apply(SetReferencePrice(1000))
    assert e.apply(limit(1, "a", "buy", 975, 1))[0][0] == COMMAND_ACCEPTED
    assert rejected(e.apply(limit(2, "a", "buy", 974, 1))) == "PRICE_OUT_OF_BAND"


def test_max_open_orders_per_user_counts_resting_orders_only():
    e = market(max_open_orders=2)
    e.apply(limit(1, "a", "buy", 90, 1))
    e.apply(limit(2, "a", "buy", 91, 1))
    assert rejected(e.apply(limit(3, "a", "buy", 92, 1))) == "TOO_MANY_OPEN_ORDERS"
    assert e.apply(limit(4, "b", "buy", 92, 1))[0][0] == COMMAND_ACCEPTED  # other users unaffected
    assert e.apply(limit(5, "a", "buy", 92, 1, time_in_force="IOC"))[0][0] == COMMAND_ACCEPTED  # never rests
    e.apply(CancelOrder(1))
    assert e.apply(limit(6, "a", "buy", 92, 1))[0][0] == COMMAND_ACCEPTED


@pytest.mark.parametrize(
    "cmd, reason",
    [
        (PlaceOrder(1, "a", "hold", "limit", 100, 1), "INVALID_SIDE"),
        (PlaceOrder(1, "a", "buy", "stop", 100, 1), "INVALID_ORDER_TYPE"),
        (limit(1, "a", "buy", 100, 1, time_in_force="GTD"), "INVALID_TIME_IN_FORCE"),
        (limit(1, "a", "buy", 100, 1, time_in_force="IOC", post_only=True), "INVALID_POST_ONLY"),
        (limit(1, "a", "buy", 100, 1, post_only="yes"), "INVALID_POST_ONLY"),
        (limit(1, "a", "buy", 100, 1, stp="CANCEL_NEWEST"), "INVALID_STP_MODE"),
        (limit(1, "a", "buy", None, 1), "INVALID_PRICE"),
        (limit(1, "a", "buy", 0, 1), "INVALID_PRICE"),
        (limit(1, "a", "buy", -5, 1), "INVALID_PRICE"),
        (limit(1, "a", "buy", 100.0, 1), "INVALID_PRICE"),
        (limit(1, "a", "buy", True, 1), "INVALID_PRICE"),
        (limit(1, "a", "buy", 1 << 63, 1), "INVALID_PRICE"),
        (limit(1, "a", "buy", 100, 0), "INVALID_QUANTITY"),
        (limit(1, "a", "buy", 100, 1.5), "INVALID_QUANTITY"),
        (limit(1, "a", "buy", 100, None), "INVALID_QUANTITY"),
        (limit(1, "a", "buy", 100, 1, quote_amount=100), "INVALID_QUANTITY"),
    ],
)
def test_malformed_limit_orders_are_rejected_with_a_stable_reason(cmd, reason):
    assert rejected(market().apply(cmd)) == reason


def test_duplicate_order_id_of_an_open_order_is_rejected():
    e = market()
    e.apply(limit(1, "a", "buy", 100, 1))
    assert rejected(e.apply(limit(1, "b", "sell", 200, 1))) == "DUPLICATE_ORDER_ID"
    assert rejected(e.apply(mkt(1, "b", "sell", qty=1))) == "DUPLICATE_ORDER_ID"


def test_every_command_takes_the_next_sequence_number_even_when_rejected():
    e = market()
    seqs = [e.apply(c)[0][1] for c in (limit(1, "a", "buy", 0, 1), CancelOrder(5), Halt(), Resume())]
    assert seqs == [1, 2, 3, 4] and e.seq == 4


# ---------------------------------------------------------------- cancel


def test_cancel_by_id_reports_remaining_and_filled_quantities():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 5))
    e.apply(limit(2, "b", "buy", 100, 2))
    events = e.apply(CancelOrder(1, "a"))
    assert events == [
        (COMMAND_ACCEPTED, 3, "cancel_order", 1, "a"),
        (ORDER_DONE, 3, 1, "a", "sell", "cancelled", "CANCEL", 2, 3, None),
        (BOOK_LEVEL_CHANGED, 3, "sell", 100, 0),
    ]
    assert e.order(1) is None and e.best_ask() is None


def test_cancel_of_unknown_or_someone_elses_order_is_rejected():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 5))
    assert rejected(e.apply(CancelOrder(2))) == "UNKNOWN_ORDER"
    assert rejected(e.apply(CancelOrder(1, "mallory"))) == "UNKNOWN_ORDER"
    assert e.order(1) is not None


def test_cancel_keeps_the_rest_of_the_level_in_order():
    e = market()
    for oid in (1, 2, 3):
        e.apply(limit(oid, "a", "sell", 100, 1))
    e.apply(CancelOrder(2))
    events = e.apply(limit(9, "b", "buy", 100, 2))
    assert [t[2] for t in trades(events)] == [1, 3]


def test_cancel_all_cancels_one_users_orders_in_ascending_id_order():
    e = market()
    e.apply(limit(5, "a", "sell", 103, 1))
    e.apply(limit(2, "a", "buy", 90, 1))
    e.apply(limit(3, "b", "buy", 90, 4))
    e.apply(limit(9, "a", "sell", 101, 1))
    events = e.apply(CancelAll("a"))
    assert [(x[2], x[6]) for x in of(ORDER_DONE, events)] == [(2, "CANCEL_ALL"), (5, "CANCEL_ALL"), (9, "CANCEL_ALL")]
    assert book(e) == {"buy": [(90, 4)], "sell": []}
    assert e.open_orders("a") == []
    assert e.apply(CancelAll("nobody")) == [(COMMAND_ACCEPTED, 6, "cancel_all", None, "nobody")]


def test_cancel_all_order_survives_snapshot_restore():
    e = market()
    e.apply(limit(7, "a", "sell", 101, 1))  # the book lists 7 before 3 (better price)
    e.apply(limit(3, "a", "sell", 102, 1))
    restored = MatchingEngine.restore(json.loads(json.dumps(e.snapshot())))
    assert restored.apply(CancelAll("a")) == e.apply(CancelAll("a"))


# ---------------------------------------------------------------- amend


def test_amend_down_keeps_time_priority():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 5))
    e.apply(limit(2, "b", "sell", 100, 5))
    events = e.apply(AmendOrder(1, "a", quantity=3))
    assert of(ORDER_AMENDED, events) == [(ORDER_AMENDED, 3, 1, "a", "sell", 100, 3, 3, True)]
    assert of(BOOK_LEVEL_CHANGED, events) == [(BOOK_LEVEL_CHANGED, 3, "sell", 100, 8)]
    assert [t[2] for t in trades(e.apply(limit(9, "c", "buy", 100, 4)))] == [1, 2]


def test_amend_up_or_to_a_new_price_loses_time_priority():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 5))
    e.apply(limit(2, "b", "sell", 100, 5))
    events = e.apply(AmendOrder(1, quantity=6))
    assert of(ORDER_AMENDED, events)[0][-1] is False
    assert [t[2] for t in trades(e.apply(limit(9, "c", "buy", 100, 6)))] == [2, 1]
    e.apply(limit(3, "d", "sell", 101, 1))
    e.apply(AmendOrder(1, price=102))
    e.apply(AmendOrder(1, price=101))
    assert [o[0] for o in e.book.level_orders(1, 101)] == [3, 1]


def test_amend_quantity_is_the_new_total_including_filled():
    e = market()
    e.apply(limit(1, "a", "sell", 100, 10))
    e.apply(limit(2, "b", "buy", 100, 4))  # 4 filled, 6 open
    events = e.apply(AmendOrder(1, quantity=5))
    assert of(ORDER_AMENDED, events) == [(ORDER_AMENDED, 3, 1, "a", "sell", 100, 5, 1, True)]
    assert rejected(e.apply(AmendOrder(1, quantity=4))) == "QTY_NOT_ABOVE_FILLED"
    assert e.order(1)["remaining_quantity"] == 1


def test_amend_to_a_crossing_price_trades_like_a_new_order():
    e = market()
    e.apply(limit(1, "a", "buy", 99, 5))
    e.apply(limit(2, "b", "sell", 101, 3))
    events = e.apply(AmendOrder(1, price=101))
    assert trades(events) == [(101, 3, 2, 1)]
    assert e.order(1)["remaining_quantity"] == 2 and e.best_bid() == 101
    e.apply(AmendOrder(1, price=99))
    e.apply(limit(3, "b", "sell", 100, 1))
    events = e.apply(AmendOrder(1, price=100, quantity=4))  # 3 filled before: 1 left, and it fills
    assert done(events, 1) == ("filled", None, 4, 0)


def test_amend_of_a_post_only_order_to_a_crossing_price_is_rejected():
    e = market()
    e.apply(limit(1, "a", "buy", 99, 5, post_only=True))
    e.apply(limit(2, "b", "sell", 101, 3))
    assert rejected(e.apply(AmendOrder(1, price=101))) == "POST_ONLY_WOULD_TAKE"
    assert e.order(1)["price"] == 99


@pytest.mark.parametrize(
    "amend, reason",
    [
        (AmendOrder(5), "UNKNOWN_ORDER"),
        (AmendOrder(1, "b", quantity=2), "UNKNOWN_ORDER"),
        (AmendOrder(1, price=0), "INVALID_PRICE"),
        (AmendOrder(1, price=99.5), "INVALID_PRICE"),
        (AmendOrder(1, quantity=0), "INVALID_QUANTITY"),
        (AmendOrder(1, quantity=50), "QTY_ABOVE_MAX"),
        (AmendOrder(1, price=10), "NOTIONAL_BELOW_MIN"),
        (AmendOrder(1, price=200), "PRICE_OUT_OF_BAND"),
    ],
)
def test_amend_rejections(amend, reason):
    e = market(max_quantity="20", min_notional="100", price_band_percent="50")
    e.apply(limit(1, "a", "buy", 100, 5))
    e.apply(SetReferencePrice(100))
    assert rejected(e.apply(amend)) == reason
    assert e.order(1)["price"] == 100 and e.order(1)["quantity"] == 5


def test_amend_without_changes_is_a_no_op_that_keeps_priority():
    e = market()
    e.apply(limit(1, "a", "buy", 100, 5))
    events = e.apply(AmendOrder(1))
    assert events == [(COMMAND_ACCEPTED, 2, "amend_order", 1, "a"), (ORDER_AMENDED, 2, 1, "a", "buy", 100, 5, 5, True)]


# ---------------------------------------------------------------- halt


def test_halted_market_rejects_orders_and_amends_but_accepts_cancels():
    e = market()
    e.apply(limit(1, "a", "buy", 100, 5))
    e.apply(limit(2, "a", "buy", 99, 5))
    assert e.apply(Halt())[-1] == ("market_status_changed", 3, True)
    assert e.halted
    assert rejected(e.apply(limit(3, "b", "sell", 100, 1))) == "MARKET_HALTED"
    assert rejected(e.apply(mkt(4, "b", "sell", qty=1))) == "MARKET_HALTED"
    assert rejected(e.apply(AmendOrder(1, quantity=1))) == "MARKET_HALTED"
    assert done(e.apply(CancelOrder(1)), 1)[0] == "cancelled"
    assert done(e.apply(CancelAll("a")), 2)[0] == "cancelled"
    assert e.apply(Resume())[-1] == ("market_status_changed", 9, False)
    assert e.apply(limit(5, "b", "sell", 100, 1))[0][0] == COMMAND_ACCEPTED


def test_reference_price_command_validates_its_price():
    e = market()
    assert rejected(e.apply(SetReferencePrice(0))) == "INVALID_PRICE"
    assert e.apply(SetReferencePrice(10))[-1] == ("reference_price_set", 2, 10)
    assert e.reference_price == 10


def test_apply_refuses_things_that_are_not_commands():
    with pytest.raises(InvalidCommand):
        market().apply(("place_order", 1))


# ---------------------------------------------------------------- queries and snapshot


def test_depth_best_prices_and_open_orders():
    e = market()
    for oid, side, price, qty in [(1, "buy", 98, 1), (2, "buy", 99, 2), (3, "buy", 99, 3), (4, "sell", 101, 4), (5, "sell", 103, 5)]:
        e.apply(limit(oid, "u" if oid != 3 else "v", side, price, qty))
    assert e.best_bid() == 99 and e.best_ask() == 101
    assert e.depth(1) == {"buy": [(99, 5)], "sell": [(101, 4)]}
    assert e.depth() == {"buy": [(99, 5), (98, 1)], "sell": [(101, 4), (103, 5)]}
    assert e.depth(0) == {"buy": [], "sell": []}
    assert [o["order_id"] for o in e.open_orders("u")] == [1, 2, 4, 5]
    assert e.open_orders("nobody") == []
    assert e.order(42) is None


def test_snapshot_is_plain_json_and_restores_every_counter_and_flag():
    e = market(price_band_percent="20")
    e.apply(limit(1, "a", "sell", 100, 5))
    e.apply(limit(2, "b", "buy", 100, 2))
    e.apply(limit(3, 7, "sell", 100, 1))
    e.apply(SetReferencePrice(105))
    e.apply(Halt())
    snap = e.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    r = MatchingEngine.restore(json.loads(json.dumps(snap)))
    assert (r.seq, r.trade_seq, r.last_price, r.reference_price, r.halted) == (5, 1, 100, 105, True)
    assert [o[:2] for o in r.book.level_orders(1, 100)] == [[1, "a"], [3, 7]]
    assert r.config == e.config
    assert r.snapshot() == snap


def test_restore_refuses_an_unknown_snapshot_version():
    snap = market().snapshot()
    snap["version"] = 99
    with pytest.raises(ValueError):
        MatchingEngine.restore(snap)


def test_many_cancels_in_one_level_keep_the_queue_bounded():
    e = market()
    e.apply(limit(0, "keep", "sell", 100, 1))
    for oid in range(1, 2001):
        e.apply(limit(oid, "a", "sell", 100, 1))
        e.apply(CancelOrder(oid))
    level = e.book.levels[1][100]
    assert len(level[1]) <= 2 * 1 + 16
    e.book.check_invariants()


@pytest.mark.parametrize("at_the_top", [True, False])
def test_heap_and_index_stay_bounded_when_levels_come_and_go(at_the_top):
    e = market()
    e.apply(limit(0, "a", "buy", 5000 if not at_the_top else 1, 1))
    for oid in range(1, 3001):
        e.apply(limit(oid, "a", "buy", 1000 + oid, 1))
        e.apply(CancelOrder(oid))
    assert len(e.book.heaps[0]) <= 2 * len(e.book.levels[0]) + 64 + 1
    assert len(e.book.index[0]) <= 2 * len(e.book.levels[0]) + 64 + 1
    e.book.check_invariants()


# ---------------------------------------------------------------- fast path vs ordered checks
#
# apply() takes a fast path for limit orders that pass one combined guard
# (price in the precomputed band bounds, quantity bounds, notional) and sends
# everything else through the ordered checks. These tests pin that the path
# taken never changes the outcome.


@pytest.mark.parametrize("band", ["10", "2.5", "0.01", "33.3", "100", "250"])
@pytest.mark.parametrize("ref", [1, 3, 7, 99, 100, 1001, 3_000_017, (1 << 63) - 2])
def test_band_bounds_match_the_exact_ratio_rule(band, ref):
    from decimal import Decimal

    e = market(price_band_percent=band)
    e.apply(SetReferencePrice(ref))
    num, den = Decimal(band).as_integer_ratio()
    width = ref * num // (100 * den)
    oid = 0
    for price in {ref - width - 1, ref - width, ref, ref + width, ref + width + 1}:
        if not 0 < price < 1 << 63:
            continue
        oid += 1
        inside = abs(price - ref) * 100 * den <= ref * num  # the documented rule
        events = e.apply(limit(oid, "a", "buy" if oid % 2 else "sell", price, 1, time_in_force="IOC"))
        assert (events[0][0] == COMMAND_ACCEPTED) == inside, (price, events)
        if not inside:
            assert rejected(events) == "PRICE_OUT_OF_BAND"


def test_halt_and_resume_move_the_fast_path_bounds():
    e = market(price_band_percent="10")
    e.apply(SetReferencePrice(100))
    e.apply(Halt())
    assert rejected(e.apply(limit(1, "a", "buy", 100, 1))) == "MARKET_HALTED"
    e.apply(Resume())
    assert e.apply(limit(2, "a", "buy", 100, 1))[0][0] == COMMAND_ACCEPTED
    assert rejected(e.apply(limit(3, "a", "buy", 89, 1))) == "PRICE_OUT_OF_BAND"
    e.reference_price = 90  # attribute writes (restore does them) move the bounds too
    assert e.apply(limit(4, "a", "buy", 89, 1))[0][0] == COMMAND_ACCEPTED
    e.halted = True
    assert rejected(e.apply(limit(5, "a", "buy", 89, 1))) == "MARKET_HALTED"


def test_configure_changes_the_limits_from_the_next_command_on_and_snapshots_keep_them():
    e = market(min_quantity="5", price_band_percent="10", max_open_orders=1)
    e.apply(SetReferencePrice(100))
    assert rejected(e.apply(limit(1, "a", "buy", 100, 2))) == "QTY_BELOW_MIN"
    assert e.apply(limit(2, "a", "buy", 100, 5))[0][0] == COMMAND_ACCEPTED
    assert rejected(e.apply(limit(3, "a", "buy", 100, 5))) == "TOO_MANY_OPEN_ORDERS"
    assert e.apply(Configure(min_quantity="2", price_band_percent="5", max_open_orders=3)) == [
        (COMMAND_ACCEPTED, 5, "configure", None, None)]
    assert e.apply(limit(4, "a", "buy", 100, 2))[0][0] == COMMAND_ACCEPTED  # the fast path too
    assert rejected(e.apply(limit(5, "a", "buy", 94, 2))) == "PRICE_OUT_OF_BAND"  # 10% -> 5%
    assert e.order(2) is not None  # what rested under the old limits stays
    restored = MatchingEngine.restore(json.loads(json.dumps(e.snapshot())))
    assert restored.config == e.config and restored.config.min_quantity == "2"
    assert restored.apply(limit(6, "a", "buy", 100, 2))[0][0] == COMMAND_ACCEPTED
    assert rejected(restored.apply(limit(7, "a", "buy", 100, 2))) == "TOO_MANY_OPEN_ORDERS"


def test_configure_with_invalid_limits_is_rejected_and_keeps_the_old_ones():
    e = market(min_quantity="5")
    before = e.config
    for bad in (Configure(min_quantity="5", max_quantity="2"), Configure(max_open_orders=0),
                Configure(price_band_percent="-1"), Configure(default_stp="NEVER"),
                Configure(min_quantity=["1"])):
        assert rejected(e.apply(bad)) == "INVALID_LIMITS"
    assert e.config is before
    assert rejected(e.apply(limit(1, "a", "buy", 100, 2))) == "QTY_BELOW_MIN"


def test_configure_round_trips_as_a_journaled_command():
    cmd = Configure(min_quantity="0.5", max_quantity=None, min_notional="10",
                    price_band_percent="7.5", max_open_orders=200, default_stp="EXPIRE_TAKER")
    assert command_from_dict(json.loads(json.dumps(command_to_dict(cmd)))) == cmd
    config = MarketConfig("T-U", "T", "U", tick_size="1", lot_size="1", min_quantity="3")
    assert Configure.of(config) == Configure(min_quantity="3")


@pytest.mark.parametrize(
    "cmd, reason",
    [
        # each fails one check the fast path does not own, and one it does:
        # the earlier check in the documented order must win
        (limit(1, "a", "hold", 100, 1, time_in_force="GTC"), "INVALID_SIDE"),
        (limit(1, "a", "hold", 10**6, 1), "INVALID_SIDE"),
        (limit(1, "a", "buy", 100, 1, time_in_force="GTD"), "INVALID_TIME_IN_FORCE"),
        (limit(1, "a", "buy", 100, 1, stp="NEVER"), "INVALID_STP_MODE"),
        (limit(1, "a", "buy", 100, 1, post_only=1), "INVALID_POST_ONLY"),
        (limit(1, "a", "buy", 100, 1, time_in_force="IOC", post_only=True), "INVALID_POST_ONLY"),
        (limit(1, "a", "buy", 100, True), "INVALID_QUANTITY"),
        (limit(1, "a", "buy", True, 1), "INVALID_PRICE"),
        (limit(1, "a", "buy", 0, 1), "INVALID_PRICE"),
        (limit(1, "a", "buy", 1 << 63, 1), "INVALID_PRICE"),
        (limit(1, "a", "buy", 100, 1, quote_amount=5), "INVALID_QUANTITY"),
        (limit(7, "a", "buy", 100, 1), "DUPLICATE_ORDER_ID"),
        (limit(7, "a", "buy", 10**6, 1), "DUPLICATE_ORDER_ID"),  # duplicate beats band
        (limit(1, "a", "buy", 100, 1000), "QTY_ABOVE_MAX"),
        (limit(1, "a", "buy", 10**6, 1000), "QTY_ABOVE_MAX"),  # quantity beats band
        (limit(1, "a", "buy", 1, 2), "NOTIONAL_BELOW_MIN"),
        (limit(1, "a", "buy", 1000, 1), "PRICE_OUT_OF_BAND"),
        (limit(1, "b", "buy", 100, 1), "TOO_MANY_OPEN_ORDERS"),
        (limit(1, "b", "buy", 10**6, 1), "PRICE_OUT_OF_BAND"),  # band beats open orders
        (limit(1, "a", "buy", 150, 1, post_only=True), "POST_ONLY_WOULD_TAKE"),
        (limit(1, "a", "buy", 150, 20, time_in_force="FOK"), "FOK_NOT_FILLABLE"),
        (limit(1, "a", "buy", 100, 20, time_in_force="FOK"), "FOK_NOT_FILLABLE"),
    ],
)
def test_rejection_reason_follows_the_documented_order_on_either_path(cmd, reason):
    e = market(max_quantity="100", min_notional="10", price_band_percent="50", max_open_orders=1)
    e.apply(SetReferencePrice(100))  # band: 50 .. 150
    e.apply(limit(7, "z", "sell", 150, 10))
    e.apply(limit(8, "b", "buy", 60, 1))
    before = (book(e), e.trade_seq)
    assert rejected(e.apply(cmd)) == reason
    assert (book(e), e.trade_seq) == before


def test_explicit_defaults_give_the_same_events_as_omitted_ones():
    def run(**kw):
        e = market(default_stp="EXPIRE_MAKER")
        e.apply(limit(1, "a", "sell", 100, 3))
        e.apply(limit(2, "b", "sell", 101, 3))
        return e.apply(limit(3, "a", "buy", 101, 5, **kw)), e.snapshot()

    omitted = run()
    assert run(time_in_force="GTC") == omitted
    assert run(stp="EXPIRE_MAKER") == omitted
    assert run(time_in_force="GTC", stp="EXPIRE_MAKER", post_only=False) == omitted


def test_unbounded_quantity_without_max_quantity():
    e = market()
    huge = 1 << 70  # beyond the fast path's stand-in for "no maximum"
    assert e.apply(limit(1, "a", "buy", 100, huge))[-1] == (BOOK_LEVEL_CHANGED, 1, "buy", 100, huge)
    e.book.check_invariants()
