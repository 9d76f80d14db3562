"""Nameko glue of marketdata: the dependency providers and the trade consumer.

The I/O lives in four modules, wired together here:

* ``storage.py``     -- Cassandra (prepared statements, batched writes, queries);
* ``hotcache.py``    -- Memcached (keys, TTLs, a client that never raises);
* ``ingest.py``      -- the pipeline: trades -> Cassandra -> candles -> cache;
* ``depthkeeper.py`` -- the depth books of this process and their publication;
* ``reads.py``       -- the read RPCs' cache-then-store logic.

One ``Backend`` (a Nameko SharedExtension) per container owns the long-lived
pieces -- the Cassandra session, the Memcached client, the pipeline's
flusher greenthread, the depth books -- and the dependency providers hand
workers small objects with domain verbs (``TradeLog.record``,
``MarketReads.candles`` ...). Consistency levels and cache keys:
docs/marketdata.md.
"""
from __future__ import annotations

import gc
import logging
import time
from collections import Counter

from nameko.extensions import DependencyProvider, SharedExtension

from services.common import catalogue
from services.common.cache import make_cache
from services.common.cassandra import make_cluster
from services.common.config import load_settings
from services.common.consumer import BatchConsumerProvider
from services.common.events import TRADES_AUDIENCE, UnsupportedEvent, unpack
from services.marketdata import schemas
from services.marketdata.depthkeeper import DepthKeeper
from services.marketdata.errors import InvalidEvent, UnknownMarket
from services.marketdata.hotcache import HotCache
from services.marketdata.ingest import IngestPipeline
from services.marketdata.markets import MarketRegistry
from services.marketdata.parking import ParkedTrades
from services.marketdata.reads import MarketReads
from services.marketdata.storage import CassandraStore, consistency
from services.marketdata.tradefeed import PipelinedBatchConsumer

log = logging.getLogger(__name__)


GC_THRESHOLDS = (20_000, 20, 20)


