"""Bad input becomes typed errors; read windows are bounded by the limit."""
import json
import os
import re
import sys
from decimal import Decimal

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from md_unit_helpers import T0  # noqa: E402

from services.marketdata import queries, schemas  # noqa: E402
from services.marketdata.candles import DAY, MINUTE, WEEK  # noqa: E402
from services.marketdata.errors import (InvalidEvent, InvalidLimit, InvalidTimeRange,  # noqa: E402
                                        InvalidTimestamp, UnknownInterval, UnknownMarket)
from services.common import catalogue  # noqa: E402
from services.marketdata.markets import MarketRegistry  # noqa: E402

MARKETS = MarketRegistry.from_catalogue(catalogue.current())
EVENT = {"market": "BTC-USDT", "seq": 1042, "trade_id": "BTC-USDT-1042",
         "price": "64000.01", "quantity": "0.25000", "quote_quantity": "16000.0025",
         "taker_side": "buy", "maker_order_id": 9001, "maker_user_id": "u-1",
         "taker_order_id": 9002, "taker_user_id": "u-2", "executed_at": T0 + 123}


def test_a_valid_trade_event_becomes_a_trade():
    t = schemas.trade_from_event(EVENT, MARKETS)
    assert str(t.price) == "64000.01" and t.executed_at == T0 + 123


@pytest.mark.parametrize("field, value", [
    ("price", 64000.01),                # a float, not a decimal string
    ("price", "64000.015"),             # off the tick grid
    ("price", "-1"), ("price", "NaN"), ("price", "1e3x"),
    ("quantity", "0.250001"),           # off the lot grid
    ("quote_quantity", "16000.0026"),   # not price x quantity
    ("seq", True), ("seq", "1042"), ("seq", 0),
    ("executed_at", "2026-11-23T00:00:00Z"), ("executed_at", 1.5e12), ("executed_at", -1),
    ("taker_side", "both"), ("trade_id", ""), ("maker_user_id", None),
])
def test_malformed_trade_events_are_typed_errors(field, value):
    with pytest.raises(InvalidEvent):
        schemas.trade_from_event({**EVENT, field: value}, MARKETS)


def test_events_of_unknown_markets_and_missing_fields_are_refused():
    with pytest.raises(UnknownMarket):
        schemas.trade_from_event({**EVENT, "market": "DOGE-USDT"}, MARKETS)
    with pytest.raises(InvalidEvent):
        schemas.trade_from_event({k: v for k, v in EVENT.items() if k != "price"}, MARKETS)
    with pytest.raises(InvalidEvent):
        schemas.trade_from_event("not a dict", MARKETS)


def test_book_changed_levels_are_checked_against_the_market_grid():
    ok = {"market": "BTC-USDT", "seq": 3, "at": T0, "changes": [
        {"side": "sell", "price": "64000.01", "quantity": "0.75000"},
        {"side": "buy", "price": "63999.99", "quantity": "0"}]}
    change = schemas.book_change_from_event(ok, MARKETS)
    assert change.changes == (("sell", Decimal("64000.01"), Decimal("0.75000")),
                              ("buy", Decimal("63999.99"), Decimal("0")))
    for bad in ({"quantity": "-1"}, {"quantity": "0.000001"}, {"price": "1.001"}, {"side": "x"}):
        broken = {**ok, "changes": [{**ok["changes"][0], **bad}]}
        with pytest.raises(InvalidEvent):
            schemas.book_change_from_event(broken, MARKETS)


@pytest.mark.parametrize("value", ["1795392000000", 1.795e12, True, -5, 10**20, [1], {}])
def test_malformed_timestamps_are_typed_errors(value):
    with pytest.raises(InvalidTimestamp):
        schemas.time_range(value, None)
    with pytest.raises(InvalidTimestamp):
        schemas.time_range(None, value)


def test_start_after_end_is_refused_and_equal_is_an_empty_range():
    with pytest.raises(InvalidTimeRange):
        schemas.time_range(T0 + 1, T0)
    assert schemas.time_range(T0, T0) == (T0, T0)


@pytest.mark.parametrize("value", [0, -1, 1501, 10**9, "10", 2.0, True])
def test_absurd_limits_are_typed_errors(value):
    with pytest.raises(InvalidLimit):
        schemas.limit(value, 500, 1500)


