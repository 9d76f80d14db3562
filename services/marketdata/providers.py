"""Everything of marketdata that does I/O: Cassandra, Memcached, the ingest
pipeline and the depth keeper, behind Nameko dependency providers.

One ``Backend`` (a Nameko SharedExtension) per container owns the long-lived
pieces -- the Cassandra session with its prepared statements, the Memcached
client, the candle aggregator and the ingest pipeline's flusher greenthread,
the depth books -- and the dependency providers hand workers small objects
with domain verbs (``TradeLog.record``, ``MarketReads.candles`` ...).

Consistency levels and cache keys are documented in docs/marketdata.md.
"""
from __future__ import annotations

import bisect
import json
import logging
import time
import uuid
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Iterable, NamedTuple, Optional

import eventlet
from cassandra import ConsistencyLevel, cqltypes
from cassandra.cluster import EXEC_PROFILE_DEFAULT
from cassandra.concurrent import execute_concurrent
from cassandra.marshal import int32_pack, int64_pack
from cassandra.query import BatchStatement, BatchType, BoundStatement, tuple_factory
from eventlet.event import Event
from eventlet.queue import LightQueue
from nameko.extensions import DependencyProvider, SharedExtension
from pymemcache.exceptions import MemcacheError

from services.common.cache import Cache, make_cache
from services.common.cassandra import make_cluster
from services.common.consumer import BatchConsumerProvider
from services.common.config import Settings, load_settings
from services.marketdata import queries, schemas
from services.marketdata.candles import (CHAIN, DAY, HOUR, INTERVALS, MINUTE, CandleAggregator,
                                         CandleChanges, Needs, bucket_start, floor_to,
                                         partition_start, partitions)
from services.marketdata.depth import DepthBook
from services.marketdata.errors import (DepthUnavailable, InvalidEvent, RangeTooLarge,
                                        UnknownMarket)
from services.marketdata.markets import MarketRegistry
from services.marketdata.models import Candle, Trade, TradeRef, format_decimal, order_key
from services.marketdata.schemas import BookChange
from services.marketdata.ticker import TickerWindow, compute_ticker, window_start

log = logging.getLogger(__name__)