def tune_collector() -> None:
    """Ingest keeps tens of thousands of objects in flight (deliveries,
    trades, bound statements of up to ``depth`` batches), so with Python's
    default thresholds (700, 10, 10) the cyclic collector ran ~70 times a
    second and a full collection walked every object of the process -- ~120
    ms each, ~10% of ingest time (bench/README.md). What exists once the
    service is set up lives for the process (modules, drivers, metadata):
    ``gc.freeze`` takes it out of every later collection; higher thresholds
    make young collections rarer. Process-wide, as the service runs alone in
    its process; MARKETDATA_GC_TUNING=False leaves the collector alone."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Backend(SharedExtension):
    """The container's single set of long-lived marketdata objects.

    Container config: CASSANDRA_KEYSPACE (tests), CACHE_PREFIX,
    MEMCACHED_PORT (overrides EXCHANGE_MEMCACHED_PORT; tests point the cache at
    a throw-away server),
    MARKETDATA_TRADE_QUEUE and MARKETDATA_TRADE_EXCHANGE (where trades are
    consumed from; tests use their own, isolated from the shared vhost),
    MARKETDATA_DEPTH_RESYNC=False (no engine snapshots: tests that publish
    book events standing in for the engine).
    """

    clock = staticmethod(lambda: time.time_ns() // 1_000_000)   # the Clock provider sets it

    def setup(self):
        settings = load_settings()
        config = self.container.config
        self.ingested: Counter = Counter()     # valid trade events handled, per market
        if config.get("MEMCACHED_PORT"):
            settings = settings.with_overrides(EXCHANGE_MEMCACHED_PORT=str(config["MEMCACHED_PORT"]))
        self.catalogue = catalogue.container_follower(self.container)
        self.markets = MarketRegistry(self.catalogue)
        self.cluster = make_cluster(settings)
        self.session = self.cluster.connect(
            config.get("CASSANDRA_KEYSPACE", settings["EXCHANGE_CASSANDRA_KEYSPACE"]))
        self.store = CassandraStore(self.session, write_cl=consistency(settings, "WRITE"),
                                    read_cl=consistency(settings, "READ"))
        self.cache = HotCache(make_cache(settings, config.get("CACHE_PREFIX", "")))
        self.pipeline = IngestPipeline(self.store, self.cache)
        self.parking = ParkedTrades(self.session)
        self.markets.parked = self.parking.count
        self.depth = DepthKeeper(self.cache, resync=config.get("MARKETDATA_DEPTH_RESYNC", True))
        self.reads = MarketReads(self.store, self.cache, self.depth, self.pipeline)

    def start(self):
        if self.container.config.get("MARKETDATA_GC_TUNING", True):
            tune_collector()
        self.pipeline.start(self.container.spawn_managed_thread)
        self.depth.start(self.container.spawn_managed_thread)
        # Parked trades of markets listed since: on every catalogue change, and now.
        self.catalogue.listeners.append(lambda old, new: self.record_parked())
        self.catalogue_thread = catalogue.follow_in(self.container, self.catalogue)
        self.container.spawn_managed_thread(self.record_parked)

    def record_parked(self) -> int:
        """Record the parked trades whose market the catalogue lists now."""
        recorded = 0
        for market in self.parking.markets():
            if market not in self.markets:
                continue
            parked = self.parking.take(market)
            trades = []
            for trade_id, body in parked:
                try:
                    trades.append(schemas.trade_from_event(body, self.markets))
                except (InvalidEvent, UnknownMarket) as exc:
                    log.error("parked trade %s of %s dropped: %s", trade_id, market, exc)
            if trades:
                self.pipeline.record(trades, now=self.clock())
                self.ingested.update(t.market for t in trades)
            self.parking.remove(market, [trade_id for trade_id, _ in parked])
            recorded += len(trades)
            log.info("%d parked trades of %s recorded", len(trades), market)
        return recorded

    def stop(self):
        self.catalogue.stop()
        self.pipeline.stop()
        self.depth.stop()
        self.cache.cache.client.close()
        self.cluster.shutdown()

    def kill(self):
        self.catalogue.stop()
        self.cache.cache.client.close()
        self.cluster.shutdown()


class TradeEvents(BatchConsumerProvider):
    """``trade_executed`` from the matching engines, consumed in batches, in
    publish order, by one process at a time (a quorum queue with a single
    active consumer; other instances are hot standbys). That makes this
    process the single writer of the candles (docs/marketdata.md). Up to
    ``depth`` batches are in flight at once; a batch is acknowledged only once
    its trades and every candle they touch are in Cassandra, and after every
    earlier batch; if that fails, the batch is redelivered (all writes are
    idempotent). Invalid events are logged and dropped, never retried."""

    queue = "marketdata.trades"
    exchange = "matching.events"
    # One message per engine batch with its trades (services/matching/wire.py);
    # "trade_executed" is the one-trade format before it.
    routing_keys = [TRADES_AUDIENCE, "trade_executed"]
    batch = 200        # messages (engine batches) per handle
    depth = 3          # batches in flight (tradefeed.py); MARKETDATA_TRADE_DEPTH overrides

    backend = Backend()

    def setup_consumer(self):
        config = self.container.config
        self.queue = config.get("MARKETDATA_TRADE_QUEUE", type(self).queue)
        self.exchange = config.get("MARKETDATA_TRADE_EXCHANGE", type(self).exchange)
        self.depth = int(config.get("MARKETDATA_TRADE_DEPTH", type(self).depth))

    def setup(self):
        """Consumption overlaps writing: ``depth`` batches in flight, acked in
        order once durable (tradefeed.py)."""
        self.setup_consumer()
        self.consumer = PipelinedBatchConsumer(
            self.container.config["AMQP_URI"], self.queue, self.exchange, self.routing_keys,
            self.handle, self.batch, depth=self.depth,
            # Single writer per connection: whatever another instance wrote
            # while this one stood by must be reloaded, not overwritten.
            on_lost=lambda: self.backend.pipeline.forget())

    def handle(self, deliveries) -> None:
        trades = []
        for delivery in deliveries:
            try:
                events = unpack(*delivery)
            except UnsupportedEvent as exc:
                log.error("matching events dropped: %s", exc)
                continue
            for _name, _event_id, body in events:
                self._trade(body, trades)
        if trades:
            self.backend.pipeline.record(trades, now=self.backend.clock())
            self.backend.ingested.update(t.market for t in trades)

    def _trade(self, body, trades: list) -> None:
        """``body`` as a Trade appended to ``trades``, or parked, or dropped."""
        try:
            trades.append(schemas.trade_from_event(body, self.backend.markets))
        except UnknownMarket as exc:
            # Not listed yet: parked (before the ack), recorded once it is.
            if ParkedTrades.parkable(body):
                self.backend.parking.park(body)
                log.warning("trade %s parked: %s", body["trade_id"], exc)
            else:
                log.error("trade_executed dropped: %s", exc)
        except InvalidEvent as exc:
            log.error("trade_executed dropped: %s", exc)


class TradeLog(DependencyProvider):
    """Workers get the ingest pipeline: ``record``, ``rebuild``, ``refresh``."""

    backend = Backend()

    def get_dependency(self, worker_ctx):
        return self.backend.pipeline


class DepthBooks(DependencyProvider):
    backend = Backend()

    def get_dependency(self, worker_ctx):
        return self.backend.depth


class Reads(DependencyProvider):
    backend = Backend()

    def get_dependency(self, worker_ctx):
        return self.backend.reads


class Markets(DependencyProvider):
    backend = Backend()

    def get_dependency(self, worker_ctx):
        return self.backend.markets


class Clock(DependencyProvider):
    """Wall-clock time in epoch ms: the only place the service reads the
    clock (workers get ``now``; the trade consumer uses the same). Tests
    subclass it with a clock they set."""

    backend = Backend()

    def setup(self):
        self.backend.clock = self.now

    def now(self) -> int:
        return time.time_ns() // 1_000_000

    def get_dependency(self, worker_ctx):
        return self.now
