"""gateway/klines.py: Binance's ``timeZone`` parsed, the stored interval a
zone's klines are merged from, the merge itself (against the 1m candles
merged by hand), and the reads that cover a rolling ticker's window."""
import random
from decimal import Decimal

import pytest

from gateway import klines
from services.marketdata.candles import DAY, HOUR, INTERVALS, MINUTE, WEEK

MONDAY = 1_796_601_600_000            # 2026-12-07T00:00:00Z, a Monday


@pytest.mark.parametrize("text, minutes", [
    ("0", 0), ("8", 480), ("+08:00", 480), ("-1:00", -60), ("05:45", 345), ("-12:00", -720),
    ("+14:00", 840), ("-0:30", -30), ("+5", 300),
    (" 08:00", 480)])    # python-binance's unencoded "+08:00", URL-decoded
def test_binances_forms_of_a_zone(text, minutes):
    assert klines.zone_offset_ms(text) == minutes * MINUTE


@pytest.mark.parametrize("text", ["+14:01", "-12:01", "15", "8:60", "08:0", "+-1", "1:00:00",
                                  "Asia/Shanghai", "  8", "8h", "", "+", "123"])
def test_anything_else_is_no_zone(text):
    assert klines.zone_offset_ms(text) is None


@pytest.mark.parametrize("interval, zone, fetch", [
    ("1h", "+08:00", "1h"), ("1m", "05:45", "1m"), ("30m", "-3:30", "30m"),   # UTC's own
    ("4h", "+08:00", "4h"), ("4h", "+09:00", "1h"), ("1d", "+08:00", "4h"),
    ("1d", "+09:00", "1h"), ("1d", "05:30", "30m"), ("1d", "05:45", "15m"),
    ("1w", "+08:00", "4h"), ("1w", "-1:00", "1h"), ("1w", "0", "1w"), ("1h", "05:45", "15m"),
    ("1h", "05:07", "1m"), ("4h", "05:07", "1m"), ("1d", "05:07", None), ("1w", "05:07", None)])
def test_the_coarsest_exact_interval(interval, zone, fetch):
    assert klines.fetch_interval(interval, klines.zone_offset_ms(zone)) == fetch


def test_a_kline_opens_at_the_zones_boundary():
    plus8 = klines.zone_offset_ms("+08:00")
    noon = MONDAY + 12 * HOUR
    assert klines.open_of(noon, DAY, plus8) == MONDAY - 8 * HOUR            # Mon 20:00 +08
    assert klines.open_of(MONDAY + 16 * HOUR, DAY, plus8) == MONDAY + 16 * HOUR  # Tue 00:00
    assert klines.open_of(MONDAY + 16 * HOUR - 1, DAY, plus8) == MONDAY - 8 * HOUR
    # weeks open on Monday 00:00 in the zone
    assert klines.open_of(noon, WEEK, plus8) == MONDAY - 8 * HOUR
    assert klines.open_of(MONDAY - 9 * HOUR, WEEK, plus8) == MONDAY - 8 * HOUR - WEEK
    minus1 = klines.zone_offset_ms("-1:00")
    assert klines.open_of(MONDAY, DAY, minus1) == MONDAY - DAY + HOUR


def _minutes(start: int, count: int, seed: int) -> list:
    rng, price, rows = random.Random(seed), Decimal("30000.00"), []
    for i in range(count):
        if rng.random() < 0.6:
            continue                                  # no trade that minute: no candle
        o = price
        c = o + Decimal(rng.randint(-300, 300)) / 100
        h, lo = max(o, c) + Decimal(rng.randint(0, 50)) / 100, \
            min(o, c) - Decimal(rng.randint(0, 50)) / 100
        vol = Decimal(rng.randint(1, 5000)) / 10000
        rows.append([start + i * MINUTE, str(o), str(h), str(lo), str(c), str(vol),
                     str((vol * c).quantize(Decimal("0.00000001"))), rng.randint(1, 9)])
        price = c
    return rows


def _merged_by_hand(rows, span, offset):
    out = {}
    for row in rows:
        out.setdefault((row[0] + offset) // span * span - offset, []).append(row)
    return [[k, Decimal(v[0][1]), max(Decimal(r[2]) for r in v), min(Decimal(r[3]) for r in v),
             Decimal(v[-1][4]), sum(Decimal(r[5]) for r in v), sum(Decimal(r[6]) for r in v),
             sum(r[7] for r in v)] for k, v in sorted(out.items())]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("interval, zone", [("1d", "+08:00"), ("4h", "+09:00"),
                                            ("1d", "05:45"), ("1h", "-3:30")])
def test_merged_candles_are_the_zones_klines(seed, interval, zone):
    offset, span = klines.zone_offset_ms(zone), INTERVALS[interval].ms
    minutes = _minutes(MONDAY - 2 * DAY, 4 * 1440, seed)
    fetch = INTERVALS[klines.fetch_interval(interval, offset)].ms
    # the stored candles of the fetch interval, UTC-aligned, merged from the minutes
    stored = [[row[0]] + klines.merge(row_group)[1:] for row, row_group in
              ((g[0], g) for g in _groups(minutes, fetch))]
    got = klines.group(stored, span, offset)
    assert got == _merged_by_hand(minutes, span, offset)
    assert all(isinstance(v, (int, Decimal)) for row in got for v in row)


def _groups(rows, span):
    out: dict = {}
    for row in rows:
        out.setdefault(row[0] // span * span, []).append(row)
    return [[[k] + r[1:] if i == 0 else r for i, r in enumerate(v)] for k, v in sorted(out.items())]


@pytest.mark.parametrize("start, stop", [
    (MONDAY + 17 * MINUTE, MONDAY + 5 * MINUTE * 60 + 1),            # short: one read
    (MONDAY - DAY + 37 * MINUTE, MONDAY + 13 * HOUR + 123),          # 1d + 1 min
    (MONDAY - 7 * DAY + 5 * MINUTE, MONDAY + 5 * MINUTE + 7),        # 7d
    (MONDAY - 3 * DAY, MONDAY + 1)])                                 # on a day's boundary
def test_a_window_is_covered_exactly_by_few_reads(start, stop):
    parts = klines.window_parts(start, stop, 1500)
    assert len(parts) <= 3 and parts[0][1] == start and parts[-1][2] == stop
    assert all(a[2] == b[1] for a, b in zip(parts, parts[1:]))
    for interval, first, last in parts:
        step = INTERVALS[interval].ms
        assert first % step == 0 and -(-(last - first) // step) <= 1500
        assert interval == "1m" or last % step == 0
