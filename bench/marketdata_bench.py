"""Market-data benchmark on the real stack (Cassandra, Memcached, RabbitMQ).

    PYTHONPATH=. .venv/bin/python bench/marketdata_bench.py            # defaults below
    PYTHONPATH=. .venv/bin/python bench/marketdata_bench.py --trades 20000 --reads 100

1. ``get_candles`` for one day of 1m candles (1,440 candles, a full UTC day
   ingested first), ``--reads`` calls each: cache hits (the version token read
   from Memcached, the rows from the process's decoded copy for that token),
   cache hits with the rows fetched and decoded from Memcached, and reads
   forced to Cassandra (the partition's cache version is bumped before each,
   as an ingest would); through the service's read path (reads.MarketReads)
   and through Nameko RPC on RabbitMQ. Run first, while Cassandra is quiet
   (an ingest run leaves flushes and compactions behind it).
2. Ingest, service pipeline: ``--trades`` synthetic trades of one fresh market
   (a random walk around 64,000 USDT, 1,000 users, 5 trades per millisecond of
   market time) handed to the service's ingest pipeline
   (ingest.IngestPipeline.record) in batches of ``--batch``, one batch at a
   time, exactly as the trade consumer does. Timed until the last call
   returned, i.e. until every trade row (by market, and by user for both
   sides) and every candle of the 8 intervals is acknowledged by Cassandra and
   the cache is published. The rows are counted back afterwards.
   ``--reads 0``, ``--trades 0``, ``--events 0`` skip a part.
3. Ingest, end to end: ``--events`` trade_executed messages are published on
   RabbitMQ into the service's trade queue first, then a service container
   is started and timed until it has recorded them all (consume, validate,
   write, candles, cache, ack).

Data goes to the test keyspace and vhost under fresh market names and is
deleted at the end (partition deletes). Figures are recorded in bench/README.md.
"""
import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
import warnings  # noqa: E402
from dataclasses import replace  # noqa: E402
from decimal import Decimal  # noqa: E402

warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cassandra  # noqa: E402

from services.common.cache import make_cache  # noqa: E402
from services.common.cassandra import make_cluster  # noqa: E402
from services.common.config import load_settings  # noqa: E402
from services.marketdata.candles import CHAIN, DAY, MINUTE, floor_to, partition_start  # noqa: E402
from services.marketdata.models import Trade  # noqa: E402
from services.marketdata.depthkeeper import DepthKeeper  # noqa: E402
from services.marketdata.hotcache import HotCache  # noqa: E402
from services.marketdata.ingest import IngestPipeline  # noqa: E402
from services.marketdata.reads import MarketReads  # noqa: E402
from services.marketdata.storage import (TRADE_BUCKET, CassandraStore, consistency,  # noqa: E402
                                         trade_bucket)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}, load avg {load[0]:.2f} {load[1]:.2f}")


