"""The depth books of a process and their publication to Memcached."""
from __future__ import annotations

import logging
from typing import Optional

import eventlet

from services.marketdata.depth import DepthBook
from services.marketdata.hotcache import TTL_DEPTH, HotCache
from services.marketdata.schemas import BookChange

log = logging.getLogger(__name__)

DEPTH_LEVELS = 1000            # levels per side kept in the cached depth snapshot


class DepthKeeper:
    """The depth books of this process, fed by ``book_changed`` events, and a
    writer greenthread that publishes changed books to Memcached (at most one
    write in flight per market: bursts coalesce into the latest state)."""

    def __init__(self, cache: HotCache, resync: bool = True):
        self.cache = cache
        self.resync = resync    # load engine snapshots into untrustworthy books
        self.books: dict[str, DepthBook] = {}
        self.unpublished: set[str] = set()    # Memcached may hold an outdated snapshot
        self._dirty: set[str] = set()
        self._wake = eventlet.queue.LightQueue()
        self._thread = None

    def apply(self, change: BookChange) -> str:
        book = self.books.get(change.market)
        if book is None:
            book = self.books[change.market] = DepthBook(change.market)
        was_synced = book.synced
        outcome = book.apply(change.seq, change.at, change.changes, change.prev_seq)
        if outcome == "applied":
            self._mark(change.market)
        elif was_synced and not book.synced:
            log.warning("depth of %s is stale: gap after seq %s", change.market, book.seq)
            self._mark(change.market)
        return outcome

    def out_of_sync(self, markets) -> list[str]:
        """Of ``markets``, those whose book is not trustworthy: never seen from
        the market's first command (this process started after it, and book
        events are broadcast without a queue), or stale after a gap. Each
        needs the engine's snapshot (``load``)."""
        if not self.resync:
            return []
        return [m for m in markets if m not in self.books or not self.books[m].synced]

    def load(self, snapshot, at: int) -> str:
        """The engine's book after command ``snapshot.seq`` replaces an
        untrustworthy one; book events buffered meanwhile continue it. A book
        that caught up while the snapshot was on its way is kept."""
        book = self.books.get(snapshot.market)
        if book is None:
            book = self.books[snapshot.market] = DepthBook(snapshot.market)
        if book.synced and book.seq >= snapshot.seq:
            return "ignored"
        book.load_snapshot(snapshot.seq, at, snapshot.bids, snapshot.asks)
        self._mark(snapshot.market)
        return "loaded"

    def _mark(self, market: str) -> None:
        if market not in self._dirty:
            self._dirty.add(market)
            self._wake.put(market)

    def refresh(self) -> None:
        """Timer: keep synced snapshots from expiring, retry failed publications."""
        for market, book in self.books.items():
            if book.synced or market in self.unpublished:
                self._mark(market)

    def local(self, market: str) -> Optional[DepthBook]:
        book = self.books.get(market)
        return book if book is not None and book.synced else None

    def start(self, spawn=eventlet.spawn) -> None:
        self._thread = spawn(self.run)

    def stop(self) -> None:
        if self._thread is not None:
            self._wake.put(None)
            self._thread.wait()
            self._thread = None

    def run(self) -> None:
        while True:
            market = self._wake.get()
            if market is None:
                return
            self._dirty.discard(market)
            try:
                self._write(market)
            except Exception:
                log.exception("depth of %s not published", market)

    def _write(self, market: str) -> None:
        book = self.books[market]
        depth_key, bbo_key = self.cache.depth_key(market), self.cache.bbo_key(market)
        if (book.synced and self.cache.set(depth_key, book.snapshot(DEPTH_LEVELS), TTL_DEPTH)
                and self.cache.set(bbo_key, book.best(), TTL_DEPTH)):
            self.unpublished.discard(market)
            return
        # nothing trustworthy to publish, or publishing failed: remove what is there
        if self.cache.delete(depth_key) and self.cache.delete(bbo_key):
            self.unpublished.discard(market)
        else:
            self.unpublished.add(market)
