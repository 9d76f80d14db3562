"""The read RPCs' logic: Memcached when fresh, Cassandra (or the process's
depth book) otherwise."""
from __future__ import annotations

import bisect
import logging
from collections import OrderedDict
from typing import NamedTuple, Optional

from services.marketdata import queries
from services.marketdata.candles import INTERVALS, MINUTE, floor_to, partitions
from services.marketdata.depthkeeper import DepthKeeper
from services.marketdata.errors import DepthUnavailable
from services.marketdata.hotcache import (TTL_CANDLE_CHUNK, TTL_RECENT_TRADES, TTL_TICKER,
                                         HotCache, pack_candle_rows, unpack_candle_rows)
from services.marketdata.ingest import RECENT_TRADES, IngestPipeline
from services.marketdata.storage import CassandraStore
from services.marketdata.ticker import compute_ticker

log = logging.getLogger(__name__)

CANDLE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "quote_volume",
                  "trade_count")
LOCAL_CHUNKS = 64              # decoded candle partitions kept per process, by version token


class _Row(NamedTuple):
    executed_at: int
    item: dict


class MarketReads:
    """The read RPCs: Memcached when fresh, Cassandra (or this process's
    depth book) otherwise. Cache misses never write over what an ingest
    published: they only ``add`` (or store under a version token)."""

    def __init__(self, store: CassandraStore, cache: HotCache, depth: DepthKeeper,
                 pipeline: Optional["IngestPipeline"] = None):
        self.store = store
        self.cache = cache
        self.depth_keeper = depth
        self.pipeline = pipeline
        self._decoded: OrderedDict[str, list] = OrderedDict()

    def _unpublished(self, version_key: tuple = None, key: str = None) -> bool:
        """True when this process changed the data but could not yet tell
        Memcached (its retry is pending): the entry there may be stale, so it
        is not read. Other processes are covered by the retry and the TTLs."""
        if self.pipeline is None:
            return False
        return (version_key in self.pipeline.pending_bumps
                or key in self.pipeline.pending_deletes)

    # -- candles ---------------------------------------------------------------
    def candles(self, market: str, interval: str, start: Optional[int], end: Optional[int],
                limit: int, now: int) -> dict:
        first, last, next_start = queries.candle_window(interval, start, end, limit, now)
        rows: list = []
        for part in partitions(interval, first, last):
            chunk = self._candle_chunk(market, interval, part)      # oldest first
            lo = bisect.bisect_left(chunk, first, key=lambda row: row[0])
            hi = bisect.bisect_left(chunk, last, key=lambda row: row[0])
            rows.extend(chunk[lo:hi] if (lo, hi) != (0, len(chunk)) else chunk)
        return {"market": market, "interval": interval, "interval_ms": INTERVALS[interval].ms,
                "start": first, "end": last, "next_start": next_start,
                "columns": list(CANDLE_COLUMNS), "candles": rows}

    def _candle_chunk(self, market: str, interval: str, part: int) -> tuple:
        """A partition's rows (oldest first; never mutated by callers).

        The version token in Memcached decides what is current; the rows of a
        given token never change, so besides Memcached this process keeps the
        last decoded chunks by token (``LOCAL_CHUNKS``) and a hot read costs
        one small Memcached get instead of fetching and decoding ~110 KB.
        Memcached holds the rows as compact text (``pack_candle_rows``)."""
        if self._unpublished(version_key=(market, interval, part)):
            return tuple(map(tuple, self.store.candle_partition(market, interval, part)))
        version = self.cache.candle_version(market, interval, part)
        if version is None:                                   # Memcached unreachable
            return tuple(map(tuple, self.store.candle_partition(market, interval, part)))
        key = self.cache.candle_chunk_key(market, interval, part, version)
        rows = self._decoded.get(key)
        if rows is not None:
            self._decoded.move_to_end(key)
            return rows
        raw = self.cache.get_raw(key)
        rows = None if raw is None else unpack_candle_rows(raw)
        if rows is None:
            rows = self.store.candle_partition(market, interval, part)
            packed = pack_candle_rows(rows)
            if packed is not None:
                self.cache.set_raw(key, packed, TTL_CANDLE_CHUNK)
            # tuples of str/int are untracked by Python's cyclic GC once seen:
            # kept lists would make every full collection walk ~100k of them
            rows = tuple(map(tuple, rows))
        self._decoded[key] = rows
        while len(self._decoded) > LOCAL_CHUNKS:
            self._decoded.popitem(last=False)
        return rows

    # -- trades ----------------------------------------------------------------
    def trades(self, market: str, start: Optional[int], end: Optional[int], limit: int) -> dict:
        key = self.cache.recent_key(market)
        if start is None and end is None and limit < RECENT_TRADES and not self._unpublished(key=key):
            cached = self.cache.get(key)
            if cached is None:
                rows, _, exhausted = self.store.latest_trades(market, None, None, RECENT_TRADES)
                rows.sort(key=lambda t: t.key, reverse=True)
                cached = {"complete": exhausted,
                          "trades": [t.public() for t in rows[:RECENT_TRADES]]}
                # add, not set: never overwrite what an ingest published meanwhile
                self.cache.add(key, cached, TTL_RECENT_TRADES)
            page = self._page_from_recent(cached, limit)
            if page is not None:
                return {"market": market, **page}
        rows, resume_end, _ = self.store.latest_trades(market, start, end, limit)
        rows.sort(key=lambda t: t.key, reverse=True)
        page, next_end, split = queries.cut_trade_page(rows, limit)
        if split is not None:
            group = sorted(self.store.trades_at(market, split), key=lambda t: t.key, reverse=True)
            page, next_end = queries.resolve_split(rows, limit, split, group)
        elif len(rows) <= limit:
            next_end = resume_end
        return {"market": market, "trades": [t.public() for t in page], "next_end": next_end}

    @staticmethod
    def _page_from_recent(cached: dict, limit: int) -> Optional[dict]:
        """The page Cassandra would give, cut from the cached newest-first list;
        None when the list cannot tell (too short, or the millisecond at the
        cut runs past the list's end)."""
        items = cached["trades"]
        if len(items) <= limit:
            return {"trades": items, "next_end": None} if cached["complete"] else None
        rows = [_Row(i["executed_at"], i) for i in items]
        page, next_end, split = queries.cut_trade_page(rows, limit)
        if split is not None:
            if rows[-1].executed_at == split and not cached["complete"]:
                return None
            group = [r for r in rows if r.executed_at == split]
            page, next_end = queries.resolve_split(rows, limit, split, group)
        return {"trades": [r.item for r in page], "next_end": next_end}

    def user_trades(self, user_id: str, start, end, limit: int) -> dict:
        return {"user_id": user_id, "trades": self.store.user_trades(user_id, start, end, limit)}

    # -- ticker ----------------------------------------------------------------
    def ticker(self, market: str, now: int) -> dict:
        return self.tickers([market], now)[0]

    def tickers(self, markets: list[str], now: int) -> list[dict]:
        minute = floor_to(now, MINUTE)
        keys = [self.cache.ticker_key(m) for m in markets] + [self.cache.bbo_key(m) for m in markets]
        found = self.cache.get_many(keys)
        out = []
        for market in markets:
            ticker = found.get(self.cache.ticker_key(market))
            if self._unpublished(key=self.cache.ticker_key(market)):
                ticker = None
            if ticker is None or ticker.get("minute") != minute:
                ticker = compute_ticker(market, *self.store.ticker_inputs(market, now), now)
                self.cache.add(self.cache.ticker_key(market), ticker, TTL_TICKER)
            best = None
            if market not in self.depth_keeper.unpublished:
                best = found.get(self.cache.bbo_key(market))
            if best is None:
                book = self.depth_keeper.local(market)
                best = book.best() if book is not None else None
            ticker = dict(ticker)
            ticker["best_bid"] = best["best_bid"] if best else None
            ticker["best_ask"] = best["best_ask"] if best else None
            ticker["book_seq"] = best["seq"] if best else None
            out.append(ticker)
        return out

    # -- depth -----------------------------------------------------------------
    def depth(self, market: str, limit: int) -> dict:
        keeper = self.depth_keeper
        cached = None if market in keeper.unpublished else self.cache.get(self.cache.depth_key(market))
        book = keeper.local(market)
        if cached is not None and (book is None or cached["seq"] >= book.seq):
            return {**cached, "bids": cached["bids"][:limit], "asks": cached["asks"][:limit]}
        if book is not None:
            return book.snapshot(limit)
        raise DepthUnavailable(f"no trustworthy depth for {market} in this process yet")
