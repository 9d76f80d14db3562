"""Candles: bucket edges, duplicates, reordering, empty intervals, the first
trade of a market, eviction and rebuild -- all against the direct computation."""
import os
import random
import sys
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from md_unit_helpers import T0, FakeTables, trade  # noqa: E402

from services.marketdata.candles import (CHAIN, DAY, HOUR, INTERVALS, MINUTE, WEEK,  # noqa: E402
                                         CandleAggregator, MissingState, bucket_start,
                                         candles_from_trades, floor_to, partition_start,
                                         partitions)
from services.marketdata.models import natural_key  # noqa: E402


# ---------------------------------------------------------------- bucket arithmetic

def test_a_trade_exactly_on_a_boundary_opens_the_new_bucket():
    for interval in CHAIN:
        step = INTERVALS[interval].ms
        assert bucket_start(T0 + step, interval) == T0 + step
        assert bucket_start(T0 + step - 1, interval) == T0


def test_weeks_start_on_monday_and_days_at_utc_midnight():
    monday_1970 = 4 * DAY
    assert bucket_start(monday_1970 + 3 * DAY, "1w") == monday_1970
    assert bucket_start(monday_1970 - 1, "1w") == monday_1970 - WEEK
    assert bucket_start(T0 + 5 * HOUR, "1d") == T0
    assert T0 % DAY == 0 and bucket_start(T0, "1w") == T0  # T0 is a Monday


def test_every_interval_nests_in_its_parent_and_its_partition():
    for interval in CHAIN:
        spec = INTERVALS[interval]
        assert spec.span % spec.ms == 0
        if spec.child:
            assert spec.ms % INTERVALS[spec.child].ms == 0
        assert spec.rows_per_partition <= 2200


def test_partitions_cover_a_window_exactly():
    assert partitions("1m", T0, T0 + DAY) == [T0]
    assert partitions("1m", T0 + HOUR, T0 + DAY + 1) == [T0, T0 + DAY]
    assert partitions("1m", T0, T0) == []
    assert partition_start(T0 + DAY - 1, "1m") == T0


# ---------------------------------------------------------------- the aggregator

def final_candles(tables: FakeTables) -> dict:
    return {k: v for k, v in tables.candles.items()}


def test_the_first_trade_of_a_market_creates_one_candle_per_interval():
    agg, tables = CandleAggregator(), FakeTables()
    needs = agg.missing([trade(1, T0 + 5)])
    assert needs.minutes == {("BTC-USDT", T0)}
    assert {(p, s) for _, p, s in needs.children} == {(i, T0) for i in CHAIN[1:]}
    changes = tables.ingest(agg, [trade(1, T0 + 5, "64000.01", "0.2500")])
    assert sorted(c.interval for c in changes.upserts) == sorted(CHAIN)
    for c in changes.upserts:
        assert (c.open, c.high, c.low, c.close) == (Decimal("64000.01"),) * 4
        assert c.volume == Decimal("0.2500") and c.trade_count == 1
        assert c.quote_volume == Decimal("64000.01") * Decimal("0.2500")


def test_apply_refuses_to_run_on_state_it_was_not_given():
    with pytest.raises(MissingState):
        CandleAggregator().apply([trade(1, T0)])


def test_a_duplicate_changes_nothing_but_is_still_written():
    agg, tables = CandleAggregator(), FakeTables()
    tables.ingest(agg, [trade(1, T0, "10.00"), trade(2, T0 + 1, "12.00")])
    before = final_candles(tables)
    changes = tables.ingest(agg, [trade(2, T0 + 1, "12.00")])
    assert len(changes.upserts) == len(CHAIN)          # rewritten (a crash may have lost them)
    assert final_candles(tables) == before
    assert before[("BTC-USDT", "1m", T0)].trade_count == 2


def test_out_of_order_delivery_gives_open_earliest_and_close_latest():
    agg, tables = CandleAggregator(), FakeTables()
    trades = [trade(1, T0 + 10, "10.00"), trade(2, T0 + 20, "30.00"), trade(3, T0 + 30, "20.00")]
    for t in reversed(trades):
        tables.ingest(agg, [t])
    c = tables.candles[("BTC-USDT", "1h", T0)]
    assert (c.open, c.high, c.low, c.close) == tuple(map(Decimal, ("10.00", "30.00", "10.00", "20.00")))
    assert (c.first.trade_id, c.last.trade_id) == ("BTC-USDT-1", "BTC-USDT-3")


def test_fills_of_one_command_are_ordered_by_their_natural_trade_id():
    # same executed_at and seq: "-10" comes after "-9" (not before, as in string order)
    fills = [trade(0, T0, f"{p}.00", seq=7, trade_id=f"BTC-USDT-7-{n}")
             for n, p in ((9, 90), (10, 100), (1, 10))]
    agg, tables = CandleAggregator(), FakeTables()
    tables.ingest(agg, fills)
    c = tables.candles[("BTC-USDT", "1m", T0)]
    assert (c.open, c.close) == (Decimal("10.00"), Decimal("100.00"))
    assert natural_key("BTC-USDT-7-10") > natural_key("BTC-USDT-7-9")


