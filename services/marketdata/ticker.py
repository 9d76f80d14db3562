"""The 24h rolling ticker (pure, no I/O; ``now`` is always an argument).

The window is made of whole 1m candles: the 1440 minutes ending with the
current one, i.e. candles with ``floor_minute(now) - 1439 min <= open_time
<= floor_minute(now)`` (a trade stamped in a later minute, by clock skew,
counts once that minute comes).
It therefore covers between 23h59m and 24h of history, rolls forward once a
minute, and is computed the same way from memory (the ingest path) and from
the candles table (the cache-miss path), so both give identical answers.

* open / close(``last``) are the first / last trades in the window by the
  trade order (models.py); high / low / volume / quote_volume / trade_count
  are over the window.
* ``change`` = last - open; ``change_percent`` = change / open * 100, rounded
  half-even to 2 decimals ("0.00", never "-0.00"): ``change_percent``, the
  one home of that rule (the Binance API's ticker asks it for 3 decimals, as
  Binance shows them). Decimal throughout.
* A window without trades: open/high/low/change are null, volumes "0", and
  ``last`` is still the last price ever traded (``previous``: the latest 1m
  candle before the window), or null for a market that never traded.
"""
from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Iterable, Optional

from services.marketdata.candles import HOUR, MINUTE, floor_to
from services.marketdata.models import Aggregate, Candle, format_decimal

WINDOW_MINUTES = 1440
PERCENT_PLACES = 2


def change_percent(change: Decimal, open_price: Decimal, places: int = PERCENT_PLACES) -> Decimal:
    """``change`` as a percentage of ``open_price``, rounded half-even to
    ``places`` decimals. A fall too small for them is 0, never Decimal's
    "-0.00", which traders read as a fall they cannot see."""
    percent = (change * 100 / open_price).quantize(Decimal(1).scaleb(-places),
                                                    rounding=ROUND_HALF_EVEN)
    return percent if percent else percent.copy_abs()


def window_start(now: int) -> int:
    return floor_to(now, MINUTE) - (WINDOW_MINUTES - 1) * MINUTE


def compute_ticker(market: str, minutes: Iterable[Candle], previous: Optional[Candle],
                   now: int) -> dict:
    """``minutes``: 1m candles (any outside the window is ignored);
    ``previous``: the latest 1m candle before the window, if known."""
    start, current = window_start(now), floor_to(now, MINUTE)
    agg = Aggregate()
    for candle in minutes:
        if start <= candle.open_time <= current:
            agg.add_candle(candle)
        elif candle.open_time < start and (previous is None
                                            or candle.last.key > previous.last.key):
            previous = candle
    return _ticker(market, agg, previous, start, current)


def _ticker(market: str, agg: Aggregate, previous: Optional[Candle], start: int,
            current: int) -> dict:
    ticker = {"market": market, "window_start": start, "minute": current,
              "open": None, "high": None, "low": None, "last": None,
              "volume": "0", "quote_volume": "0", "change": None, "change_percent": None,
              "trade_count": 0, "first_trade_at": None, "last_trade_at": None}
    if agg.count:
        change = agg.close - agg.open
        percent = change_percent(change, agg.open)
        ticker.update({
            "open": format_decimal(agg.open), "high": format_decimal(agg.high),
            "low": format_decimal(agg.low), "last": format_decimal(agg.close),
            "volume": format_decimal(agg.volume),
            "quote_volume": format_decimal(agg.quote_volume),
            "change": format_decimal(change), "change_percent": format_decimal(percent),
            "trade_count": agg.count, "first_trade_at": agg.first.executed_at,
            "last_trade_at": agg.last.executed_at})
    elif previous is not None:
        ticker.update({"last": format_decimal(previous.close),
                       "last_trade_at": previous.last.executed_at})
    return ticker


class TickerWindow:
    """One market's window, fed with every changed 1m candle by the ingest path.

    ``snapshot`` merges a cached aggregate of the window's minutes before the
    current hour (recomputed when the window moves, i.e. once a minute, or when
    a late trade changes one of them) with the current hour's <= 60 minutes,
    so a snapshot after each flush costs O(60), not O(1440)."""

    def __init__(self, market: str, minutes: Iterable[Candle], previous: Optional[Candle]):
        self.market = market
        self.minutes: dict[int, Candle] = {c.open_time: c for c in minutes}
        self.previous = previous
        self._base: Optional[tuple[int, int, Aggregate]] = None  # (start, end, aggregate)

    def update(self, candle: Candle) -> None:
        self.minutes[candle.open_time] = candle
        if self._base is not None and candle.open_time < self._base[1]:
            self._base = None

    def snapshot(self, now: int) -> dict:
        start, current = window_start(now), floor_to(now, MINUTE)
        for open_time in [t for t in self.minutes if t < start]:
            old = self.minutes.pop(open_time)
            if self.previous is None or old.last.key > self.previous.last.key:
                self.previous = old
        base_end = floor_to(now, HOUR)
        if self._base is None or self._base[:2] != (start, base_end):
            base = Aggregate()
            for open_time, candle in self.minutes.items():
                if start <= open_time < base_end:
                    base.add_candle(candle)
            self._base = (start, base_end, base)
        agg = self._base[2].copy()
        for open_time in range(base_end, current + MINUTE, MINUTE):
            candle = self.minutes.get(open_time)
            if candle is not None:
                agg.add_candle(candle)
        return _ticker(self.market, agg, self.previous, start, current)
