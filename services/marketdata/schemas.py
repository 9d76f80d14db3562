"""Input validation: events from the matching service (docs/events.md) and the
arguments of the read RPCs. Everything that enters the service passes here
and leaves as plain core values, or raises a typed error (errors.py).

Bounds (the "bounded work" contract, docs/marketdata.md):
* times are integers of epoch milliseconds in [2000-01-01, 2100-01-01);
* limits are integers in [1, MAX]; candles 1500 (a day of 1m candles fits in
  one call), trades 1000, depth 1000;
* the time range a read touches is bounded by its limit (candles) or by a cap
  on the partitions it visits (trades), never by the caller's start/end alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from services.common import events
from services.marketdata.candles import INTERVALS
from services.marketdata.errors import (InvalidEvent, InvalidLimit, InvalidTimeRange,
                                        InvalidTimestamp, UnknownInterval)
from services.marketdata.markets import MarketRegistry
from services.marketdata.models import Trade
from services.matching.models import InvalidValue, to_decimal

MIN_TIME_MS = 946_684_800_000      # 2000-01-01T00:00:00Z
MAX_TIME_MS = 4_102_444_800_000    # 2100-01-01T00:00:00Z (exclusive)

CANDLES_DEFAULT_LIMIT, CANDLES_MAX_LIMIT = 500, 1500
TRADES_DEFAULT_LIMIT, TRADES_MAX_LIMIT = 100, 1000
DEPTH_DEFAULT_LIMIT, DEPTH_MAX_LIMIT = 100, 1000



# ---------------------------------------------------------------- events

class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class LevelChange(_Event):
    side: Literal["buy", "sell"]
    price: StrictStr = Field(max_length=64)
    quantity: StrictStr = Field(max_length=64)


class BookChanged(_Event):
    market: StrictStr
    seq: StrictInt = Field(ge=1)
    prev_seq: Optional[StrictInt] = Field(default=None, ge=0)
    at: StrictInt = Field(ge=MIN_TIME_MS, lt=MAX_TIME_MS)
    changes: list[LevelChange] = Field(max_length=100_000)


def _parse(model, payload):
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidEvent(f"{model.__name__}: {where}: {first['msg']}") from None


def trade_from_event(payload, markets: MarketRegistry) -> Trade:
    """A ``trade_executed`` payload as a Trade; InvalidEvent / UnknownMarket otherwise.
    Decoded by the one definition every consumer uses (services.common.events
    ``trade_executed``); here also: amounts on the market's grid, quote = price
    x quantity exactly, the time within the stored range."""
    try:
        event = events.trade_executed(payload)
    except events.UnsupportedEvent as exc:
        raise InvalidEvent(str(exc)) from None
    if not MIN_TIME_MS <= event.executed_at < MAX_TIME_MS:
        raise InvalidEvent(f"trade {event.trade_id[:40]}: executed_at is out of range")
    market = markets.get(event.market)
    try:
        market.price_to_ticks(event.price)
        market.qty_to_lots(event.quantity)
        market.quote_to_units(event.quote_quantity)
    except InvalidValue as exc:
        raise InvalidEvent(f"trade {event.trade_id[:40]}: {exc}") from None
    price, quantity, quote = (Decimal(event.price), Decimal(event.quantity),
                              Decimal(event.quote_quantity))
    if price * quantity != quote:
        raise InvalidEvent(f"trade {event.trade_id[:40]}: quote_quantity is not price x quantity")
    return Trade(event.market, event.trade_id, event.seq, price, quantity, quote,
                 event.taker_side, event.maker_order_id, event.maker_user_id,
                 event.taker_order_id, event.taker_user_id, event.executed_at)


@dataclass(frozen=True)
class BookChange:
    market: str
    seq: int
    prev_seq: Optional[int]
    at: int
    changes: tuple[tuple[str, Decimal, Decimal], ...]


def book_change_from_event(payload, markets: MarketRegistry) -> BookChange:
    event = _parse(BookChanged, payload)
    market = markets.get(event.market)
    changes = []
    for change in event.changes:
        try:
            market.price_to_ticks(change.price)
            quantity = to_decimal(change.quantity)
            if quantity != 0:          # "0" removes the level; anything else is a lot count
                market.qty_to_lots(change.quantity)
        except InvalidValue as exc:
            raise InvalidEvent(f"book_changed seq {event.seq}: {exc}") from None
        changes.append((change.side, Decimal(change.price), quantity))
    return BookChange(event.market, event.seq, event.prev_seq, event.at, tuple(changes))


@dataclass(frozen=True)
class EngineDepth:
    """The engine's book after command ``seq`` (``matching.get_depth``)."""
    market: str
    seq: int
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]


def engine_depth(answer, market: str, markets: MarketRegistry) -> EngineDepth:
    """``matching.get_depth``'s answer for ``market``, on the market's grid, or
    InvalidEvent."""
    config = markets.get(market)
    try:
        if not isinstance(answer, dict) or answer.get("market") != market:
            raise InvalidValue("answer is not this market's depth")
        seq = answer["seq"]
        if type(seq) is not int or seq < 0:
            raise InvalidValue("seq is not a non-negative integer")
        sides = []
        for side in ("buy", "sell"):      # best first, as matching.get_depth answers
            levels = []
            for price, quantity in answer[side]:
                config.price_to_ticks(price)
                config.qty_to_lots(quantity)
                levels.append((Decimal(price), to_decimal(quantity)))
            sides.append(tuple(levels))
    except (InvalidValue, KeyError, TypeError, ValueError) as exc:
        raise InvalidEvent(f"engine depth of {market[:40]}: {exc}") from None
    return EngineDepth(market, seq, *sides)


# ---------------------------------------------------------------- RPC arguments

def timestamp(value, name: str, optional: bool = True) -> Optional[int]:
    if value is None and optional:
        return None
    if type(value) is not int:
        raise InvalidTimestamp(f"{name} must be an integer of epoch milliseconds, "
                               f"got {type(value).__name__}")
    if not MIN_TIME_MS <= value < MAX_TIME_MS:
        raise InvalidTimestamp(f"{name}={value} is outside [{MIN_TIME_MS}, {MAX_TIME_MS})")
    return value


def time_range(start, end) -> tuple[Optional[int], Optional[int]]:
    start, end = timestamp(start, "start"), timestamp(end, "end")
    if start is not None and end is not None and start > end:
        raise InvalidTimeRange(f"start {start} is after end {end}")
    return start, end


def limit(value, default: int, maximum: int) -> int:
    if value is None:
        return default
    if type(value) is not int or not 1 <= value <= maximum:
        raise InvalidLimit(f"limit must be an integer in [1, {maximum}], got {str(value)[:20]!r}")
    return value


def interval(value) -> str:
    if not isinstance(value, str) or value not in INTERVALS:
        raise UnknownInterval(f"interval must be one of {', '.join(INTERVALS)}, "
                              f"got {str(value)[:20]!r}")
    return value
