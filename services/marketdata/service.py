"""The marketdata Nameko service: trade history, candles, tickers and depth.

Thin by design: validate (schemas) -> provider verb -> result. The candle and
ticker maths live in candles.py / ticker.py, the depth book in depth.py,
the I/O in storage.py, hotcache.py, ingest.py, reads.py (wired in providers.py).
Contract: docs/marketdata.md.
"""
from __future__ import annotations

import logging

from nameko.events import BROADCAST, event_handler
from nameko.timer import timer

from services.common import json_codec, rpc_replies
from services.common.deadlines import TimedRpcProxy, rpc
from services.common.metrics import ServiceMetrics
from services.marketdata import schemas
from services.marketdata.errors import (InvalidArgument, InvalidEvent, MarketDataError,
                                        RangeTooLarge, UnknownMarket)
from services.marketdata.depthkeeper import DEPTH_LEVELS
from services.marketdata.ingest import MAX_REBUILD_MS
from services.marketdata.providers import (Clock, DepthBooks, Markets, Reads, TradeEvents,
                                           TradeLog)

rpc_replies.install()
json_codec.install()

log = logging.getLogger(__name__)

# A snapshot of up to DEPTH_LEVELS levels a side from the active engine.
ENGINE_SNAPSHOT_TIMEOUT_S = 2.0


class MarketDataService:
    name = "marketdata"

    clock = Clock()
    markets = Markets()
    trade_events = TradeEvents()      # trade_executed -> trades, candles, tickers (providers.py)
    trade_log = TradeLog()
    depth_books = DepthBooks()
    reads = Reads()
    metrics = ServiceMetrics()
    matching = TimedRpcProxy("matching", timeout_s=ENGINE_SNAPSHOT_TIMEOUT_S)

    # ------------------------------------------------------------ events in

    @event_handler("matching", "book_changed", handler_type=BROADCAST, reliable_delivery=False)
    def on_book_changed(self, payload):
        """Every instance keeps every book (broadcast); see depth.py for the
        sequence rules."""
        try:
            change = schemas.book_change_from_event(payload, self.markets)
        except (InvalidEvent, UnknownMarket) as exc:
            log.error("book_changed dropped: %s", exc)
            return {"market": payload.get("market") if isinstance(payload, dict) else None,
                    "dropped": exc.code}
        return {"market": change.market, "seq": change.seq,
                "outcome": self.depth_books.apply(change)}

    @timer(interval=1.0)
    def refresh(self):
        """Roll tickers into the new minute, retry cache writes Memcached
        refused, keep depth snapshots from expiring."""
        self.trade_log.refresh(now=self.clock())
        self.depth_books.refresh()

    @timer(interval=1.0)
    def resync_depth(self):
        """Books this process cannot trust (it started after the market's
        first command, or saw a gap) load the engine's snapshot; the book
        events that follow it continue it (depth.py). Without this a restarted
        marketdata would answer DEPTH_UNAVAILABLE, and tickers no best bid/ask,
        until the market's next first command: never."""
        loaded = {}
        for market in self.depth_books.out_of_sync(self.markets.symbols()):
            try:
                answer = self.matching.get_depth(market, DEPTH_LEVELS)
                snapshot = schemas.engine_depth(answer, market, self.markets)
            except Exception as exc:    # engine down, market not hosted yet, bad answer: next tick
                log.warning("depth of %s not resynced: %s", market, exc)
                continue
            loaded[market] = self.depth_books.load(snapshot, at=self.clock())
        return loaded

    # ------------------------------------------------------------ reads

    @rpc(expected_exceptions=MarketDataError)
    def get_depth(self, market, limit=None):
        """{market, seq, at, bids: [[price, qty]...] best first, asks: ...}.
        Raises DepthUnavailable when no trustworthy book is known."""
        self.markets.get(market)
        return self.reads.depth(market, schemas.limit(
            limit, schemas.DEPTH_DEFAULT_LIMIT, schemas.DEPTH_MAX_LIMIT))

    @rpc(expected_exceptions=MarketDataError)
    def get_trades(self, market, limit=None, start=None, end=None):
        """Newest first, ``[start, end)`` on executed_at (epoch ms);
        ``next_end`` continues a cut page (docs/marketdata.md)."""
        self.markets.get(market)
        start, end = schemas.time_range(start, end)
        return self.reads.trades(market, start, end, schemas.limit(
            limit, schemas.TRADES_DEFAULT_LIMIT, schemas.TRADES_MAX_LIMIT))

    @rpc(expected_exceptions=MarketDataError)
    def get_candles(self, market, interval, start=None, end=None, limit=None):
        """Oldest first, ``[start, end)`` on open_time, at most ``limit``
        buckets of time; buckets without trades are absent."""
        self.markets.get(market)
        interval = schemas.interval(interval)
        start, end = schemas.time_range(start, end)
        return self.reads.candles(market, interval, start, end, schemas.limit(
            limit, schemas.CANDLES_DEFAULT_LIMIT, schemas.CANDLES_MAX_LIMIT), self.clock())

    @rpc(expected_exceptions=MarketDataError)
    def get_ticker(self, market):
        self.markets.get(market)
        return self.reads.ticker(market, self.clock())

    @rpc(expected_exceptions=MarketDataError)
    def get_tickers(self):
        return self.reads.tickers(self.markets.symbols(), self.clock())

    @rpc(expected_exceptions=MarketDataError)
    def get_user_trades(self, user_id, limit=None, start=None, end=None):
        """A user's fills, newest first (private: the gateway must pass the
        authenticated user's id, never one taken from the request)."""
        if not isinstance(user_id, str) or not 1 <= len(user_id) <= 128:
            raise InvalidArgument("user_id must be a string of 1 to 128 characters")
        start, end = schemas.time_range(start, end)
        return self.reads.user_trades(user_id, start, end, schemas.limit(
            limit, schemas.TRADES_DEFAULT_LIMIT, schemas.TRADES_MAX_LIMIT))

    # ------------------------------------------------------------ maintenance

    @rpc(expected_exceptions=MarketDataError)
    def rebuild_candles(self, market, start, end):
        """Recompute the candles of ``[start, end)`` (at most a day) from the
        trades table; serialised with ingestion. See ``python -m
        services.marketdata rebuild`` for longer ranges."""
        self.markets.get(market)
        start = schemas.timestamp(start, "start", optional=False)
        end = schemas.timestamp(end, "end", optional=False)
        schemas.time_range(start, end)
        if end - start > MAX_REBUILD_MS:
            raise RangeTooLarge(f"rebuild at most {MAX_REBUILD_MS // 3_600_000} hours per call")
        return self.trade_log.rebuild(market, start, end, now=self.clock())

    @rpc(expected_exceptions=MarketDataError)
    def health(self):
        # Trades parked for markets not listed yet: degraded until recorded.
        parked = self.markets.parked()
        return {"status": "degraded" if parked else "ok", "parked_trades": parked,
                "service": self.name, "markets": self.markets.symbols(),
                "depth": {m: b.state for m, b in self.depth_books.books.items()},
                "flushes": self.trade_log.flushes,
                "trade_events_handled": self.trade_events.handled}