def synthetic_trades(market: str, count: int, start_ms: int, per_ms: int, seed: int = 1):
    rnd = random.Random(seed)
    price = 6_400_000  # cents
    users = [f"user-{i:04d}" for i in range(1000)]
    out = []
    for n in range(1, count + 1):
        price = max(100, price + rnd.choice((-1, 0, 1)) * rnd.randint(1, 50))
        p = Decimal(price).scaleb(-2)
        q = Decimal(rnd.randint(1, 200_000)).scaleb(-5)
        maker, taker = rnd.sample(users, 2)
        out.append(Trade(market, f"{market}-{n}", n, p, q, p * q, rnd.choice(("buy", "sell")),
                         n * 2, maker, n * 2 + 1, taker, start_ms + (n - 1) // per_ms))
    return out


def ingest(pipeline: IngestPipeline, trades, batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(trades), batch):
        chunk = trades[i:i + batch]
        pipeline.record(chunk, now=chunk[-1].executed_at)
    return time.perf_counter() - started


def event(t: Trade) -> dict:
    return {"market": t.market, "seq": t.seq, "trade_id": t.trade_id, "price": str(t.price),
            "quantity": str(t.quantity), "quote_quantity": str(t.quote_quantity),
            "taker_side": t.taker_side, "maker_order_id": t.maker_order_id,
            "maker_user_id": t.maker_user_id, "taker_order_id": t.taker_order_id,
            "taker_user_id": t.taker_user_id, "executed_at": t.executed_at}


def count_rows(session, market: str, start: int, end: int) -> tuple[int, int]:
    rows = 0
    for bucket in range(trade_bucket(start), end + 1, TRADE_BUCKET):
        rows += session.execute("SELECT count(*) FROM trades_by_market WHERE market=%s AND bucket=%s",
                                (market, bucket), timeout=60).one()[0]
    candle_trades = 0
    for part in {partition_start(t, "1m") for t in (start, end)}:
        for r in session.execute("SELECT trade_count FROM candles WHERE market=%s AND interval='1m' "
                                 "AND bucket=%s", (market, part)):
            candle_trades += r.trade_count
    return rows, candle_trades


def footprint(trades) -> tuple:
    """What ``cleanup`` deletes, without keeping the trades themselves alive."""
    return ({trade_bucket(t.executed_at) for t in trades},
            {(u, trade_bucket(t.executed_at)) for t in trades for u in (t.maker_user_id, t.taker_user_id)},
            {(i, partition_start(t.executed_at, i)) for t in trades for i in CHAIN})


def cleanup(session, market: str, written: tuple):
    buckets, users, parts = written
    for b in buckets:
        session.execute("DELETE FROM trades_by_market WHERE market=%s AND bucket=%s", (market, b))
    session.execute("DELETE FROM trade_buckets_by_market WHERE market=%s", (market,))
    for u, b in users:
        session.execute("DELETE FROM trades_by_user WHERE user_id=%s AND bucket=%s", (u, b))
    for interval, part in parts:
        session.execute("DELETE FROM candles WHERE market=%s AND interval=%s AND bucket=%s",
                        (market, interval, part))


def timed(fn, n):
    out = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def show(label, samples):
    print(f"  {label:<46} p50 {percentile(samples, 50):7.2f} ms   p99 {percentile(samples, 99):7.2f} ms"
          f"   max {max(samples):7.2f} ms   (n={len(samples)})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--depth", type=int, default=None,
                        help="end to end: batches in flight (MARKETDATA_TRADE_DEPTH)")
    parser.add_argument("--keep", action="store_true", help="do not delete the benchmark data")
    args = parser.parse_args()

    settings = load_settings()
    settings = settings.with_overrides(
        EXCHANGE_CASSANDRA_KEYSPACE=settings["EXCHANGE_CASSANDRA_KEYSPACE"] + settings.test_suffix,
        EXCHANGE_RABBITMQ_VHOST=settings["EXCHANGE_RABBITMQ_VHOST"] + settings.test_suffix)
    keyspace = settings["EXCHANGE_CASSANDRA_KEYSPACE"]
    print(f"machine: {machine()}")
    print(f"stack:   Cassandra {settings['EXCHANGE_CASSANDRA_VERSION']} (heap {settings['EXCHANGE_CASSANDRA_HEAP']}, "
          f"keyspace {keyspace}, CL {settings['EXCHANGE_CASSANDRA_CONSISTENCY']}), Memcached, RabbitMQ, same host")
    cluster = make_cluster(settings)
    session = cluster.connect(keyspace)
    print(f"driver:  cassandra-driver {cassandra.__version__}, {cluster.connection_class.__name__}, "
          f"protocol v{cluster.protocol_version}")
    store = CassandraStore(session, consistency(settings, "WRITE"), consistency(settings, "READ"))
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    cache = HotCache(make_cache(settings, prefix))
    tag = uuid.uuid4().hex[:6].upper()
    markets = {"ingest": f"BI{tag}-USDT", "day": f"BD{tag}-USDT", "events": f"BE{tag}-USDT"}
    # a trade exchange and queue of the benchmark's own: the test vhost is
    # shared, and other tests' events must not reach (or be reached by) it
    queue = f"marketdata.trades.bench-{tag.lower()}"
    trade_exchange = f"marketdata.bench-{tag.lower()}.events"
    now = int(time.time() * 1000)
    written = {}
    config = settings.nameko_config()
    test_db = settings["EXCHANGE_POSTGRES_DB"] + settings.test_suffix
    config.update({"CASSANDRA_KEYSPACE": keyspace, "CACHE_PREFIX": prefix,
                   "MARKETDATA_TRADE_QUEUE": queue, "MARKETDATA_TRADE_EXCHANGE": trade_exchange,
                   "POSTGRES_DB": test_db})
    # The benchmark's markets are listed in the test database's registry, as
    # an operator would list them (journaled, announced); as delisted, so that
    # no matching process hosts an engine for them.
    import psycopg
    from services.registry import listing
    with psycopg.connect(settings.postgres_dsn(test_db)) as conn:
        for m in markets.values():
            base = m.split("-")[0]
            listing.list_asset(conn, "bench", {
                "symbol": base, "scale": 8, "chain": "bitcoin", "confirmations": 1,
                "withdrawal_fee": "0", "min_withdrawal": "0", "daily_withdrawal_limit": "1"})
            listing.list_market(conn, "bench", {
                "symbol": m, "base": base, "quote": "USDT", "tick_size": "0.01",
                "lot_size": "0.00001", "maker_fee": "0", "taker_fee": "0", "status": "delisted"})
    if args.depth:
        config["MARKETDATA_TRADE_DEPTH"] = args.depth
    from kombu import Connection, Exchange, Producer, Queue
    from nameko.containers import ServiceContainer
    from nameko.standalone.rpc import ServiceRpcProxy

    from services.common.outbox import command_queue
    from services.marketdata.providers import Backend
    from services.marketdata.service import MarketDataService
    pipeline = IngestPipeline(store, cache)
    pipeline.start()
    try:
        # a name of its own: the test vhost is shared, Nameko routes RPC by name
        service_cls = type("MarketDataService", (MarketDataService,),
                           {"name": f"marketdata_bench_{tag.lower()}"})
        # ------------------------------------------------------------ reads
        # (first, on a quiet Cassandra: the ingest runs leave flushes and
        # compactions behind them for a while)
        if args.reads:
            day = floor_to(now, DAY) - 2 * DAY
            day_trades = synthetic_trades(markets["day"], 1440 * 3, day, 1, seed=3)
            day_trades = [replace(t, executed_at=day + (i // 3) * MINUTE + (i % 3) * 1000)
                          for i, t in enumerate(day_trades)]
            written["day"] = footprint(day_trades)
            ingest(pipeline, day_trades, args.batch)
            reads = MarketReads(store, cache, DepthKeeper(cache))
            market = markets["day"]
            part = partition_start(day, "1m")

            def read():
                result = reads.candles(market, "1m", day, day + DAY, 1440, now)
                assert len(result["candles"]) == 1440, len(result["candles"])

            def fetched():
                reads._decoded.clear()
                read()

            def cold():
                cache.bump_candles(market, "1m", part)
                read()

            for fn in (read, fetched, cold):
                timed(fn, 20)                                 # warm-up
            print("\nget_candles(1m, one UTC day = 1,440 candles), service read path (reads.MarketReads):")
            show("cache hit: version check + local decoded copy", timed(read, args.reads))
            show("cache hit: rows fetched from Memcached", timed(fetched, args.reads))
            show("from Cassandra (cache version bumped first)", timed(cold, args.reads))

            container = ServiceContainer(service_cls, config)
            container.start()
            try:
                with ServiceRpcProxy(service_cls.name, config, timeout=30) as rpc:
                    def rpc_read():
                        assert len(rpc.get_candles(market, "1m", day, day + DAY, 1440)["candles"]) == 1440

                    def rpc_cold():
                        cache.bump_candles(market, "1m", part)
                        rpc_read()

                    timed(rpc_read, 20)
                    print("get_candles, same request over Nameko RPC (RabbitMQ round trip, JSON;"
                          " client and service in this one process):")
                    show("cache hit", timed(rpc_read, args.reads))
                    show("from Cassandra (cache version bumped first)", timed(rpc_cold, args.reads))
            finally:
                container.stop()

        # ------------------------------------------------------------ ingest, pipeline
        if args.trades:
            warm = synthetic_trades(markets["ingest"], 5000, now - 600_000, 5, seed=2)
            ingest(pipeline, warm, args.batch)         # connections, code paths, first state loads
            trades = synthetic_trades(markets["ingest"], args.trades, now - 300_000, 5)
            written["ingest"] = footprint(warm + trades)
            elapsed = ingest(pipeline, trades, args.batch)
            rows, candle_trades = count_rows(session, markets["ingest"], trades[0].executed_at,
                                             trades[-1].executed_at)
            print(f"\ningest, service pipeline: {len(trades):,} trades in batches of {args.batch:,}")
            print(f"  {len(trades) / elapsed:,.0f} trades/s   ({elapsed:.2f} s; per trade: 1 row by market, "
                  f"2 rows by user; per batch: the 8 intervals' candles, cache publication)")
            # The warm-up's trades may share the counted buckets (and are in the candles).
            first, last = trade_bucket(trades[0].executed_at), trade_bucket(trades[-1].executed_at)
            expected_rows = sum(first <= trade_bucket(t.executed_at) <= last for t in warm + trades)
            print(f"  check: {rows:,} trades_by_market rows in the timed trades' buckets (expected "
                  f"{expected_rows:,}: {len(trades):,} timed + the warm-up's there), 1m candles count "
                  f"{candle_trades - len(warm):,} timed trades (expected {len(trades):,})")
            del warm, trades

        # ------------------------------------------------------------ ingest, end to end
        if args.events:
            events = synthetic_trades(markets["events"], args.events, now - 200_000, 5, seed=4)
            written["events"] = footprint(events)
            with Connection(config["AMQP_URI"]) as amqp:
                channel = amqp.default_channel
                q = command_queue(queue)(channel)
                q.declare()
                exchange = Exchange(trade_exchange, type="topic", durable=True)(channel)
                exchange.declare()
                q.bind_to(exchange, routing_key="trade_executed")
                producer = Producer(channel, exchange=exchange, serializer="json")
                for t in events:
                    producer.publish(event(t), routing_key="trade_executed", delivery_mode=2,
                                     retry=True)
                while q.queue_declare(passive=True).message_count < len(events):
                    time.sleep(0.1)
            # the service process holds none of this: neither should the timed one
            # (its collector would walk 50,000 trades at every full collection)
            total, first_at, last_at = len(events), events[0].executed_at, events[-1].executed_at
            del events, t
            gc.collect()
            print(f"\ningest, end to end: {total:,} trade_executed events waiting in RabbitMQ, "
                  f"consumed by a service container (batches of up to 1,000, "
                  f"{config.get('MARKETDATA_TRADE_DEPTH', 'default')} in flight)", flush=True)
            container = ServiceContainer(service_cls, config)
            started, cpu = time.perf_counter(), time.process_time()
            container.start()
            try:
                backend = container.shared_extensions[Backend]
                first = None
                while backend.ingested[markets["events"]] < total:
                    if first is None and backend.ingested[markets["events"]]:
                        first = (time.perf_counter(), backend.ingested[markets["events"]])
                    eventlet.sleep(0.01)
                elapsed = time.perf_counter() - started
                cpu = time.process_time() - cpu
                steady = (None if first is None or first[1] == total
                          else (total - first[1]) / (time.perf_counter() - first[0]))
            finally:
                container.stop()
                with Connection(config["AMQP_URI"]) as amqp:
                    command_queue(queue)(amqp.default_channel).delete()
                    Exchange(trade_exchange)(amqp.default_channel).delete()
            rows, candle_trades = count_rows(session, markets["events"], first_at, last_at)
            print(f"  {total / elapsed:,.0f} trades/s   ({elapsed:.2f} s incl. container start; "
                  + (f"{steady:,.0f} trades/s after the first batch; " if steady else "")
                  + f"{rows:,} rows counted back, 1m candles count {candle_trades:,} trades)")
            print(f"  this process's CPU: {cpu:.2f} s = {cpu / elapsed:.0%} of a core, "
                  f"{cpu / total * 1e6:,.0f} us per trade")
    finally:
        pipeline.stop()
        with Connection(config["AMQP_URI"]) as amqp:       # Nameko leaves RPC queues behind
            Queue(f"rpc-marketdata_bench_{tag.lower()}")(amqp.default_channel).delete()
        if not args.keep:
            for key, footprints in written.items():
                cleanup(session, markets[key], footprints)
        cluster.shutdown()


if __name__ == "__main__":
    main()
