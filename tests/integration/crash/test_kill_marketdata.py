"""kill -9 of a real marketdata process mid-ingest: no trade lost, none counted twice.

The process is `nameko run` of the marketdata service (services.marketdata.service,
under a Nameko name of its own: the test vhost is shared, and RPC routes by
name) on the test vhost and keyspace, with a CACHE_PREFIX of its own, fed
from a trade queue and exchange of the test's own (as the marketdata
integration tests are). Two fresh markets are listed in the registry.

A seeded stream of engine batches (``engine_batch.trades`` messages, as the
matching engine publishes them, services/matching/wire.py: one or two
commands a batch, one to three fills a command), each market's in time
order, over the last 26 hours -- most in the last half hour, so minutes hold
dozens of trades, the rest spread over hours and days -- is queued up front.
Then the process is started and killed with SIGKILL ``KILLS`` times, each
time once it has stored trades no process before it had stored (a restarted
process first rewrites the redelivered ones) and a seeded random 0-200 ms
later, and started again. "Mid ingest" is checked, not hoped for: at every
kill the broker gave back messages the process held unacknowledged (up to
its prefetch, ``batch * (depth + 1)`` = 800 messages); typically the first
kill lands after a flush wrote its trades and candles but before its ack.

After the queue drained:

* every trade is in ``trades_by_market`` exactly as published, once (and
  nothing else of the markets is), in ``trades_by_user`` as its maker's and
  its taker's row, and the bucket-index tables list exactly the trades'
  hours;
* every candle of every interval in ``candles`` (columns and the public
  ``row``) equals the direct computation from the published trades
  (``candles_from_trades``, the pure oracle; never the service's output),
  and no other candle exists;
* what the service serves from memory and Memcached agrees: the ticker
  (``compute_ticker`` over the oracle's 1m candles), the latest trades, the
  candles of every interval (versioned cache partitions);
* once stopped, the queue holds nothing: every message was acknowledged.

The test can fail (both tried as temporary edits in a copy of the tree, not
committed): with ``TradeEvents.handle`` acknowledging a batch before its
trades are durable (handing them to the pipeline in a greenthread of their
own), "825 of 3595 trades ... never stored"; with ``MinuteBucket.add``
counting a trade id it already holds, "1m: 175 of 197 candles differ" (the
redelivered trades counted twice).

CRASH_SEED changes the stream and the kill moments.
"""
import heapq
import json
import os
import random
import sys
import time
import uuid
from collections import defaultdict
from contextlib import ExitStack
from decimal import Decimal as D

import eventlet
import pytest
import yaml
from kombu import Connection, Exchange, Producer, Queue
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import catalogue
from services.common.cassandra import make_cluster
from services.common.config import REPO_ROOT
from services.common.events import ENGINE_BATCH, TRADES_AUDIENCE
from services.common.outbox import command_queue
from services.marketdata.candles import (CHAIN, INTERVALS, bucket_start, candles_from_trades,
                                         partitions)
from services.marketdata.markets import MarketRegistry
from services.marketdata.models import Candle, TradeRef
from services.marketdata.reads import CANDLE_COLUMNS
from services.marketdata.schemas import CANDLES_MAX_LIMIT, trade_from_event
from services.marketdata.storage import trade_bucket
from services.marketdata.ticker import compute_ticker
from stack.proc import Process
from tests.integration.amqp_kit import confirmed_connection, publish_confirmed
from tests.integration.crash.test_kill_processes import kill9
from tests.integration.orders.conftest import wait_for
from tests.integration.registry_kit import throwaway_market

SEED = int(os.environ.get("CRASH_SEED", "20261207"))
MARKETS = 2
MESSAGES = 3200            # engine batches, over all markets
USERS = 5                  # per market
KILLS = 4
SECOND, MINUTE, HOUR = 1000, 60_000, 3_600_000

SERVICE_MODULE = """
from services.marketdata.service import MarketDataService


class MarketDataUnderKill(MarketDataService):
    name = {name!r}
"""


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def markets(test_settings):
    with ExitStack() as stack:
        yield [stack.enter_context(throwaway_market(test_settings)) for _ in range(MARKETS)]


