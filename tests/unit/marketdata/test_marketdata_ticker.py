"""The 24h rolling ticker: the window rolls off with injected times; the
incremental window equals the computation from stored candles."""
import os
import sys
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from md_unit_helpers import T0, trade  # noqa: E402

from services.marketdata.candles import DAY, HOUR, MINUTE, candles_from_trades  # noqa: E402
from services.marketdata.ticker import TickerWindow, compute_ticker, window_start  # noqa: E402


def minute_candles(trades):
    return [c for (_, interval, _), c in candles_from_trades(trades, ["1m"]).items()
            if interval == "1m"]


TRADES = [trade(1, T0 + 10 * MINUTE + 5, "100.00", "2.0000"),
          trade(2, T0 + 5 * HOUR, "130.00", "1.0000"),
          trade(3, T0 + 20 * HOUR, "90.00", "1.0000"),
          trade(4, T0 + 23 * HOUR, "110.00", "0.5000")]


def test_the_window_is_the_1440_minutes_ending_with_the_current_one():
    assert window_start(T0 + DAY) == T0 + MINUTE
    assert window_start(T0 + DAY - 1) == T0


def test_ticker_over_a_full_window():
    ticker = compute_ticker("BTC-USDT", minute_candles(TRADES), None, T0 + 23 * HOUR + 1)
    assert ticker["open"] == "100.00" and ticker["last"] == "110.00"
    assert (ticker["high"], ticker["low"]) == ("130.00", "90.00")
    assert ticker["volume"] == "4.5000"
    assert Decimal(ticker["quote_volume"]) == Decimal("200") + 130 + 90 + 55
    assert ticker["change"] == "10.00" and ticker["change_percent"] == "10.00"
    assert ticker["trade_count"] == 4


def test_a_trade_rolls_off_exactly_24h_after_its_minute_started():
    first_minute = T0 + 10 * MINUTE
    still_in = compute_ticker("BTC-USDT", minute_candles(TRADES), None, first_minute + DAY - 1)
    rolled = compute_ticker("BTC-USDT", minute_candles(TRADES), None, first_minute + DAY)
    assert still_in["open"] == "100.00" and still_in["trade_count"] == 4
    assert rolled["open"] == "130.00" and rolled["trade_count"] == 3
    assert rolled["volume"] == "2.5000"
    # (110 - 130) / 130 * 100 = -15.384..., rounded half-even to 2 places
    assert rolled["change"] == "-20.00" and rolled["change_percent"] == "-15.38"


def test_a_quiet_window_keeps_the_last_price_and_nulls_the_rest():
    later = T0 + 23 * HOUR + 2 * DAY
    ticker = compute_ticker("BTC-USDT", minute_candles(TRADES), None, later)
    assert ticker["last"] == "110.00" and ticker["last_trade_at"] == T0 + 23 * HOUR
    assert ticker["open"] is None and ticker["change_percent"] is None
    assert ticker["volume"] == "0" and ticker["trade_count"] == 0
    never = compute_ticker("BTC-USDT", [], None, later)
    assert never["last"] is None


def test_a_trade_stamped_in_a_future_minute_counts_once_that_minute_comes():
    future = [trade(9, T0 + 2 * MINUTE, "50.00")]
    assert compute_ticker("BTC-USDT", minute_candles(future), None, T0 + MINUTE)["trade_count"] == 0
    assert compute_ticker("BTC-USDT", minute_candles(future), None, T0 + 2 * MINUTE)["last"] == "50.00"


def test_the_incremental_window_equals_the_computation_from_stored_candles():
    window = TickerWindow("BTC-USDT", [], None)
    fed = []
    for now in range(T0, T0 + 3 * DAY, 7 * HOUR + 13 * MINUTE):
        for t in TRADES + [trade(10 + i, T0 + DAY + i * 9 * HOUR, f"{120 + i}.00") for i in range(4)]:
            if t.executed_at <= now and t not in fed:
                fed.append(t)
                window.update(minute_candles([x for x in fed if x.executed_at // MINUTE
                                              == t.executed_at // MINUTE])[0])
        assert window.snapshot(now) == compute_ticker("BTC-USDT", minute_candles(fed), None, now)


def test_a_fall_too_small_for_two_decimals_is_no_change_not_minus_zero():
    """30000 -> 29999.99 is -0.00003 %: "0.00", not Decimal's "-0.00" (the web
    client showed ETH-USDT's 24h change as -0.00 %)."""
    trades = [trade(1, T0 + MINUTE, "30000.00", "1.0000"),
              trade(2, T0 + 2 * MINUTE, "29999.99", "1.0000")]
    ticker = compute_ticker("BTC-USDT", minute_candles(trades), None, T0 + 3 * MINUTE)
    assert ticker["change"] == "-0.01" and ticker["change_percent"] == "0.00"
