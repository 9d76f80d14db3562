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

import eventlet
from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider, SharedExtension

from services.common import catalogue
from services.common.cache import make_cache
from services.common.cassandra import make_cluster
from services.common.config import load_settings
from services.common.consumer import BatchConsumerProvider
from services.common.events import TRADES_AUDIENCE, UnsupportedEvent, unpack
from services.marketdata import parking, schemas
from services.marketdata.depthkeeper import DepthKeeper
from services.marketdata.errors import InvalidEvent, UnknownMarket
from services.marketdata.hotcache import HotCache
from services.marketdata.ingest import IngestPipeline
from services.marketdata.markets import MarketRegistry
from services.marketdata.parking import ParkedSender, ParkedTrades
from services.marketdata.reads import MarketReads
from services.marketdata.storage import CassandraStore, consistency
from services.marketdata.tradefeed import PipelinedBatchConsumer

log = logging.getLogger(__name__)


GC_THRESHOLDS = (20_000, 20, 20)
TRADE_QUEUE = "marketdata.trades"


def trade_queue(config: dict) -> str:
    """The queue trades are consumed from (MARKETDATA_TRADE_QUEUE: tests use
    their own), which parked trades are sent back to as well."""
    return config.get("MARKETDATA_TRADE_QUEUE", TRADE_QUEUE)


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
    book events standing in for the engine),
    MARKETDATA_PARKED_RETRY_S (how often parked trades are looked at besides
    catalogue changes; parking.RETRY_S).
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
        self._sending_parked = Semaphore(1)
        self.depth = DepthKeeper(self.cache, resync=config.get("MARKETDATA_DEPTH_RESYNC", True))
        self.reads = MarketReads(self.store, self.cache, self.depth, self.pipeline)

    def start(self):
        if self.container.config.get("MARKETDATA_GC_TUNING", True):
            tune_collector()
        self.pipeline.start(self.container.spawn_managed_thread)
        self.depth.start(self.container.spawn_managed_thread)
        # Parked trades of markets listed since: on every catalogue change,
        # now, and every RETRY_S (a pass that failed, a trade parked again by
        # a consumer whose catalogue was behind).
        self.catalogue.listeners.append(
            lambda old, new: self.container.spawn_managed_thread(self.send_parked))
        self.catalogue_thread = catalogue.follow_in(self.container, self.catalogue)
        self.container.spawn_managed_thread(self._send_parked_every)

    def _send_parked_every(self) -> None:
        every = float(self.container.config.get("MARKETDATA_PARKED_RETRY_S", parking.RETRY_S))
        while True:
            self.send_parked()
            eventlet.sleep(every)

    def send_parked(self) -> int:
        """Send the parked trades whose market the catalogue lists now to the
        trade queue, for its active consumer to ingest (parking.py: never
        recorded here, as this instance may be a standby); remove each row
        once its message is confirmed. Drops (logged) a parked trade that is
        not a valid trade of its market. How many were sent; never raises (a
        failure leaves the rest parked for the next pass). One pass at a time
        per process."""
        sent = 0
        with self._sending_parked:
            try:
                markets = [m for m in self.parking.markets() if m in self.markets]
                if not markets:
                    return 0
                with ParkedSender(self.container.config["AMQP_URI"],
                                  trade_queue(self.container.config)) as sender:
                    for market in markets:
                        sent += self._send_parked_of(market, sender)
            except Exception:
                log.exception("parked trades not sent (those not sent stay parked)")
        return sent

    def _send_parked_of(self, market: str, sender: ParkedSender) -> int:
        sent = 0
        for page in self.parking.pages(market):
            done, bodies = [], []          # rows to remove; the trades to send
            for parked in page:
                try:
                    schemas.trade_from_event(parked.body, self.markets)
                except InvalidEvent as exc:
                    log.error("parked trade %s of %s dropped: %s", parked.trade_id, market, exc)
                except UnknownMarket:
                    return sent         # no longer listed: the rest stays parked
                else:
                    bodies.append(parked.body)
                done.append(parked)
            if bodies:
                sender.send(market, bodies)
            self.parking.remove(market, done)
            sent += len(bodies)
        if sent:
            log.info("%d parked trades of %s sent to the trade queue", sent, market)
        return sent

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

    queue = TRADE_QUEUE
    exchange = "matching.events"
    # One message per engine batch with its trades (services/matching/wire.py);
    # "trade_executed" is the one-trade format before it.
    routing_keys = [TRADES_AUDIENCE, "trade_executed"]
    batch = 200        # messages (engine batches) per handle
    depth = 3          # batches in flight (tradefeed.py); MARKETDATA_TRADE_DEPTH overrides

    backend = Backend()

    def setup_consumer(self):
        config = self.container.config
        self.queue = trade_queue(config)
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
            # Not listed yet: parked (before the ack), sent back to this
            # queue once it is (parking.py).
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