@pytest.fixture
def trade_route(nameko_config):
    """A trade exchange and queue of the test's own (see the marketdata
    conftest's ``trade_route`` for why), declared and bound before anything is
    published, so the stream queues up before the process starts."""
    tag = uuid.uuid4().hex[:8]
    queue_name, exchange_name = f"marketdata.trades.kill-{tag}", f"marketdata.kill-{tag}.events"
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        channel = amqp.default_channel
        exchange = Exchange(exchange_name, type="topic", durable=True)(channel)
        exchange.declare()
        queue = command_queue(queue_name)(channel)
        queue.declare()
        queue.bind_to(exchange, routing_key=TRADES_AUDIENCE)
    yield queue_name, exchange_name
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        command_queue(queue_name)(amqp.default_channel).delete()
        Exchange(exchange_name)(amqp.default_channel).delete()


@pytest.fixture
def marketdata(nameko_config, test_settings, test_run_dir, trade_route):
    """The marketdata process (not started): ``(process, service name, config)``."""
    name = f"marketdata_kill{uuid.uuid4().hex[:8]}"
    run = test_run_dir / "crash-test-marketdata"
    run.mkdir(parents=True, exist_ok=True)
    # Files of this run's own (module, config, pid): runs may overlap.
    module = run / f"{name}.py"
    module.write_text(SERVICE_MODULE.format(name=name))
    config = {**nameko_config, "max_workers": 20,
              "MARKETDATA_TRADE_QUEUE": trade_route[0],
              "MARKETDATA_TRADE_EXCHANGE": trade_route[1],
              # No engine here to take depth snapshots from.
              "MARKETDATA_DEPTH_RESYNC": False}
    config_file = run / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {**test_settings.values, "PYTHONPATH": f"{REPO_ROOT}:{run}", "PYTHONUNBUFFERED": "1"}
    proc = Process(name="marketdata-kill", argv=[
        sys.executable, "-m", "nameko", "run", "--config", str(config_file),
        f"{name}:MarketDataUnderKill"],
        log=run / "marketdata.log", pid_file=run / f"{name}.pid", env=env, cwd=REPO_ROOT)
    yield proc, name, config
    proc.stop(timeout=10)
    for path in (module, config_file):
        path.unlink(missing_ok=True)
    with Connection(nameko_config["AMQP_URI"]) as amqp:   # Nameko leaves its RPC queue
        Queue(f"rpc-{name}")(amqp.default_channel).delete()


@pytest.fixture
def cql(test_settings):
    cluster = make_cluster(test_settings)
    session = cluster.connect(test_settings["EXCHANGE_CASSANDRA_KEYSPACE"])
    yield session
    cluster.shutdown()


# ---------------------------------------------------------------- the stream

def engine_batches(rng: random.Random, markets: list[str], now: int) -> list[dict]:
    """``MESSAGES`` engine_batch.trades payloads, each market's in time order
    (as its engine publishes them), the markets interleaved by time."""
    per_market = []
    for market in markets:
        count = MESSAGES // len(markets)
        dense = int(count * 0.85)
        # The last half hour dense, the 26 hours before it sparse: minutes
        # with many trades, and hours, days (and a week boundary on Sundays).
        times = sorted([rng.randint(now - 30 * MINUTE, now - 30 * SECOND) for _ in range(dense)]
                       + [rng.randint(now - 26 * HOUR, now - 31 * MINUTE)
                          for _ in range(count - dense)])
        users = [f"{market}-u{i}" for i in range(USERS)]
        price, seq, trade_no, order_no, messages = D("100.00"), 0, 0, 0, []
        for at in times:
            first_seq, events = seq + 1, []
            for _command in range(rng.randint(1, 2)):
                seq += 1
                order_no += 1
                taker, side = order_no, rng.choice(["buy", "sell"])
                taker_user = rng.choice(users)
                for _fill in range(rng.randint(1, 3)):
                    trade_no += 1
                    order_no += 1
                    price = max(D("1.00"), price + D(rng.randint(-50, 50)) / 100)
                    qty = D(rng.randint(1, 20_000)) / 10_000
                    maker_user = rng.choice([u for u in users if u != taker_user])
                    tid = f"{market}-{trade_no}"
                    events.append(["trade_executed", tid, {
                        "market": market, "seq": seq, "trade_id": tid, "price": str(price),
                        "quantity": str(qty), "quote_quantity": str(price * qty),
                        "taker_side": side, "maker_order_id": order_no,
                        "maker_user_id": maker_user, "taker_order_id": taker,
                        "taker_user_id": taker_user, "executed_at": at}])
            messages.append(ENGINE_BATCH.build(market=market, first_seq=first_seq, last_seq=seq,
                                               at=at, events=events))
        per_market.append(messages)
    return list(heapq.merge(*per_market, key=lambda m: m["at"]))