class _ReplicaBatchWarning(logging.Filter):
    """Cassandra warns about every unlogged batch spanning more partitions
    than ``unlogged_batch_across_partitions_warn_threshold`` (default 10) and
    the driver logs each warning. trades_by_user rows are batched by replica
    on purpose (CassandraStore._batches); only that warning is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Unlogged batch covering" not in record.getMessage()


logging.getLogger("cassandra.protocol").addFilter(_ReplicaBatchWarning())

CANDLE_COLUMNS = ("open_time", "open", "high", "low", "close", "volume", "quote_volume",
                  "trade_count")
TRADE_BUCKET = HOUR            # trades_by_market / trades_by_user partition span
MAX_TRADE_BUCKETS_PER_READ = 24
RECENT_TRADES = 200            # the cached "latest trades" list per market
MAX_REBUILD_MS = DAY           # one rebuild call; the CLI loops over longer ranges
DEPTH_LEVELS = 1000            # levels per side kept in the cached depth snapshot

# Memcached TTLs (seconds); see docs/marketdata.md for why each is safe.
TTL_CANDLE_VERSION = 3600
TTL_CANDLE_CHUNK = 300
TTL_RECENT_TRADES = 60
TTL_TICKER = 120
TTL_DEPTH = 10


def trade_bucket(t: int) -> int:
    return t - t % TRADE_BUCKET


def user_partition_key(user_id: str, bucket: int) -> bytes:
    """trades_by_user's serialized partition key (user_id text, bucket
    timestamp), as the driver would compute it from a bound statement: each
    component length-prefixed and followed by a zero byte."""
    user = user_id.encode()
    return b"".join((len(user).to_bytes(2, "big"), user, b"\x00",
                     b"\x00\x08", bucket.to_bytes(8, "big", signed=True), b"\x00"))


class _Row(NamedTuple):
    executed_at: int
    item: dict


# ================================================================ Cassandra

class _DecimalColumn(cqltypes.DecimalType):
    """The driver's decimal serializer, ~3x cheaper: it builds the unscaled
    value from the digit tuple in Python; this reads it off the plain string
    form (C code) and packs it with int.to_bytes (exponent forms go through
    an exact scaleb). The bytes are identical
    (tests/unit/marketdata/test_marketdata_serializers.py)."""

    @staticmethod
    def serialize(value, protocol_version):
        if type(value) is not Decimal or not value.is_finite():
            return cqltypes.DecimalType.serialize(value, protocol_version)
        text = str(value)
        if "E" in text:
            scale = -value.as_tuple().exponent
            unscaled = int(value.scaleb(scale, _EXACT))
        else:
            whole, _, fraction = text.partition(".")
            scale, unscaled = len(fraction), int(whole + fraction)
        length = ((unscaled if unscaled >= 0 else ~unscaled).bit_length() + 8) // 8
        return int32_pack(scale) + unscaled.to_bytes(length, "big", signed=True)


class _TimestampColumn(cqltypes.DateType):
    """Epoch-ms ints straight to int64 (the driver tries datetime first and
    reaches ints through two caught AttributeErrors)."""

    @staticmethod
    def serialize(value, protocol_version):
        if type(value) is int:
            return int64_pack(value)
        return cqltypes.DateType.serialize(value, protocol_version)


_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
_FAST_COLUMNS = {cqltypes.DecimalType: _DecimalColumn, cqltypes.DateType: _TimestampColumn}


def _with_fast_serializers(statement):
    """Bind this prepared statement's decimal and timestamp parameters with the
    serializers above (only this statement's metadata changes: nothing global)."""
    statement.column_metadata = [
        column._replace(type=_FAST_COLUMNS.get(column.type, column.type))
        for column in statement.column_metadata]
    return statement


class _Binder:
    """``PreparedStatement.bind`` for the write hot path, at half the cost:
    every parameter is given and none is encrypted, so the driver's per-column
    column-encryption lookup (a namedtuple per value) and UNSET handling are
    skipped. The BoundStatement is the driver's own, with the same bytes."""

    def __init__(self, statement):
        self.statement = statement
        self.serializers = [column.type.serialize for column in statement.column_metadata]
        self.protocol_version = statement.protocol_version

    def bind(self, values: tuple) -> BoundStatement:
        bound = BoundStatement(self.statement)
        bound.raw_values = values
        version = self.protocol_version
        bound.values = [None if v is None else serialize(v, version)
                        for serialize, v in zip(self.serializers, values)]
        return bound


_TRADE_COLUMNS = ("toUnixTimestamp(executed_at), seq, trade_id, price, quantity, quote_quantity, "
                  "taker_side, maker_order_id, maker_user_id, taker_order_id, taker_user_id")
_CANDLE_COLUMNS = ("toUnixTimestamp(open_time), open, high, low, close, volume, quote_volume, "
                   "trade_count, toUnixTimestamp(first_at), first_seq, first_trade_id, "
                   "toUnixTimestamp(last_at), last_seq, last_trade_id")
# The hot read: decimals come back as text cast by Cassandra, which saves the
# driver's Decimal construction and our formatting (half the read's cost).
_PUBLIC_CANDLE_COLUMNS = ("toUnixTimestamp(open_time), CAST(open AS text), CAST(high AS text), "
                          "CAST(low AS text), CAST(close AS text), CAST(volume AS text), "
                          "CAST(quote_volume AS text), trade_count")


def _consistency(settings: Settings, role: str) -> int:
    """Per-role level: EXCHANGE_MARKETDATA_<ROLE>_CONSISTENCY if set, else the
    deployment's EXCHANGE_CASSANDRA_CONSISTENCY (LOCAL_ONE locally, LOCAL_QUORUM
    in production)."""
    name = settings.get(f"EXCHANGE_MARKETDATA_{role}_CONSISTENCY",
                        settings["EXCHANGE_CASSANDRA_CONSISTENCY"])
    return ConsistencyLevel.name_to_value[name]


class CassandraStore:
    """Prepared statements and the queries of docs/marketdata.md.

    Writes are idempotent upserts keyed by what identifies the fact (a trade
    by market and trade id, a candle by market, interval and open time), sent
    as concurrent asynchronous requests (``execute_concurrent``; trades go in
    unlogged batches of one partition each).
    """

    def __init__(self, session, write_cl: int, read_cl: int, concurrency: int = 32,
                 batch_rows: int = 100):
        self.session = session
        self.concurrency = concurrency
        self.batch_rows = batch_rows
        self.write_cl = write_cl
        self.tuples = session.execution_profile_clone_update(EXEC_PROFILE_DEFAULT,
                                                             row_factory=tuple_factory)

        keyspace = session.keyspace

        def prep(cql: str, cl: int):
            # fully qualified names: Cassandra 5 warns about prepared statements
            # that rely on the session's keyspace
            statement = _with_fast_serializers(session.prepare(cql.replace("{ks}", keyspace)))
            statement.consistency_level = cl
            return statement

        w, r = write_cl, read_cl
        self.insert_trade = prep(
            "INSERT INTO {ks}.trades_by_market (market, bucket, executed_at, seq, trade_id, price, "
            "quantity, quote_quantity, taker_side, maker_order_id, maker_user_id, "
            "taker_order_id, taker_user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", w)
        self.insert_user_trade = prep(
            "INSERT INTO {ks}.trades_by_user (user_id, bucket, executed_at, market, trade_id, role, "
            "seq, side, price, quantity, quote_quantity, order_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", w)
        self.insert_market_bucket = prep(
            "INSERT INTO {ks}.trade_buckets_by_market (market, bucket) VALUES (?, ?)", w)
        self.insert_user_bucket = prep(
            "INSERT INTO {ks}.trade_buckets_by_user (user_id, bucket) VALUES (?, ?)", w)
        self.upsert_candle = prep(
            "INSERT INTO {ks}.candles (market, interval, bucket, open_time, open, high, low, close, "
            "volume, quote_volume, trade_count, first_at, first_seq, first_trade_id, last_at, "
            "last_seq, last_trade_id, row) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", w)
        self.delete_candle = prep(
            "DELETE FROM {ks}.candles WHERE market = ? AND interval = ? AND bucket = ? "
            "AND open_time = ?", w)
        self.bind_trade = _Binder(self.insert_trade)
        self.bind_user_trade = _Binder(self.insert_user_trade)
        self.bind_candle = _Binder(self.upsert_candle)
        self.select_trades_range = prep(
            f"SELECT {_TRADE_COLUMNS} FROM {{ks}}.trades_by_market WHERE market = ? AND bucket = ? "
            "AND executed_at >= ? AND executed_at < ?", r)
        self.select_trades_page = prep(
            f"SELECT {_TRADE_COLUMNS} FROM {{ks}}.trades_by_market WHERE market = ? AND bucket = ? "
            "AND executed_at >= ? AND executed_at < ? LIMIT ?", r)
        self.select_trades_at = prep(
            f"SELECT {_TRADE_COLUMNS} FROM {{ks}}.trades_by_market WHERE market = ? AND bucket = ? "
            "AND executed_at = ?", r)
        self.select_market_buckets = prep(
            "SELECT toUnixTimestamp(bucket) FROM {ks}.trade_buckets_by_market WHERE market = ? "
            "AND bucket >= ? AND bucket <= ? LIMIT ?", r)
        self.select_user_buckets = prep(
            "SELECT toUnixTimestamp(bucket) FROM {ks}.trade_buckets_by_user WHERE user_id = ? "
            "AND bucket >= ? AND bucket <= ? LIMIT ?", r)
        self.select_user_trades = prep(
            "SELECT toUnixTimestamp(executed_at), market, trade_id, role, seq, side, price, "
            "quantity, quote_quantity, order_id FROM {ks}.trades_by_user WHERE user_id = ? "
            "AND bucket = ? AND executed_at >= ? AND executed_at < ? LIMIT ?", r)
        self.select_candles = prep(
            f"SELECT {_CANDLE_COLUMNS} FROM {{ks}}.candles WHERE market = ? AND interval = ? "
            "AND bucket = ? AND open_time >= ? AND open_time < ?", r)
        self.select_candle_rows = prep(
            "SELECT row FROM {ks}.candles WHERE market = ? AND interval = ? AND bucket = ?", r)
        self.select_candle_partition = prep(
            f"SELECT {_PUBLIC_CANDLE_COLUMNS} FROM {{ks}}.candles WHERE market = ? AND interval = ? "
            "AND bucket = ?", r)
        self.select_candle_before = prep(
            f"SELECT {_CANDLE_COLUMNS} FROM {{ks}}.candles WHERE market = ? AND interval = ? "
            "AND bucket = ? AND open_time < ? LIMIT 1", r)

    # -- execution helpers -----------------------------------------------------
    def _all(self, statements: list) -> None:
        """Run (statement, params) pairs concurrently; raise the first failure
        after all have finished (every request either landed or failed)."""
        if not statements:
            return
        results = execute_concurrent(self.session, statements, concurrency=self.concurrency,
                                     raise_on_first_error=False)
        for ok, result in results:
            if not ok:
                raise result

    def _rows(self, statement, params) -> list:
        return list(self.session.execute(statement, params, execution_profile=self.tuples))

    def _batches(self, binder: "_Binder", groups: dict):
        """Unlogged batches of at most ``batch_rows`` rows; each batch holds one group: rows of one partition (Cassandra
        applies the batch as a single mutation), or rows whose partitions
        share a primary replica (the batch is routed to that replica, which
        coordinates only the other replicas of its own rows). A batch costs
        one request instead of one per row; unlogged, it is not atomic and
        need not be: every row is an idempotent upsert."""
        for members in groups.values():
            for i in range(0, len(members), self.batch_rows):
                chunk = members[i:i + self.batch_rows]
                if len(chunk) == 1:
                    yield binder.bind(chunk[0]), None
                    continue
                batch = BatchStatement(BatchType.UNLOGGED, consistency_level=self.write_cl)
                for row in chunk:
                    batch.add(binder.bind(row))
                yield batch, None

    def _primary_replica(self, routing_key: bytes):
        replicas = self.session.cluster.metadata.get_replicas(self.session.keyspace, routing_key)
        return replicas[0].endpoint if replicas else None

    # -- writes ----------------------------------------------------------------
    def write_trades(self, trades: list[Trade], market_buckets: Iterable[tuple[str, int]],
                     user_buckets: Iterable[tuple[str, int]]) -> None:
        """Bucket-index rows first (so a reader never misses a partition that
        holds an acknowledged trade), then the trade rows."""
        self._all([(self.insert_market_bucket, key) for key in market_buckets]
                  + [(self.insert_user_bucket, key) for key in user_buckets])
        by_partition: dict = defaultdict(list)
        by_replica: dict = defaultdict(list)
        replica_of: dict = {}
        for t in trades:
            bucket = trade_bucket(t.executed_at)
            by_partition[(t.market, bucket)].append((
                t.market, bucket, t.executed_at, t.seq, t.trade_id, t.price, t.quantity,
                t.quote_quantity, t.taker_side, t.maker_order_id, t.maker_user_id,
                t.taker_order_id, t.taker_user_id))
            maker_side = "sell" if t.taker_side == "buy" else "buy"
            for row in ((t.maker_user_id, bucket, t.executed_at, t.market, t.trade_id, "maker",
                         t.seq, maker_side, t.price, t.quantity, t.quote_quantity,
                         t.maker_order_id),
                        (t.taker_user_id, bucket, t.executed_at, t.market, t.trade_id, "taker",
                         t.seq, t.taker_side, t.price, t.quantity, t.quote_quantity,
                         t.taker_order_id)):
                partition = (row[0], bucket)
                replica = replica_of.get(partition)
                if replica is None:
                    replica = replica_of[partition] = self._primary_replica(
                        user_partition_key(*partition))
                by_replica[replica].append(row)
        self._all([*self._batches(self.bind_trade, by_partition),
                   *self._batches(self.bind_user_trade, by_replica)])

    def write_candles(self, changes: CandleChanges) -> None:
        statements = []
        for c in changes.upserts:
            statements.append((self.bind_candle.bind((
                c.market, c.interval, partition_start(c.open_time, c.interval), c.open_time,
                c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trade_count,
                c.first.executed_at, c.first.seq, c.first.trade_id,
                c.last.executed_at, c.last.seq, c.last.trade_id,
                json.dumps(c.row(), separators=(",", ":")))), None))
        for market, interval, open_time in changes.deletes:
            statements.append((self.delete_candle, (
                market, interval, partition_start(open_time, interval), open_time)))
        self._all(statements)

    # -- reads: trades ---------------------------------------------------------
    @staticmethod
    def _trade(market: str, row) -> Trade:
        return Trade(market, row[2], row[1], row[3], row[4], row[5], row[6], row[7], row[8],
                     row[9], row[10], row[0])

    def trades_between(self, market: str, start: int, end: int) -> list[Trade]:
        """Every trade of ``market`` in ``[start, end)``; callers bound the range
        (a minute for the aggregator, an hour per step for rebuild)."""
        out = []
        for bucket in range(trade_bucket(start), end, TRADE_BUCKET):
            out.extend(self._trade(market, r) for r in
                       self._rows(self.select_trades_range, (market, bucket, start, end)))
        return out

    def trades_at(self, market: str, executed_at: int) -> list[Trade]:
        return [self._trade(market, r) for r in self._rows(
            self.select_trades_at, (market, trade_bucket(executed_at), executed_at))]

    def latest_trades(self, market: str, start: Optional[int], end: Optional[int],
                      limit: int) -> tuple[list[Trade], Optional[int], bool]:
        """Newest first, up to ``limit + 1`` trades of ``[start, end)`` (the
        extra one tells the caller whether more exist), walking the market's
        non-empty hour buckets from the index, at most
        MAX_TRADE_BUCKETS_PER_READ of them.
        -> (trades, resume_end, exhausted): ``resume_end`` is set when the
        bucket cap stopped the walk; ``exhausted`` when no older trade exists."""
        low = schemas.MIN_TIME_MS if start is None else start
        high = schemas.MAX_TIME_MS if end is None else end
        if high <= low:
            return [], None, True
        buckets = [r[0] for r in self._rows(self.select_market_buckets, (
            market, trade_bucket(low), trade_bucket(high - 1), MAX_TRADE_BUCKETS_PER_READ + 1))]
        out: list[Trade] = []
        for i, bucket in enumerate(buckets):
            if i == MAX_TRADE_BUCKETS_PER_READ:
                return out, bucket + TRADE_BUCKET, False
            rows = self._rows(self.select_trades_page, (
                market, bucket, max(low, bucket), min(high, bucket + TRADE_BUCKET),
                limit + 1 - len(out)))
            out.extend(self._trade(market, r) for r in rows)
            if len(out) > limit:
                return out, None, False
        return out, None, True

    def user_trades(self, user_id: str, start: Optional[int], end: Optional[int],
                    limit: int) -> list[dict]:
        low = schemas.MIN_TIME_MS if start is None else start
        high = schemas.MAX_TIME_MS if end is None else end
        out: list[dict] = []
        buckets = [r[0] for r in self._rows(self.select_user_buckets, (
            user_id, trade_bucket(low), trade_bucket(high - 1), MAX_TRADE_BUCKETS_PER_READ))]
        for bucket in buckets:
            for r in self._rows(self.select_user_trades, (
                    user_id, bucket, max(low, bucket), min(high, bucket + TRADE_BUCKET),
                    limit - len(out))):
                out.append({"executed_at": r[0], "market": r[1], "trade_id": r[2], "role": r[3],
                            "seq": r[4], "side": r[5], "price": format_decimal(r[6]),
                            "quantity": format_decimal(r[7]),
                            "quote_quantity": format_decimal(r[8]), "order_id": r[9]})
            if len(out) >= limit:
                break
        return out

    # -- reads: candles --------------------------------------------------------
    @staticmethod
    def _candle(market: str, interval: str, r) -> Candle:
        return Candle(market, interval, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                      TradeRef(r[8], r[9], r[10]), TradeRef(r[11], r[12], r[13]))

    def candles_between(self, market: str, interval: str, start: int, end: int) -> list[Candle]:
        out = []
        for part in partitions(interval, start, end):
            out.extend(self._candle(market, interval, r) for r in self._rows(
                self.select_candles, (market, interval, part, start, end)))
        return out

    def candle_partition(self, market: str, interval: str, part: int) -> list[list]:
        """A whole partition as compact public rows, oldest first:
        [open_time, open, high, low, close, volume, quote_volume, trade_count].
        From the ``row`` column (one text per candle); from the decimal
        columns if a row lacks it (written before cql/003)."""
        texts = self._rows(self.select_candle_rows, (market, interval, part))
        if all(t[0] is not None for t in texts):
            return json.loads("[" + ",".join(t[0] for t in reversed(texts)) + "]")
        rows = self._rows(self.select_candle_partition, (market, interval, part))
        out = [list(r) for r in reversed(rows)]
        for row in out:
            for i in range(1, 7):
                if "E" in row[i]:      # Java's BigDecimal.toString: 1E-8, 1E+3
                    row[i] = format_decimal(Decimal(row[i]))
        return out

    def candle_before(self, market: str, interval: str, t: int,
                      max_partitions: int = 2) -> Optional[Candle]:
        """The latest candle opening before ``t``, looking back at most
        ``max_partitions`` partitions."""
        part = partition_start(t - 1, interval)
        for _ in range(max_partitions):
            rows = self._rows(self.select_candle_before, (market, interval, part, t))
            if rows:
                return self._candle(market, interval, rows[0])
            part -= INTERVALS[interval].span
        return None

    def ticker_inputs(self, market: str, now: int) -> tuple[list[Candle], Optional[Candle]]:
        """The 1m candles of the ticker window and the latest one before it
        (for ``last`` in a quiet window): at most 2 + 1 + 2 partition reads."""
        start = window_start(now)
        minutes = self.candles_between(market, "1m", start, floor_to(now, MINUTE) + MINUTE)
        previous = self.candle_before(market, "1m", start, max_partitions=1)
        if previous is None:
            # No trade between the start of the day holding start - 1 and the
            # window: the latest trade before the window is the close of the
            # latest daily candle opening before that day.
            day = self.candle_before(market, "1d", floor_to(start - 1, DAY))
            if day is not None:
                previous = Candle(market, "1m", floor_to(day.last.executed_at, MINUTE),
                                  day.close, day.close, day.close, day.close, Decimal(0),
                                  Decimal(0), 0, day.last, day.last)
        return minutes, previous


# ================================================================ Memcached

class HotCache:
    """Memcached with this service's keys (docs/marketdata.md). Never raises:
    an unreachable Memcached reads as a miss and a failed write returns False.

    After a failure the cache is skipped for ``OUTAGE_BACKOFF`` seconds (a
    breaker): a Memcached that hangs instead of refusing connections would
    otherwise cost every call its full 0.5 s timeout, ingestion included.
    """

    OUTAGE_BACKOFF = 1.0

    def __init__(self, cache: Cache):
        self.cache = cache
        cache.client.ignore_exc = False   # failures must be seen to open the breaker
        self._closed_until = 0.0

    def _call(self, fn, default):
        if time.monotonic() < self._closed_until:
            return default
        try:
            return fn()
        except (OSError, MemcacheError, ValueError):
            self._closed_until = time.monotonic() + self.OUTAGE_BACKOFF
            return default

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._closed_until

    def _dump(self, value) -> str:
        return json.dumps(value, separators=(",", ":"))

    def get(self, key: str):
        raw = self._call(lambda: self.cache.client.get(self.cache._key(key)), None)
        return None if raw is None else json.loads(raw)

    def set(self, key: str, value, ttl: int) -> bool:
        return bool(self._call(lambda: self.cache.client.set(
            self.cache._key(key), self._dump(value), expire=ttl, noreply=False), False))

    def add(self, key: str, value, ttl: int) -> bool:
        """Store only if absent: cache fills after a miss use this, so they
        never overwrite what an ingest published meanwhile."""
        return bool(self._call(lambda: self.cache.client.add(
            self.cache._key(key), self._dump(value), expire=ttl, noreply=False), False))

    def delete(self, key: str) -> bool:
        return self._call(lambda: self.cache.client.delete(
            self.cache._key(key), noreply=False) or True, False)

    def get_many(self, keys: list[str]) -> dict:
        full = {self.cache._key(k): k for k in keys}
        found = self._call(lambda: self.cache.client.get_many(list(full)), {})
        return {full[k]: json.loads(v) for k, v in found.items()}

    # -- keys --------------------------------------------------------------------
    @staticmethod
    def candle_version_key(market: str, interval: str, part: int) -> str:
        return f"md1:cv:{market}:{interval}:{part}"

    @staticmethod
    def candle_chunk_key(market: str, interval: str, part: int, version: str) -> str:
        return f"md1:c:{market}:{interval}:{part}:{version}"

    @staticmethod
    def recent_key(market: str) -> str:
        return f"md1:trades:{market}"

    @staticmethod
    def ticker_key(market: str) -> str:
        return f"md1:ticker:{market}"

    @staticmethod
    def depth_key(market: str) -> str:
        return f"md1:depth:{market}"

    @staticmethod
    def bbo_key(market: str) -> str:
        return f"md1:bbo:{market}"

    # -- candles: versioned chunks -----------------------------------------------
    def candle_version(self, market: str, interval: str, part: int) -> Optional[str]:
        """The partition's current version token, created if missing; None
        when Memcached is unreachable."""
        key = self.candle_version_key(market, interval, part)
        version = self.get(key)
        if version is None:
            self.add(key, uuid.uuid4().hex[:12], TTL_CANDLE_VERSION)
            version = self.get(key)
        return version

    def bump_candles(self, market: str, interval: str, part: int) -> bool:
        """After the partition's rows changed: entries under older tokens are
        unreachable from now on."""
        return self.set(self.candle_version_key(market, interval, part),
                        uuid.uuid4().hex[:12], TTL_CANDLE_VERSION)


# ================================================================ ingest

@dataclass
class _Job:
    kind: str                     # "trades" | "rebuild" | "refresh" | "stop"
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

    1. writes the trade rows (idempotent upserts; bucket index rows first);
    2. loads the aggregator state the batch needs (a minute's trades, a
       parent's child candles) -- only for buckets not in memory;
    3. applies the batch to the candle aggregator (pure) and upserts the
       changed candles of all 8 intervals;
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
        self.recent: dict[str, dict] = {}               # market -> {"trades": [...], "complete"}
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
        self.store.write_trades(trades, market_buckets, user_buckets)
        for flag, keys in ((True, market_buckets), (False, user_buckets)):
            for key in keys:
                self._seen_buckets[(flag, key)] = True
        while len(self._seen_buckets) > 200_000:
            self._seen_buckets.popitem(last=False)
        self._load(self.aggregator.missing(trades))
        changes = self.aggregator.apply(trades)
        self.store.write_candles(changes)
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


# ================================================================ depth

class DepthKeeper:
    """The depth books of this process, fed by ``book_changed`` events, and a
    writer greenthread that publishes changed books to Memcached (at most one
    write in flight per market: bursts coalesce into the latest state)."""

    def __init__(self, cache: HotCache):
        self.cache = cache
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


# ================================================================ reads

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

    def _candle_chunk(self, market: str, interval: str, part: int) -> list:
        if self._unpublished(version_key=(market, interval, part)):
            return self.store.candle_partition(market, interval, part)
        version = self.cache.candle_version(market, interval, part)
        if version is not None:
            rows = self.cache.get(self.cache.candle_chunk_key(market, interval, part, version))
            if rows is not None:
                return rows
        rows = self.store.candle_partition(market, interval, part)
        if version is not None:
            self.cache.set(self.cache.candle_chunk_key(market, interval, part, version), rows,
                           TTL_CANDLE_CHUNK)
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


# ================================================================ Nameko glue

class Backend(SharedExtension):
    """The container's single set of long-lived marketdata objects.

    Container config: CASSANDRA_KEYSPACE (tests), CACHE_PREFIX,
    MEMCACHED_PORT (overrides EXCHANGE_MEMCACHED_PORT; tests point the cache at
    a throw-away server), MARKETDATA_MARKETS (extra markets),
    MARKETDATA_TRADE_QUEUE (the trade queue's name; tests use their own).
    """

    clock = staticmethod(lambda: time.time_ns() // 1_000_000)   # the Clock provider sets it

    def setup(self):
        settings = load_settings()
        config = self.container.config
        self.ingested: Counter = Counter()     # valid trade events handled, per market
        if config.get("MEMCACHED_PORT"):
            settings = settings.with_overrides(EXCHANGE_MEMCACHED_PORT=str(config["MEMCACHED_PORT"]))
        self.markets = MarketRegistry.from_config(config)
        self.cluster = make_cluster(settings)
        self.session = self.cluster.connect(
            config.get("CASSANDRA_KEYSPACE", settings["EXCHANGE_CASSANDRA_KEYSPACE"]))
        self.store = CassandraStore(self.session, write_cl=_consistency(settings, "WRITE"),
                                    read_cl=_consistency(settings, "READ"))
        self.cache = HotCache(make_cache(settings, config.get("CACHE_PREFIX", "")))
        self.pipeline = IngestPipeline(self.store, self.cache)
        self.depth = DepthKeeper(self.cache)
        self.reads = MarketReads(self.store, self.cache, self.depth, self.pipeline)

    def start(self):
        self.pipeline.start(self.container.spawn_managed_thread)
        self.depth.start(self.container.spawn_managed_thread)

    def stop(self):
        self.pipeline.stop()
        self.depth.stop()
        self.cache.cache.client.close()
        self.cluster.shutdown()

    def kill(self):
        self.cache.cache.client.close()
        self.cluster.shutdown()


class TradeEvents(BatchConsumerProvider):
    """``trade_executed`` from the matching engines, consumed in batches, in
    publish order, by one process at a time (a quorum queue with a single
    active consumer; other instances are hot standbys). That makes this
    process the single writer of the candles (docs/marketdata.md). A batch is
    acknowledged only once its trades and every candle they touch are in
    Cassandra; if that fails, the batch is redelivered (all writes are
    idempotent). Invalid events are logged and dropped, never retried."""

    queue = "marketdata.trades"
    exchange = "matching.events"
    routing_keys = ["trade_executed"]
    batch = 1000

    backend = Backend()

    def setup_consumer(self):
        self.queue = self.container.config.get("MARKETDATA_TRADE_QUEUE", type(self).queue)

    def handle(self, batch) -> None:
        trades = []
        for _routing_key, _message_id, body in batch:
            try:
                trades.append(schemas.trade_from_event(body, self.backend.markets))
            except (InvalidEvent, UnknownMarket) as exc:
                log.error("trade_executed dropped: %s", exc)
        if trades:
            self.backend.pipeline.record(trades, now=self.backend.clock())
            self.backend.ingested.update(t.market for t in trades)


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