@pytest.mark.parametrize("value", ["2m", "1M", "", None, 60, "1m "])
def test_unknown_intervals_are_typed_errors(value):
    with pytest.raises(UnknownInterval):
        schemas.interval(value)


def test_unknown_markets_are_typed_errors():
    for value in ("DOGE-USDT", "", None, 5, "btc-usdt"):
        with pytest.raises(UnknownMarket):
            MARKETS.get(value)


def test_default_markets_have_the_matching_engines_tick_and_lot():
    """The stand-in registry must agree with the markets matching seeds
    (services/matching/migrations/001_journal.sql) until issue 5 makes one
    registry: a finer lot here would accept trades the engine never makes."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    with open(os.path.join(root, "services", "matching", "migrations", "001_journal.sql")) as f:
        seeded = {m["symbol"]: m for m in map(json.loads, re.findall(r"'(\{.*?\})'", f.read(), re.S))}
    assert set(seeded) == {"BTC-USDT", "ETH-USDT"}
    for symbol, config in seeded.items():
        ours = MARKETS.get(symbol)
        assert (ours.tick_size, ours.lot_size) == (config["tick_size"], config["lot_size"]), symbol


def test_a_btc_quantity_finer_than_the_engines_lot_is_refused():
    with pytest.raises(InvalidEvent):
        schemas.trade_from_event({**EVENT, "quantity": "0.00005", "quote_quantity": "3.2000005"},
                                 MARKETS)


# ---------------------------------------------------------------- windows and pages

def test_candle_window_without_start_ends_with_the_current_bucket():
    assert queries.candle_window("1m", None, None, 3, T0 + 90_000) == (
        T0 - MINUTE, T0 + 90_001, None)
    assert queries.candle_window("1w", None, T0, 2, 0) == (T0 - 2 * WEEK, T0, None)


def test_candle_window_with_start_is_cut_at_limit_buckets_and_says_where_to_go_on():
    assert queries.candle_window("1m", T0, T0 + DAY, 1440, 0) == (T0, T0 + DAY, None)
    assert queries.candle_window("1m", T0, T0 + DAY, 1000, 0) == (
        T0, T0 + 1000 * MINUTE, T0 + 1000 * MINUTE)
    # a start inside a bucket: that bucket opened before start and is excluded
    assert queries.candle_window("1m", T0 + 1, None, 2, 0) == (T0 + 1, T0 + 3 * MINUTE, None)


def test_a_ten_year_range_of_1m_candles_still_reads_at_most_limit_buckets():
    start, end, more = queries.candle_window("1m", T0 - 3650 * DAY, T0, 1500, 0)
    assert end - start <= 1500 * MINUTE and more == end


class Row:
    def __init__(self, at, n):
        self.executed_at, self.n = at, n


def test_a_trade_page_never_splits_a_millisecond():
    rows = [Row(50, 1), Row(40, 2), Row(40, 3), Row(40, 4), Row(30, 5)]
    assert queries.cut_trade_page(rows, 4)[:2] == (rows[:4], 40)
    page, next_end, split = queries.cut_trade_page(rows, 2)
    assert split == 40
    page, next_end = queries.resolve_split(rows, 2, split, rows[1:4])
    assert [r.n for r in page] == [1] and next_end == 41
    page, next_end, split = queries.cut_trade_page(rows[1:], 2)
    page, next_end = queries.resolve_split(rows[1:], 2, split, rows[1:4])
    assert [r.n for r in page] == [2, 3, 4] and next_end == 40    # one whole millisecond
    assert queries.cut_trade_page(rows, 10) == (rows, None, None)


def test_the_rebuild_command_cuts_ranges_at_utc_midnight():
    from services.marketdata.__main__ import day_chunks, parse_time
    assert parse_time("2026-11-23T00:00:00Z") == T0 == parse_time(str(T0))
    assert parse_time("2026-11-23T01:00:00+01:00") == T0
    assert day_chunks(T0 - 5, T0 + DAY + 7) == [(T0 - 5, T0), (T0, T0 + DAY), (T0 + DAY, T0 + DAY + 7)]
    assert day_chunks(T0, T0) == []