def publish(config: dict, batches: list[dict]) -> None:
    with confirmed_connection(config["AMQP_URI"]) as amqp:
        exchange = Exchange(config["MARKETDATA_TRADE_EXCHANGE"], type="topic", durable=True)
        producer = Producer(amqp.default_channel, exchange=exchange, serializer="json")
        for body in batches:
            publish_confirmed(producer, body, routing_key=TRADES_AUDIENCE, delivery_mode=2,
                              message_id=f"{body['market']}:{body['first_seq']}-"
                                         f"{body['last_seq']}:trades")


# ---------------------------------------------------------------- the test

def test_marketdata_killed_mid_ingest_loses_no_trade_and_counts_none_twice(
        markets, trade_route, marketdata, cql, nameko_config):
    rng = random.Random(SEED)
    proc, service, config = marketdata
    now = time.time_ns() // 1_000_000
    batches = engine_batches(rng, markets, now)
    registry = MarketRegistry.from_catalogue(catalogue.current())
    trades = [trade_from_event(payload, registry)
              for body in batches for _, _, payload in body["events"]]
    publish(config, batches)

    with Connection(nameko_config["AMQP_URI"]) as amqp:
        queue = command_queue(trade_route[0])(amqp.default_channel)

        def waiting() -> tuple[int, int]:
            ok = queue.queue_declare(passive=True)
            return ok.message_count, ok.consumer_count

        assert waiting() == (len(batches), 0)
        # Progress is read off the hour partitions of the recent, dense part
        # of the stream (a few count queries a poll).
        recent = {(t.market, trade_bucket(t.executed_at)) for t in trades
                  if t.executed_at >= now - 30 * MINUTE}
        in_recent = sum((t.market, trade_bucket(t.executed_at)) in recent for t in trades)

        def stored() -> int:
            return sum(cql.execute("SELECT count(*) FROM trades_by_market WHERE market = %s "
                                   "AND bucket = %s", key).one()[0] for key in recent)

        kills, progress, started = [], 0, time.monotonic()
        proc.start()
        for _ in range(KILLS):
            wait_for(lambda: waiting()[1] == 1, 90, "the process to consume")
            # Killed while writing: once it stored trades no process before
            # it had stored (its first flushes after a restart rewrite the
            # redelivered ones), then at a seeded random moment. Not if it
            # stores nothing more: what is missing then is reported below.
            if not within(lambda: stored() > progress, 30):
                break
            eventlet.sleep(rng.uniform(0, 0.2))
            before = waiting()[0]
            kill9(proc)
            wait_for(lambda: waiting()[1] == 0, 30, "the broker to drop the dead consumer")
            after, progress = waiting()[0], stored()
            kills.append((progress, before, after, round(time.monotonic() - started, 1)))
            proc.start()
        print(f"{len(trades)} trades in {len(batches)} engine batches; kills (recent trades "
              f"stored after the kill, of {in_recent}; messages ready at the kill, after it; "
              f"seconds): {kills}")

        by_market = defaultdict(list)
        for t in trades:
            by_market[t.market].append(t)
        wait_for(lambda: waiting()[0] == 0, 90, "the queue to drain")
        eventually(lambda: [assert_all_stored(cql, m, ts) for m, ts in by_market.items()], 60)

        # Every trade once in every table, every candle as computed (a last
        # redelivered flush may still be rewriting the same rows: eventually).
        oracle = candles_from_trades(trades)
        for market, mine in by_market.items():
            eventually(lambda: assert_trades_stored_once(cql, market, mine), 15)
            eventually(lambda: assert_candles_equal(cql, market, mine, {
                k: c for k, c in oracle.items() if k[0] == market}), 15)

        # What the service answers from memory and Memcached.
        with ClusterRpcProxy(config, timeout=30) as rpc:
            for market in markets:
                minutes = [c for (m, i, _), c in oracle.items() if m == market and i == "1m"]
                eventually(lambda: assert_ticker_computed(rpc[service], market, minutes), 15)
                eventually(lambda: assert_latest_trades(rpc[service].get_trades(market, limit=50),
                                                        by_market[market], 50), 15)
                eventually(lambda: assert_served_candles(rpc[service], market, by_market[market],
                                                         oracle), 15)
        proc.stop(timeout=10)
        assert waiting() == (0, 0), "every message acknowledged"

    # The kills were as meant: KILLS of them, each mid-ingest (the process
    # held messages it had not acknowledged: the broker gave them back).
    assert len(kills) == KILLS and all(after > before for _, before, after, _ in kills), kills


