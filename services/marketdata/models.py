"""Plain values of the market-data core: trades and candles.

Amounts are ``Decimal`` (exact, never float); times are integer milliseconds
since the Unix epoch (UTC), as on the wire (docs/events.md).

The order of trades -- which one opens and which one closes a candle, which
one is "last" -- is the deterministic key ``(executed_at, seq, trade_id in
natural order, trade_id)``: the matching service stamps every fill of one
command with the same ``executed_at`` and ``seq``, and numbers the fills in its
trade ids (``BTC-USDT-1042-1``, ``-2`` ... ``-10``), so natural order (digit
runs compared as numbers) is fill order, where plain string order would put
``-10`` before ``-9``. The raw id breaks the last possible tie (``-07`` vs
``-7``), so two different trades never compare equal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from decimal import Decimal
from typing import Optional

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """``"X-1042-10"`` -> ``("X-", 1042, "-", 10, "")``: text at even positions,
    ints at odd ones, so any two keys compare position by position."""
    parts = _DIGITS.split(text)
    for i in range(1, len(parts), 2):
        parts[i] = int(parts[i])
    return tuple(parts)


def order_key(executed_at: int, seq: int, trade_id: str) -> tuple:
    return (executed_at, seq, natural_key(trade_id), trade_id)


def format_decimal(value: Decimal) -> str:
    """Plain notation, never exponent (``str(Decimal("1E-7"))`` would be)."""
    return format(value, "f")


@dataclass(frozen=True)
class Trade:
    market: str
    trade_id: str
    seq: int
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    taker_side: str
    maker_order_id: int
    maker_user_id: str
    taker_order_id: int
    taker_user_id: str
    executed_at: int

    @cached_property
    def key(self) -> tuple:
        """Computed once per trade (ingest compares it in the candles and the
        latest-trades list); kept outside the fields, so equality is unchanged."""
        return order_key(self.executed_at, self.seq, self.trade_id)

    def public(self) -> dict:
        """The market-public view (no user or order ids)."""
        return {"trade_id": self.trade_id, "seq": self.seq,
                "price": format_decimal(self.price),
                "quantity": format_decimal(self.quantity),
                "quote_quantity": format_decimal(self.quote_quantity),
                "taker_side": self.taker_side, "executed_at": self.executed_at}


@dataclass(frozen=True)
class TradeRef:
    """Where a candle's first or last trade sits in the trade order."""

    executed_at: int
    seq: int
    trade_id: str

    @property
    def key(self) -> tuple:
        return order_key(self.executed_at, self.seq, self.trade_id)


@dataclass(frozen=True)
class Candle:
    """One bucket of one interval: ``open_time`` is the bucket start (ms) and
    the candle covers ``[open_time, open_time + interval)``. ``first`` and
    ``last`` locate the opening and closing trades, so candles of a finer
    interval merge into a coarser one exactly, whatever order they come in."""

    market: str
    interval: str
    open_time: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trade_count: int
    first: TradeRef
    last: TradeRef

    def row(self) -> list:
        """The compact public form (get_candles' ``columns``): open_time, open,
        high, low, close, volume, quote_volume, trade_count."""
        return [self.open_time, format_decimal(self.open), format_decimal(self.high),
                format_decimal(self.low), format_decimal(self.close),
                format_decimal(self.volume), format_decimal(self.quote_volume), self.trade_count]

    def public(self, interval_ms: int) -> dict:
        return {"open_time": self.open_time, "close_time": self.open_time + interval_ms - 1,
                "open": format_decimal(self.open), "high": format_decimal(self.high),
                "low": format_decimal(self.low), "close": format_decimal(self.close),
                "volume": format_decimal(self.volume),
                "quote_volume": format_decimal(self.quote_volume),
                "trade_count": self.trade_count}


class Aggregate:
    """A running OHLCV over a set of trades (or of candles of those trades).

    ``add_trade`` and ``add_candle`` are commutative: the result depends on the
    set added, not the order. They are NOT idempotent (volume adds up), which
    is why callers deduplicate by trade id before adding (see candles.MinuteBucket).
    """

    __slots__ = ("first_key", "first", "open", "last_key", "last", "close", "high", "low",
                 "volume", "quote_volume", "count")

    def __init__(self):
        self.first_key = self.last_key = None
        self.first = self.last = None
        self.open = self.close = self.high = self.low = None
        self.volume = Decimal(0)
        self.quote_volume = Decimal(0)
        self.count = 0

    def add_trade(self, trade: Trade) -> None:
        key = trade.key
        ref = TradeRef(trade.executed_at, trade.seq, trade.trade_id)
        self._add(key, ref, key, ref, trade.price, trade.price, trade.price, trade.price,
                  trade.quantity, trade.quote_quantity, 1)

    def add_candle(self, candle: Candle) -> None:
        self._add(candle.first.key, candle.first, candle.last.key, candle.last, candle.open,
                  candle.close, candle.high, candle.low, candle.volume, candle.quote_volume,
                  candle.trade_count)

    def _add(self, first_key, first, last_key, last, open_, close, high, low, volume, quote,
             count) -> None:
        if self.count == 0:
            self.first_key, self.first, self.open = first_key, first, open_
            self.last_key, self.last, self.close = last_key, last, close
            self.high, self.low = high, low
        else:
            if first_key < self.first_key:
                self.first_key, self.first, self.open = first_key, first, open_
            if last_key > self.last_key:
                self.last_key, self.last, self.close = last_key, last, close
            if high > self.high:
                self.high = high
            if low < self.low:
                self.low = low
        self.volume += volume
        self.quote_volume += quote
        self.count += count

    def copy(self) -> "Aggregate":
        other = Aggregate()
        for name in self.__slots__:
            setattr(other, name, getattr(self, name))
        return other

    def candle(self, market: str, interval: str, open_time: int) -> Optional[Candle]:
        if self.count == 0:
            return None
        return Candle(market, interval, open_time, self.open, self.high, self.low, self.close,
                      self.volume, self.quote_volume, self.count, self.first, self.last)
