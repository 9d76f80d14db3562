"""Klines in a time zone, and candles merged into one (pure: no I/O, no clock).

Marketdata keeps candles of 1m 5m 15m 30m 1h 4h 1d 1w aligned to UTC (weeks
from Monday 00:00 UTC: services/marketdata/candles.py ``ORIGIN_MS``).
Binance's klines ``timeZone`` ("+08:00", "-1:00", "05:45", "8"; from -12:00
to +14:00) interprets the intervals in that zone: a +08:00 daily kline opens
at 16:00 UTC. Such a kline is exactly the merge of the stored candles of a
finer interval that divides both the interval and the offset
(``fetch_interval``): a +08:00 1d kline is six 4h candles, a +05:30 1d kline
48 30m ones. A kline needing more than ``MAX_PARTS`` candles (a 1d kline at
+05:07 would need 1440 1m candles) is refused rather than served from fewer,
wrong ones. An offset that is a multiple of the interval (every whole-hour
offset of 1m..1h) gives the UTC klines themselves.

Candle rows are marketdata's: ``[open_time, open, high, low, close, volume,
quote_volume, trade_count]``, decimals as strings; merged rows carry
Decimals (never floats).
"""
from __future__ import annotations

import re
from decimal import Decimal

from services.marketdata.candles import DAY, INTERVALS, MINUTE, ORIGIN_MS

# A kline must fit in one marketdata page (gateway/api/binance.py KLINE_PAGE_BUCKETS).
MAX_PARTS = 1000
# The sign may arrive as a space: python-binance 1.0.37 sends every parameter
# but ``symbol`` unencoded, so its "+08:00" reads " 08:00" once URL-decoded.
ZONE = re.compile(r"([+ -]?)([0-9]{1,2})(?::([0-9]{2}))?")
ZONE_MIN, ZONE_MAX = -12 * 60, 14 * 60          # minutes, inclusive (Binance's range)


def zone_offset_ms(text: str) -> int | None:
    """``timeZone`` as milliseconds east of UTC; None when it is not one of
    Binance's forms or lies outside [-12:00, +14:00]."""
    found = ZONE.fullmatch(text)
    if found is None:
        return None
    sign, hours, minutes = found.group(1), int(found.group(2)), int(found.group(3) or 0)
    if minutes >= 60:
        return None
    total = hours * 60 + minutes
    total = -total if sign == "-" else total
    if not ZONE_MIN <= total <= ZONE_MAX:
        return None
    return total * MINUTE


def fetch_interval(interval: str, offset_ms: int) -> str | None:
    """The stored interval whose candles make ``interval``'s klines in the
    zone exactly, coarsest first: ``interval`` itself when the zone's klines
    are the UTC ones; None when every exact one needs more than
    ``MAX_PARTS`` candles per kline."""
    span = INTERVALS[interval].ms
    for name in reversed(tuple(INTERVALS)):
        step = INTERVALS[name].ms
        if step > span or span % step or offset_ms % step:
            continue
        return name if span // step <= MAX_PARTS else None
    return None


def open_of(t: int, interval_ms: int, offset_ms: int) -> int:
    """The UTC open time of the kline holding ``t`` (ms) in the zone."""
    local = t + offset_ms
    return ORIGIN_MS + (local - ORIGIN_MS) // interval_ms * interval_ms - offset_ms


def merge(rows) -> list:
    """One row from consecutive candle rows, oldest first: the first open, the
    last close, the extremes, the sums. ``open_time``: the first row's."""
    first, last = rows[0], rows[-1]
    return [first[0], Decimal(first[1]), max(Decimal(r[2]) for r in rows),
            min(Decimal(r[3]) for r in rows), Decimal(last[4]),
            sum((Decimal(r[5]) for r in rows), Decimal(0)),
            sum((Decimal(r[6]) for r in rows), Decimal(0)), sum(int(r[7]) for r in rows)]


def group(rows, interval_ms: int, offset_ms: int) -> list:
    """Candle rows (oldest first) merged into the zone's klines of
    ``interval_ms``, each opening at its kline's open time."""
    out: list = []
    part: list = []
    opened = None
    for row in rows:
        key = open_of(row[0], interval_ms, offset_ms)
        if part and key != opened:
            out.append([opened] + merge(part)[1:])
            part = []
        opened = key
        part.append(row)
    if part:
        out.append([opened] + merge(part)[1:])
    return out


def window_parts(start: int, stop: int, most: int) -> list[tuple[str, int, int]]:
    """``[start, stop)`` (``start`` on a minute) as at most three reads of
    stored candles that cover it exactly, none of more than ``most`` candles:
    ``[("1m", start, stop)]`` when that is few enough, else the 1m candles of
    the partial first and last UTC days and the 1d candles between (a 7 day
    window: 3 reads, not 8 of 1m candles). ``most`` >= 1440."""
    if stop - start <= most * MINUTE:
        return [("1m", start, stop)]
    first_day, last_day = -(-start // DAY) * DAY, stop // DAY * DAY
    parts = [("1m", start, first_day), ("1d", first_day, last_day), ("1m", last_day, stop)]
    return [part for part in parts if part[1] < part[2]]