def test_empty_intervals_have_no_candle_and_do_not_disturb_their_parent():
    agg, tables = CandleAggregator(), FakeTables()
    tables.ingest(agg, [trade(1, T0, "10.00"), trade(2, T0 + 2 * MINUTE + 59_999, "14.00")])
    assert ("BTC-USDT", "1m", T0 + MINUTE) not in tables.candles
    five = tables.candles[("BTC-USDT", "5m", T0)]
    assert (five.open, five.close, five.trade_count) == (Decimal("10.00"), Decimal("14.00"), 2)


def test_a_late_trade_updates_every_interval_above_its_minute():
    agg, tables = CandleAggregator(), FakeTables()
    tables.ingest(agg, [trade(2, T0 + DAY + 5, "20.00")])
    tables.ingest(agg, [trade(1, T0 + 3, "5.00")])  # a day late
    week = tables.candles[("BTC-USDT", "1w", T0)]
    assert (week.open, week.low, week.close, week.trade_count) == (
        Decimal("5.00"), Decimal("5.00"), Decimal("20.00"), 2)


trade_lists = st.lists(
    st.tuples(st.integers(0, 40),                       # trade number (ids repeat: duplicates)
              st.integers(0, 3 * DAY // 1000),          # seconds after T0 (spans days and minutes)
              st.integers(1, 500),                      # price in cents
              st.sampled_from(["BTC-USDT", "ETH-USDT"])),
    min_size=1, max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trade_lists, st.randoms(use_true_random=False), st.integers(1, 8), st.booleans())
def test_incremental_equals_direct_under_duplicates_reordering_and_eviction(
        specs, rnd, batch, tiny_memory):
    # A trade number always maps to the same trade (a redelivery is identical).
    by_id = {}
    for n, sec, cents, market in specs:
        by_id.setdefault((market, n), trade(n, T0 + sec * 1000 + n, f"{cents / 100:.2f}",
                                            market=market))
    deliveries = [by_id[(m, n)] for n, _, _, m in specs]
    rnd.shuffle(deliveries)
    agg = CandleAggregator(max_minute_trades=2, max_parents=3) if tiny_memory else CandleAggregator()
    tables = FakeTables()
    for i in range(0, len(deliveries), batch):
        tables.ingest(agg, deliveries[i:i + batch])
    assert final_candles(tables) == candles_from_trades(by_id.values())


@settings(max_examples=60, deadline=None)
@given(trade_lists.map(lambda specs: [(n, sec % (6 * 3600), cents, m) for n, sec, cents, m in specs]),
       st.integers(0, 1439))
def test_rebuild_from_the_trades_table_equals_the_incremental_result(specs, bogus_minute):
    by_id = {}
    for n, sec, cents, market in specs:
        by_id.setdefault((market, n), trade(n, T0 + sec * 1000, f"{cents / 100:.2f}", market=market))
    agg, tables = CandleAggregator(), FakeTables()
    tables.ingest(agg, list(by_id.values()))
    incremental = final_candles(tables)

    # Damage the candles (a lost row, a bogus one), then rebuild the day of
    # each market with a fresh aggregator, as a restarted service would.
    tables.candles.pop(next(iter(tables.candles)))
    bogus = replace(next(iter(incremental.values())), market="BTC-USDT", interval="1m",
                    open_time=T0 + bogus_minute * MINUTE, trade_count=99)
    tables.candles[("BTC-USDT", "1m", bogus.open_time)] = bogus
    fresh = CandleAggregator()
    for market in ("BTC-USDT", "ETH-USDT"):
        minutes = {m: tables.minute_trades(market, m) for m in range(T0, T0 + DAY, MINUTE)}
        tables.load(fresh, fresh.missing_at(((market, m) for m in minutes), minutes=False))
        tables.write(fresh.rebuild(market, minutes))
    assert final_candles(tables) == incremental


def test_a_writer_that_forgets_when_handing_over_keeps_the_other_writers_trades():
    """Two instances take turns as the single writer (the trade queue handed
    over and back): the one writing again starts from the tables, not from
    the state it kept, which lacks what the other one wrote meanwhile."""
    tables, first, second = FakeTables(), CandleAggregator(), CandleAggregator()
    trades = [trade(n, T0 + n * 1000, f"{10 + n}.00") for n in range(1, 7)]
    tables.ingest(first, trades[:3])
    first.forget()                             # its consumer lost the queue
    tables.ingest(second, trades[3:5])
    tables.ingest(first, trades[5:])           # and took it back
    assert final_candles(tables) == candles_from_trades(trades)
    assert tables.candles[("BTC-USDT", "1w", T0)].trade_count == 6


def test_memory_stays_bounded_by_evicting_least_recently_used_minutes():
    agg, tables = CandleAggregator(max_minute_trades=100, max_parents=10), FakeTables()
    rnd = random.Random(7)
    trades = [trade(n, T0 + rnd.randrange(2 * DAY), "1.00") for n in range(2000)]
    for i in range(0, len(trades), 50):
        tables.ingest(agg, trades[i:i + 50])
    assert agg._minute_trades <= 100 + 50
    assert len(agg._children) <= 10
    assert final_candles(tables) == candles_from_trades(trades)
