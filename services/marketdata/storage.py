"""Cassandra for marketdata: prepared statements, the fast write path, the
queries (consistency levels and partitioning: docs/marketdata.md, cql/README.md)."""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Iterable, Optional

from cassandra import ConsistencyLevel, cqltypes
from cassandra.cluster import EXEC_PROFILE_DEFAULT
from cassandra.concurrent import execute_concurrent
from cassandra.marshal import int32_pack, int64_pack
from cassandra.query import BatchStatement, BatchType, BoundStatement, tuple_factory

from services.common.config import Settings
from services.marketdata import schemas
from services.marketdata.candles import (DAY, HOUR, INTERVALS, MINUTE, CandleChanges, floor_to,
                                         partition_start, partitions)
from services.marketdata.models import Candle, Trade, TradeRef, format_decimal
from services.marketdata.ticker import window_start

log = logging.getLogger(__name__)

TRADE_BUCKET = HOUR            # trades_by_market / trades_by_user partition span
MAX_TRADE_BUCKETS_PER_READ = 24
# Candle rows per unlogged batch: a market's 8 intervals (one flush), about
# 3 KiB, under Cassandra's batch_size_warn_threshold (5 KiB).
CANDLES_PER_BATCH = 8


class _ReplicaBatchWarning(logging.Filter):
    """Cassandra warns about every unlogged batch spanning more partitions
    than ``unlogged_batch_across_partitions_warn_threshold`` (default 10) and
    the driver logs each warning. trades_by_user rows are batched by replica
    on purpose (CassandraStore._batches); only that warning is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Unlogged batch covering" not in record.getMessage()


logging.getLogger("cassandra.protocol").addFilter(_ReplicaBatchWarning())


def trade_bucket(t: int) -> int:
    return t - t % TRADE_BUCKET

def user_partition_key(user_id: str, bucket: int) -> bytes:
    """trades_by_user's serialized partition key (user_id text, bucket
    timestamp), as the driver would compute it from a bound statement: each
    component length-prefixed and followed by a zero byte."""
    user = user_id.encode()
    return b"".join((len(user).to_bytes(2, "big"), user, b"\x00",
                     b"\x00\x08", bucket.to_bytes(8, "big", signed=True), b"\x00"))


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
        """``bytes`` values are taken as already serialized (no column of
        these tables is a blob): the trade rows share their amounts and
        times, serialized once per trade (``CassandraStore.write_trades``)."""
        bound = BoundStatement(self.statement)
        bound.raw_values = values
        version = self.protocol_version
        bound.values = [v if v is None or type(v) is bytes else serialize(v, version)
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


def consistency(settings: Settings, role: str) -> int:
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

    def _batches(self, binder: Optional["_Binder"], groups: dict, rows: int = 0):
        """Unlogged batches of at most ``batch_rows`` rows; each batch holds
        one group: rows of one partition (Cassandra applies the batch as a
        single mutation), or rows whose partitions
        share a primary replica (the batch is routed to that replica, which
        coordinates only the other replicas of its own rows). A batch costs
        one request instead of one per row; unlogged, it is not atomic and
        need not be: every row is an idempotent upsert. ``binder`` None:
        the groups hold bound statements already; ``rows``: at most that
        many per batch instead of ``batch_rows``."""
        bind = binder.bind if binder is not None else (lambda bound: bound)
        size = rows or self.batch_rows
        for members in groups.values():
            for i in range(0, len(members), size):
                chunk = members[i:i + size]
                if len(chunk) == 1:
                    yield bind(chunk[0]), None
                    continue
                batch = BatchStatement(BatchType.UNLOGGED, consistency_level=self.write_cl)
                for row in chunk:
                    batch.add(bind(row))
                yield batch, None

    def _primary_replica(self, routing_key: bytes):
        replicas = self.session.cluster.metadata.get_replicas(self.session.keyspace, routing_key)
        return replicas[0].endpoint if replicas else None

    # -- writes ----------------------------------------------------------------
    def write_trades(self, trades: list[Trade], market_buckets: Iterable[tuple[str, int]],
                     user_buckets: Iterable[tuple[str, int]],
                     candles: Optional[CandleChanges] = None) -> None:
        """Trade rows (by market, by user), the new bucket-index rows and,
        if given, candle changes, all in one wave of concurrent requests.
        Nothing here is acknowledged before every request succeeded, so a
        reader can only find an index row missing for a trade not yet acked."""
        index = ([(self.insert_market_bucket, key) for key in market_buckets]
                 + [(self.insert_user_bucket, key) for key in user_buckets])
        by_partition: dict = defaultdict(list)
        by_replica: dict = defaultdict(list)
        replica_of: dict = {}
        decimal, stamp = _DecimalColumn.serialize, _TimestampColumn.serialize
        version = self.bind_trade.protocol_version
        for t in trades:
            bucket = trade_bucket(t.executed_at)
            # each amount and time goes into three rows: serialized once
            price, quantity, quote = (decimal(t.price, version), decimal(t.quantity, version),
                                      decimal(t.quote_quantity, version))
            at, hour = stamp(t.executed_at, version), stamp(bucket, version)
            by_partition[(t.market, bucket)].append((
                t.market, hour, at, t.seq, t.trade_id, price, quantity,
                quote, t.taker_side, t.maker_order_id, t.maker_user_id,
                t.taker_order_id, t.taker_user_id))
            maker_side = "sell" if t.taker_side == "buy" else "buy"
            for row in ((t.maker_user_id, hour, at, t.market, t.trade_id, "maker",
                         t.seq, maker_side, price, quantity, quote, t.maker_order_id),
                        (t.taker_user_id, hour, at, t.market, t.trade_id, "taker",
                         t.seq, t.taker_side, price, quantity, quote, t.taker_order_id)):
                partition = (row[0], bucket)
                replica = replica_of.get(partition)
                if replica is None:
                    replica = replica_of[partition] = self._primary_replica(
                        user_partition_key(*partition))
                by_replica[replica].append(row)
        self._all([*index, *self._batches(self.bind_trade, by_partition),
                   *self._batches(self.bind_user_trade, by_replica),
                   *(self._candle_statements(candles) if candles is not None else ())])

    def write_candles(self, changes: CandleChanges) -> None:
        self._all(self._candle_statements(changes))

    def _candle_statements(self, changes: CandleChanges) -> list:
        """The upserts in unlogged batches per primary replica, as the
        trades by user: a flush changes the candles of all 8 intervals, one
        partition each, and one request per candle was most of marketdata's
        requests (and of Cassandra's CPU, which the live push shares)."""
        by_replica: dict = defaultdict(list)
        for c in changes.upserts:
            bound = self.bind_candle.bind((
                c.market, c.interval, partition_start(c.open_time, c.interval), c.open_time,
                c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trade_count,
                c.first.executed_at, c.first.seq, c.first.trade_id,
                c.last.executed_at, c.last.seq, c.last.trade_id,
                json.dumps(c.row(), separators=(",", ":"))))
            by_replica[self._primary_replica(bound.routing_key)].append(bound)
        statements = list(self._batches(None, by_replica, CANDLES_PER_BATCH))
        for market, interval, open_time in changes.deletes:
            statements.append((self.delete_candle, (
                market, interval, partition_start(open_time, interval), open_time)))
        return statements

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
