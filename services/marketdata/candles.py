"""Candles: interval arithmetic and the incremental aggregator (pure, no I/O).

Buckets. Every interval's buckets are aligned to ``ORIGIN_MS`` = Monday
1970-01-05 00:00 UTC, so minutes, hours and days are the usual UTC ones and
weeks start on Monday. A trade at ``t`` belongs to the bucket
``[start, start + interval)`` with ``start <= t``: a trade exactly on a
boundary opens the new bucket.

Exactness under redelivery and reordering. Only the 1m level is built from
trades, in a ``MinuteBucket`` that remembers the trade ids it holds (a
duplicate changes nothing). Every coarser candle is *recomputed* from its
children (5m from its five 1m candles, 15m from three 5m ... 1w from seven 1d),
never adjusted by deltas. OHLC merge by the trade order key (models.py), so
the result depends only on the set of distinct trades, not on their arrival
order -- the property the unit tests check against ``candles_from_trades``.

The caller (ingest.IngestPipeline) does the I/O in two phases: ``missing()``
names the state it must load (a minute's trades from the trades table, a
parent's child candles from the candles table), ``load_*`` hands it in, and
``apply()`` returns the candles to upsert. ``rebuild()`` replaces minutes with
state recomputed from the trades table and returns upserts and deletes.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Optional

from services.marketdata.models import Aggregate, Candle, Trade

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
ORIGIN_MS = 4 * DAY  # 1970-01-05T00:00:00Z, a Monday


@dataclass(frozen=True)
class Interval:
    name: str
    ms: int
    span: int             # one Cassandra partition holds this much time of candles
    child: Optional[str]  # the finer interval this one is recomputed from

    @property
    def rows_per_partition(self) -> int:
        return self.span // self.ms


INTERVALS: dict[str, Interval] = {i.name: i for i in (
    Interval("1m", MINUTE, DAY, None),
    Interval("5m", 5 * MINUTE, WEEK, "1m"),
    Interval("15m", 15 * MINUTE, 2 * WEEK, "5m"),
    Interval("30m", 30 * MINUTE, 4 * WEEK, "15m"),
    Interval("1h", HOUR, 8 * WEEK, "30m"),
    Interval("4h", 4 * HOUR, 52 * WEEK, "1h"),
    Interval("1d", DAY, 260 * WEEK, "4h"),
    Interval("1w", WEEK, 520 * WEEK, "1d"),
)}
CHAIN: tuple[str, ...] = tuple(INTERVALS)
PARENT: dict[str, str] = {child: parent for child, parent in zip(CHAIN, CHAIN[1:])}
TOP = CHAIN[-1]


def floor_to(t: int, step: int) -> int:
    """Start of the ``step``-long bucket holding ``t`` (Python's % is never negative)."""
    return t - (t - ORIGIN_MS) % step


def bucket_start(t: int, interval: str) -> int:
    return floor_to(t, INTERVALS[interval].ms)


def partition_start(t: int, interval: str) -> int:
    return floor_to(t, INTERVALS[interval].span)


def partitions(interval: str, start: int, end: int) -> list[int]:
    """Partition starts covering ``[start, end)``, oldest first."""
    span = INTERVALS[interval].span
    first = floor_to(start, span)
    return list(range(first, end, span)) if end > start else []


# ---------------------------------------------------------------- direct computation

def candles_from_trades(trades: Iterable[Trade], intervals: Iterable[str] = CHAIN
                        ) -> dict[tuple[str, str, int], Candle]:
    """Every candle of the distinct trades given (duplicates by (market, trade_id)
    counted once), computed straight from trades for each interval: the
    reference the incremental path must equal. Keys: (market, interval, open_time)."""
    distinct: dict[tuple[str, str], Trade] = {}
    for trade in trades:
        distinct.setdefault((trade.market, trade.trade_id), trade)
    aggs: dict[tuple[str, str, int], Aggregate] = {}
    for trade in distinct.values():
        for interval in intervals:
            key = (trade.market, interval, bucket_start(trade.executed_at, interval))
            agg = aggs.get(key)
            if agg is None:
                agg = aggs[key] = Aggregate()
            agg.add_trade(trade)
    return {key: agg.candle(*key) for key, agg in aggs.items()}


def merge_candles(market: str, interval: str, open_time: int,
                  children: Iterable[Candle]) -> Optional[Candle]:
    agg = Aggregate()
    for child in children:
        agg.add_candle(child)
    return agg.candle(market, interval, open_time)


# ---------------------------------------------------------------- incremental state

class MinuteBucket:
    """The trades of one market-minute, deduplicated by trade id."""

    __slots__ = ("ids", "agg")

    def __init__(self):
        self.ids: set[str] = set()
        self.agg = Aggregate()

    def add(self, trade: Trade) -> bool:
        """False (and no change) for a trade id already in the bucket."""
        if trade.trade_id in self.ids:
            return False
        self.ids.add(trade.trade_id)
        self.agg.add_trade(trade)
        return True


class MissingState(LookupError):
    """``apply``/``rebuild`` was called before the state ``missing`` named was loaded."""


@dataclass
class Needs:
    minutes: set[tuple[str, int]]               # (market, minute start): load its trades
    children: set[tuple[str, str, int]]         # (market, parent interval, parent start)

    def __bool__(self) -> bool:
        return bool(self.minutes or self.children)


@dataclass
class CandleChanges:
    upserts: list[Candle]
    deletes: list[tuple[str, str, int]]         # (market, interval, open_time)


class CandleAggregator:
    """Holds recent minute buckets and, per parent bucket, its child candles.

    Memory is bounded: minute buckets are evicted least-recently-used once they
    hold more than ``max_minute_trades`` trade ids in total, child sets once
    there are more than ``max_parents``. Evicted state is simply loaded again
    (from the trades / candles tables) when a late trade needs it.

    Single writer: the candles of a market must be maintained by one aggregator
    at a time (docs/marketdata.md), since child sets mirror the rows it wrote.
    """

    def __init__(self, max_minute_trades: int = 400_000, max_parents: int = 4096):
        self.max_minute_trades = max_minute_trades
        self.max_parents = max_parents
        self._minutes: OrderedDict[tuple[str, int], MinuteBucket] = OrderedDict()
        self._minute_trades = 0
        self._children: OrderedDict[tuple[str, str, int], dict[int, Candle]] = OrderedDict()

    # -- what to load ----------------------------------------------------------
    def missing(self, trades: Iterable[Trade]) -> Needs:
        return self.missing_at(((t.market, t.executed_at) for t in trades), minutes=True)

    def missing_at(self, market_times: Iterable[tuple[str, int]], minutes: bool) -> Needs:
        needs = Needs(set(), set())
        seen = set()
        for market, t in market_times:
            minute = floor_to(t, MINUTE)
            if (market, minute) in seen:
                continue
            seen.add((market, minute))
            if minutes and (market, minute) not in self._minutes:
                needs.minutes.add((market, minute))
            for parent in CHAIN[1:]:
                key = (market, parent, bucket_start(minute, parent))
                if key not in self._children:
                    needs.children.add(key)
        return needs

    def load_minute(self, market: str, minute: int, trades: Iterable[Trade]) -> None:
        bucket = MinuteBucket()
        for trade in trades:
            if trade.market == market and floor_to(trade.executed_at, MINUTE) == minute:
                bucket.add(trade)
        old = self._minutes.pop((market, minute), None)
        if old is not None:
            self._minute_trades -= len(old.ids)
        self._minutes[(market, minute)] = bucket
        self._minute_trades += len(bucket.ids)

    def load_children(self, market: str, parent: str, parent_start: int,
                      candles: Iterable[Candle]) -> None:
        child = INTERVALS[parent].child
        end = parent_start + INTERVALS[parent].ms
        self._children[(market, parent, parent_start)] = {
            c.open_time: c for c in candles
            if c.market == market and c.interval == child and parent_start <= c.open_time < end}

    def has_minute(self, market: str, minute: int) -> bool:
        return (market, minute) in self._minutes

    # -- updates ---------------------------------------------------------------
    def apply(self, trades: Iterable[Trade]) -> CandleChanges:
        """Add trades (duplicates are no-ops) and return every candle of every
        interval whose bucket holds one of them -- also for duplicates, so a
        redelivery after a crash rewrites rows that may not have been written."""
        touched: dict[tuple[str, int], MinuteBucket] = {}
        for trade in trades:
            key = (trade.market, floor_to(trade.executed_at, MINUTE))
            bucket = touched.get(key) or self._minutes.get(key)
            if bucket is None:
                raise MissingState(f"minute {key} not loaded")
            if bucket.add(trade):
                self._minute_trades += 1
            touched[key] = bucket
        changes = self._propagate({key: bucket.agg.candle(key[0], "1m", key[1])
                                   for key, bucket in touched.items()})
        for key in touched:
            self._minutes.move_to_end(key)
        self._evict()
        return changes

    def rebuild(self, market: str, minutes: dict[int, list[Trade]]) -> CandleChanges:
        """Replace the given minutes of ``market`` with buckets of exactly these
        trades (an empty list empties the minute) and recompute every interval
        above them. Child sets for their parents must be loaded (``missing_at``)."""
        for minute, trades in minutes.items():
            self.load_minute(market, minute, trades)
        changes = self._propagate({
            (market, minute): self._minutes[(market, minute)].agg.candle(market, "1m", minute)
            for minute in minutes})
        self._evict()
        return changes

    def forget(self) -> None:
        """Drop all state. For a writer that may not have been the only one
        (IngestPipeline.forget): what the tables hold now is loaded again."""
        self._minutes.clear()
        self._minute_trades = 0
        self._children.clear()

    def forget_market(self, market: str) -> None:
        for key in [k for k in self._minutes if k[0] == market]:
            self._minute_trades -= len(self._minutes.pop(key).ids)
        for key in [k for k in self._children if k[0] == market]:
            del self._children[key]

    def _propagate(self, level: dict[tuple[str, int], Optional[Candle]]) -> CandleChanges:
        changes = CandleChanges([], [])
        for interval in CHAIN:
            parent = PARENT.get(interval)
            dirty_parents: set[tuple[str, int]] = set()
            for (market, open_time), candle in level.items():
                children = None
                if parent is not None:
                    pkey = (market, parent, bucket_start(open_time, parent))
                    children = self._children.get(pkey)
                    if children is None:
                        raise MissingState(f"children of {pkey} not loaded")
                    self._children.move_to_end(pkey)
                    dirty_parents.add((market, pkey[2]))
                if candle is not None:
                    changes.upserts.append(candle)
                    if children is not None:
                        children[open_time] = candle
                elif children is None or children.pop(open_time, None) is not None:
                    changes.deletes.append((market, interval, open_time))
            if parent is None:
                break
            level = {
                (market, start): merge_candles(
                    market, parent, start, self._children[(market, parent, start)].values())
                for market, start in dirty_parents}
        return changes

    def _evict(self) -> None:
        while self._minute_trades > self.max_minute_trades and len(self._minutes) > 1:
            _, bucket = self._minutes.popitem(last=False)
            self._minute_trades -= len(bucket.ids)
        while len(self._children) > self.max_parents:
            self._children.popitem(last=False)