def within(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        eventlet.sleep(0.05)
    return True


def eventually(check, timeout: float) -> None:
    """``check()`` until it passes; its last AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        eventlet.sleep(0.5)


def assert_ticker_computed(proxy, market: str, minutes: list) -> None:
    """The served ticker is the one computed from the oracle's 1m candles at
    the ticker's own minute (the process's clock is the wall clock)."""
    served = proxy.get_ticker(market)
    for book_field in ("best_bid", "best_ask", "book_seq"):   # from depth, not trades
        served.pop(book_field)
    assert served == compute_ticker(market, minutes, None, served["minute"])


# ---------------------------------------------------------------- checks

def assert_served_candles(proxy, market: str, trades, oracle: dict) -> None:
    """get_candles (Memcached's versioned partitions, else Cassandra) serves
    the oracle's candles for every interval: a partition changed by a process
    that died before telling Memcached must not be served stale."""
    first, last = min(t.executed_at for t in trades), max(t.executed_at for t in trades)
    for interval in CHAIN:
        start, rows = bucket_start(first, interval), []
        for _ in range(10):     # pages of CANDLES_MAX_LIMIT buckets: 26 h of minutes is two
            page = proxy.get_candles(market, interval, start, last + 1, limit=CANDLES_MAX_LIMIT)
            rows += [dict(zip(page["columns"], row)) for row in page["candles"]]
            start = page["next_start"]
            if start is None:
                break
        assert start is None, f"{interval}: more pages than expected"
        want = [dict(zip(CANDLE_COLUMNS, c.row())) for (m, i, _), c in sorted(oracle.items())
                if m == market and i == interval]
        assert rows == want, interval


def assert_latest_trades(page: dict, trades, limit: int) -> None:
    """``page`` holds the newest trades, newest first; cut short only where
    the ``limit``-th shares its millisecond with the next one (a page never
    splits a millisecond: services/marketdata/queries.py)."""
    newest = sorted(trades, key=lambda t: t.key, reverse=True)[:limit + 1]
    served = len(page["trades"])
    assert page["trades"] == [t.public() for t in newest[:served]]
    split = newest[limit].executed_at
    assert (served == limit and newest[limit - 1].executed_at != split) or (
        0 < served < limit and page["next_end"] == split + 1
        and all(t.executed_at == split for t in newest[served:])), (served, page["next_end"])


def hours(trades) -> list[int]:
    return sorted({trade_bucket(t.executed_at) for t in trades})


def stored_trades(cql, market: str, trades) -> dict:
    """trades_by_market's rows of the hours ``trades`` fall in, by trade id."""
    rows = {}
    for bucket in hours(trades):
        for r in cql.execute(
                "SELECT toUnixTimestamp(executed_at) AS at, seq, trade_id, price, quantity, "
                "quote_quantity, taker_side, maker_order_id, maker_user_id, taker_order_id, "
                "taker_user_id FROM trades_by_market WHERE market = %s AND bucket = %s",
                (market, bucket)):
            assert r.trade_id not in rows, f"{r.trade_id} stored twice"
            rows[r.trade_id] = (r.at, r.seq, r.price, r.quantity, r.quote_quantity, r.taker_side,
                                r.maker_order_id, r.maker_user_id, r.taker_order_id,
                                r.taker_user_id)
    return rows


def assert_all_stored(cql, market: str, trades) -> None:
    missing = {t.trade_id for t in trades} - set(stored_trades(cql, market, trades))
    assert not missing, f"{len(missing)} of {len(trades)} trades of {market} never stored"


def assert_trades_stored_once(cql, market: str, trades) -> None:
    assert stored_trades(cql, market, trades) == {
        t.trade_id: (t.executed_at, t.seq, t.price, t.quantity, t.quote_quantity, t.taker_side,
                     t.maker_order_id, t.maker_user_id, t.taker_order_id, t.taker_user_id)
        for t in trades}
    assert [r.bucket for r in cql.execute(
        "SELECT toUnixTimestamp(bucket) AS bucket FROM trade_buckets_by_market "
        "WHERE market = %s", (market,))] == sorted(hours(trades), reverse=True)

    expected, users = {}, defaultdict(set)
    for t in trades:
        maker_side = "sell" if t.taker_side == "buy" else "buy"
        for user, role, side, order in ((t.maker_user_id, "maker", maker_side, t.maker_order_id),
                                        (t.taker_user_id, "taker", t.taker_side, t.taker_order_id)):
            expected[(user, t.trade_id, role)] = (t.executed_at, market, t.seq, side, t.price,
                                                  t.quantity, t.quote_quantity, order)
            users[user].add(trade_bucket(t.executed_at))
    stored = {}
    for user, buckets in users.items():
        assert [r.bucket for r in cql.execute(
            "SELECT toUnixTimestamp(bucket) AS bucket FROM trade_buckets_by_user "
            "WHERE user_id = %s", (user,))] == sorted(buckets, reverse=True), user
        for bucket in buckets:
            for r in cql.execute(
                    "SELECT toUnixTimestamp(executed_at) AS at, market, trade_id, role, seq, "
                    "side, price, quantity, quote_quantity, order_id FROM trades_by_user "
                    "WHERE user_id = %s AND bucket = %s", (user, bucket)):
                key = (user, r.trade_id, r.role)
                assert key not in stored, f"{key} stored twice"
                stored[key] = (r.at, r.market, r.seq, r.side, r.price, r.quantity,
                               r.quote_quantity, r.order_id)
    assert stored == expected


def assert_candles_equal(cql, market: str, trades, oracle: dict) -> None:
    """Every stored candle of every interval, over every partition the trades
    span, equals the oracle's, and there is no other."""
    first, last = min(t.executed_at for t in trades), max(t.executed_at for t in trades)
    for interval in CHAIN:
        stored = {}
        for part in partitions(interval, first, last + INTERVALS[interval].ms):
            for r in cql.execute(
                    "SELECT toUnixTimestamp(open_time) AS open_time, open, high, low, close, "
                    "volume, quote_volume, trade_count, toUnixTimestamp(first_at) AS first_at, "
                    "first_seq, first_trade_id, toUnixTimestamp(last_at) AS last_at, last_seq, "
                    "last_trade_id, row FROM candles WHERE market = %s AND interval = %s "
                    "AND bucket = %s", (market, interval, part)):
                candle = Candle(market, interval, r.open_time, r.open, r.high, r.low, r.close,
                                r.volume, r.quote_volume, r.trade_count,
                                TradeRef(r.first_at, r.first_seq, r.first_trade_id),
                                TradeRef(r.last_at, r.last_seq, r.last_trade_id))
                # The stored public row (what reads serve) as well as the columns.
                stored[(market, interval, r.open_time)] = (candle, json.loads(r.row))
        want = {k: (c, c.row()) for k, c in oracle.items() if k[1] == interval}
        wrong = sorted(k for k in want.keys() | stored.keys() if want.get(k) != stored.get(k))
        assert not wrong, (f"{interval}: {len(wrong)} of {len(want)} candles differ, e.g. "
                           f"{[(k, want.get(k), stored.get(k)) for k in wrong[:2]]}")
