"""The ingest pipeline: group commit of trades into Cassandra, candles and
the cache."""
from __future__ import annotations

import bisect
import heapq
import logging
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from typing import Iterable, Optional

import eventlet
from eventlet.event import Event
from eventlet.queue import LightQueue

from services.marketdata.candles import (DAY, HOUR, INTERVALS, MINUTE, CandleAggregator,
                                         CandleChanges, Needs, floor_to, partition_start)
from services.marketdata.errors import RangeTooLarge
from services.marketdata.hotcache import TTL_RECENT_TRADES, TTL_TICKER, HotCache
from services.marketdata.models import Candle, Trade
from services.marketdata.storage import TRADE_BUCKET, CassandraStore, trade_bucket
from services.marketdata.ticker import TickerWindow

log = logging.getLogger(__name__)

RECENT_TRADES = 200            # the cached "latest trades" list per market
MAX_REBUILD_MS = DAY           # one rebuild call; the CLI loops over longer ranges


@dataclass
class _Job:
    kind: str                     # "trades" | "rebuild" | "refresh" | "forget" | "stop"
    done: Event
    trades: list = None
    now: int = 0
    args: tuple = ()


class IngestPipeline:
    """Group commit of trades into Cassandra and Memcached.

    ``record(trades, now)`` blocks the calling greenthread until its trades and
    every candle they touch are durable in Cassandra (so the event is
    acknowledged only then); one flusher greenthread takes all waiting trades
    at once (up to ``max_batch``) and, per flush:

    1. loads the aggregator state the batch needs (a minute's trades, a
       parent's child candles) -- only for buckets not in memory;
    2. applies the batch to the candle aggregator (pure);
    3. writes, in one wave of concurrent requests, the trade rows (by market,
       by user; idempotent upserts), new bucket-index rows and the changed
       candles of all 8 intervals;
    4. publishes to Memcached: bumps the versions of changed candle
       partitions, sets the latest-trades list and the ticker.

    A failure in 1-3 fails every waiter of the flush (their events are
    requeued and redelivered: harmless, everything is idempotent). Memcached
    failures never fail a flush; what could not be published is retried.
    All state is touched only by the flusher, so there are no races.
    """

    def __init__(self, store: CassandraStore, cache: HotCache,
                 aggregator: Optional[CandleAggregator] = None, max_batch: int = 5000):
        self.store = store
        self.cache = cache
        self.aggregator = aggregator or CandleAggregator()
        self.max_batch = max_batch
        self.jobs: LightQueue = LightQueue()
        self.recent: dict[str, dict] = {}     # market -> {"items", "ids", "complete"}
        self.tickers: dict[str, TickerWindow] = {}
        self.ticker_minute: dict[str, int] = {}
        self.pending_bumps: set[tuple[str, str, int]] = set()
        self.pending_deletes: set[str] = set()
        self._seen_buckets: OrderedDict = OrderedDict()
        self._thread = None
        self.flushes = 0

    # -- public verbs (any greenthread) ---------------------------------------
    def record(self, trades: list[Trade], now: int) -> None:
        self._submit(_Job("trades", Event(), trades=list(trades), now=now))

    def rebuild(self, market: str, start: int, end: int, now: int) -> dict:
        return self._submit(_Job("rebuild", Event(), now=now, args=(market, start, end)))

    def refresh(self, now: int) -> None:
        self._submit(_Job("refresh", Event(), now=now))

    def forget(self) -> None:
        """Drop what this process derived from the tables -- the candle
        state, the latest-trades lists, the ticker windows -- before the next
        trades it records (jobs run in order; this one is not waited for).
        For the trade consumer when it lost its connection: another instance
        may be the active consumer until this one is again, and writes the
        same candles meanwhile; state kept from before would then overwrite
        them without its trades, and the ticker windows, rolled every minute
        even while standing by, would publish tickers without them."""
        self.jobs.put(_Job("forget", Event()))

    def _submit(self, job: _Job):
        self.jobs.put(job)
        return job.done.wait()

    def start(self, spawn=eventlet.spawn) -> None:
        self._thread = spawn(self.run)

    def stop(self) -> None:
        if self._thread is not None:
            self.jobs.put(_Job("stop", Event()))
            self._thread.wait()
            self._thread = None

    # -- the flusher -------------------------------------------------------------
    def run(self) -> None:
        carry = None
        while True:
            job = carry or self.jobs.get()
            carry = None
            if job.kind == "stop":
                job.done.send(None)
                return
            if job.kind != "trades":
                self._run_one(job)
                continue
            batch, count = [job], len(job.trades)
            while count < self.max_batch:
                try:
                    nxt = self.jobs.get_nowait()
                except eventlet.queue.Empty:
                    break
                if nxt.kind != "trades":
                    carry = nxt
                    break
                batch.append(nxt)
                count += len(nxt.trades)
            self._flush(batch)

    def _run_one(self, job: _Job) -> None:
        try:
            if job.kind == "rebuild":
                result = self._rebuild(*job.args, now=job.now)
            elif job.kind == "forget":
                result = self._forget()
            else:
                result = self._refresh(job.now)
        except Exception as exc:
            log.exception("marketdata %s failed", job.kind)
            job.done.send_exception(exc)
        else:
            job.done.send(result)

    def _flush(self, jobs: list[_Job]) -> None:
        distinct: dict[tuple[str, str], Trade] = {}
        for job in jobs:
            for trade in job.trades:
                distinct.setdefault((trade.market, trade.trade_id), trade)
        trades = list(distinct.values())
        now = max(job.now for job in jobs)
        try:
            changes = self._persist(trades)
        except Exception as exc:
            log.warning("marketdata flush of %d trades failed: %r", len(trades), exc)
            for job in jobs:
                job.done.send_exception(exc)
            return
        self.flushes += 1
        self._publish(trades, changes, now)
        for job in jobs:
            job.done.send(None)

    def _persist(self, trades: list[Trade]) -> CandleChanges:
        market_buckets, user_buckets = set(), set()
        for t in trades:
            bucket = trade_bucket(t.executed_at)
            for key, target in (((t.market, bucket), market_buckets),
                                ((t.maker_user_id, bucket), user_buckets),
                                ((t.taker_user_id, bucket), user_buckets)):
                if (target is market_buckets, key) not in self._seen_buckets:
                    target.add(key)
        self._load(self.aggregator.missing(trades))
        changes = self.aggregator.apply(trades)
        # One wave: trades and their candles together (a round trip less per
        # flush). Should it fail, the aggregator already holds the trades:
        # their redelivery is a no-op for it but rewrites the same candles.
        self.store.write_trades(trades, market_buckets, user_buckets, changes)
        for flag, keys in ((True, market_buckets), (False, user_buckets)):
            for key in keys:
                self._seen_buckets[(flag, key)] = True
        while len(self._seen_buckets) > 200_000:
            self._seen_buckets.popitem(last=False)
        return changes

    def _load(self, needs: Needs) -> None:
        if not needs:
            return
        pool = eventlet.GreenPool(16)

        def minute(key):
            market, start = key
            return "m", key, self.store.trades_between(market, start, start + MINUTE)

        def children(key):
            market, parent, start = key
            child = INTERVALS[parent].child
            return "c", key, self.store.candles_between(market, child, start,
                                                        start + INTERVALS[parent].ms)

        calls = [(minute, k) for k in needs.minutes] + [(children, k) for k in needs.children]
        for kind, key, rows in pool.imap(lambda call: call[0](call[1]), calls):
            if kind == "m":
                self.aggregator.load_minute(key[0], key[1], rows)
            else:
                self.aggregator.load_children(key[0], key[1], key[2], rows)

    # -- Memcached publication (never raises) --------------------------------------
    def _publish(self, trades: list[Trade], changes: CandleChanges, now: int) -> None:
        try:
            for c in changes.upserts:
                self.pending_bumps.add((c.market, c.interval, partition_start(c.open_time, c.interval)))
            for market, interval, open_time in changes.deletes:
                self.pending_bumps.add((market, interval, partition_start(open_time, interval)))
            self._retry_pending()
            markets = {t.market for t in trades}
            for market in markets:
                self._publish_recent(market, [t for t in trades if t.market == market])
            minutes = defaultdict(list)
            for c in changes.upserts:
                if c.interval == "1m":
                    minutes[c.market].append(c)
            for market in markets | set(minutes):
                self._publish_ticker(market, minutes.get(market, ()), now)
        except Exception:
            log.exception("marketdata cache publication failed")

    def _retry_pending(self) -> None:
        for key in list(self.pending_bumps):
            if self.cache.bump_candles(*key):
                self.pending_bumps.discard(key)
        for key in list(self.pending_deletes):
            if self.cache.delete(key):
                self.pending_deletes.discard(key)

    def _invalidate(self, key: str) -> None:
        if not self.cache.delete(key):
            self.pending_deletes.add(key)

    def _publish_recent(self, market: str, trades: list[Trade]) -> None:
        """The newest RECENT_TRADES trades, kept oldest-first with their order
        keys; loaded once from Cassandra, then merged with every flush."""
        key = self.cache.recent_key(market)
        try:
            state = self.recent.get(market)
            if state is None:
                rows, _, exhausted = self.store.latest_trades(market, None, None, RECENT_TRADES)
                state = {"items": [], "ids": set(), "complete": exhausted}
                self.recent[market] = state
                self._merge_recent(state, rows)
            self._merge_recent(state, trades)
        except Exception:
            log.exception("latest trades of %s not published", market)
            self.recent.pop(market, None)
            self._invalidate(key)
            return
        value = {"complete": state["complete"], "trades": [d for _, d in reversed(state["items"])]}
        if not self.cache.set(key, value, TTL_RECENT_TRADES):
            self._invalidate(key)

    @staticmethod
    def _merge_recent(state: dict, trades: Iterable[Trade]) -> None:
        items, ids = state["items"], state["ids"]
        trades = [t for t in trades if t.trade_id not in ids]
        if len(trades) > RECENT_TRADES:
            # only the newest RECENT_TRADES new ones can stay: the rest would
            # each be refused or pushed out again (same result, less work)
            trades = heapq.nlargest(RECENT_TRADES, trades, key=lambda t: t.key)
            state["complete"] = False
        for t in trades:
            if t.trade_id in ids:
                continue
            if len(items) >= RECENT_TRADES and t.key < items[0][0]:
                state["complete"] = False      # older than all it keeps
                continue
            bisect.insort(items, (t.key, t.public()), key=lambda item: item[0])
            ids.add(t.trade_id)
            if len(items) > RECENT_TRADES:
                ids.discard(items.pop(0)[1]["trade_id"])
                state["complete"] = False

    def _publish_ticker(self, market: str, minute_candles: Iterable[Candle], now: int) -> None:
        key = self.cache.ticker_key(market)
        try:
            window = self.tickers.get(market)
            if window is None:
                window = TickerWindow(market, *self.store.ticker_inputs(market, now))
                self.tickers[market] = window
            for candle in minute_candles:
                window.update(candle)
            snapshot = window.snapshot(now)
        except Exception:
            log.exception("ticker of %s not published", market)
            self.tickers.pop(market, None)
            self._invalidate(key)
            return
        if self.cache.set(key, snapshot, TTL_TICKER):
            self.ticker_minute[market] = snapshot["minute"]
        else:
            self._invalidate(key)

    def _forget(self) -> None:
        self.aggregator.forget()
        self.recent.clear()
        self.tickers.clear()
        self.ticker_minute.clear()

    def _refresh(self, now: int) -> None:
        """Timer: retry what Memcached refused, and roll tickers whose window
        moved to a new minute (and keep their entries alive)."""
        self._retry_pending()
        minute = floor_to(now, MINUTE)
        for market in list(self.tickers):
            if self.ticker_minute.get(market) != minute:
                self._publish_ticker(market, (), now)

    # -- rebuild -------------------------------------------------------------------
    def _rebuild(self, market: str, start: int, end: int, now: int) -> dict:
        """Recompute the candles of ``[start, end)`` (widened to whole minutes)
        from the trades table, an hour at a time, deleting candles whose
        bucket has no trade any more; coarser buckets overlapping the range are
        recomputed from their children."""
        start, end = floor_to(start, MINUTE), floor_to(end + MINUTE - 1, MINUTE)
        if end - start > MAX_REBUILD_MS + 2 * MINUTE:
            raise RangeTooLarge(f"rebuild at most {MAX_REBUILD_MS // HOUR} hours per call")
        totals = {"market": market, "start": start, "end": end, "trades": 0,
                  "upserts": 0, "deletes": 0}
        # Start from the tables, not from memory: a row written behind this
        # process's back must be seen (and deleted if no trade backs it).
        self.aggregator.forget_market(market)
        step_start = start
        while step_start < end:
            step_end = min(end, trade_bucket(step_start) + TRADE_BUCKET)
            trades = self.store.trades_between(market, step_start, step_end)
            by_minute = {m: [] for m in range(step_start, step_end, MINUTE)}
            for t in trades:
                by_minute[floor_to(t.executed_at, MINUTE)].append(t)
            self._load(self.aggregator.missing_at(((market, m) for m in by_minute), minutes=False))
            changes = self.aggregator.rebuild(market, by_minute)
            self.store.write_candles(changes)
            for c in changes.upserts:
                self.pending_bumps.add((market, c.interval, partition_start(c.open_time, c.interval)))
            for _, interval, open_time in changes.deletes:
                self.pending_bumps.add((market, interval, partition_start(open_time, interval)))
            totals["trades"] += len(trades)
            totals["upserts"] += len(changes.upserts)
            totals["deletes"] += len(changes.deletes)
            step_start = step_end
        self._retry_pending()
        self.tickers.pop(market, None)
        self._publish_ticker(market, (), now)
        return totals
