"""Ingest on the real stack: trades land once, candles are right at the edges
under duplicates and reordering, and a rebuild from the trades table gives
the incremental result."""
import random

from md_it_helpers import DAY, HOUR, MINUTE, T0, ManualClock, candles

from services.common import catalogue
from services.marketdata.candles import CHAIN, INTERVALS, candles_from_trades, partition_start
from services.marketdata.markets import MarketRegistry
from services.marketdata.reads import CANDLE_COLUMNS
from services.marketdata.schemas import trade_from_event


def expected(md_config, payloads, interval):
    markets = MarketRegistry.from_catalogue(catalogue.current())
    found = candles_from_trades([trade_from_event(p, markets) for p in payloads], [interval])
    return [dict(zip(CANDLE_COLUMNS, c.row())) for _, c in sorted(found.items())]


def stored_candles(cql, market, payloads):
    rows = {}
    for interval in CHAIN:
        for part in {partition_start(p["executed_at"], interval) for p in payloads}:
            for r in cql.execute("SELECT * FROM candles WHERE market=%s AND interval=%s AND bucket=%s",
                                 (market, interval, part)):
                rows[(interval, r.open_time)] = r._asdict()
    return rows


def test_each_trade_lands_exactly_once_whatever_the_redeliveries(matching, market, cql):
    trades = [matching.trade(n, T0 + n * 1000, maker=f"{market}-m-{n % 3}", taker=f"{market}-t-{n % 2}")
              for n in range(1, 11)]
    matching.trades(trades + trades[:4] + trades[2:3] * 3)
    count = cql.execute("SELECT count(*) FROM trades_by_market WHERE market=%s AND bucket=%s",
                        (market, T0)).one()[0]
    assert count == 10
    user_rows = sum(cql.execute("SELECT count(*) FROM trades_by_user WHERE user_id=%s AND bucket=%s",
                                (user, T0)).one()[0]
                    for user in (f"{market}-{u}" for u in ("m-0", "m-1", "m-2", "t-0", "t-1")))
    assert user_rows == 20                      # maker and taker row per trade
    assert [r.bucket for r in cql.execute(
        "SELECT toUnixTimestamp(bucket) AS bucket FROM trade_buckets_by_market WHERE market=%s",
        (market,))] == [T0]


def test_candles_at_the_edges_equal_the_direct_computation(matching, market, rpc, md_config):
    ManualClock.at = T0 + 3 * DAY
    trades = [
        matching.trade(1, T0 - 1, "50.00"),                       # last ms of the previous week
        matching.trade(2, T0, "60.00"),                           # exactly on every boundary
        matching.trade(3, T0 + MINUTE - 1, "55.00"),
        matching.trade(4, T0 + MINUTE, "70.00"),                  # next minute's first ms
        # minutes 2..4 are empty
        matching.trade(5, T0 + 5 * MINUTE, "65.00", "2.5000"),
        matching.trade(6, T0 + HOUR + 7, "80.00"),
        matching.trade(7, T0 + DAY + 3 * HOUR, "40.00"),
        # three fills of one command: same ms and seq, natural id order
        *[matching.trade(n, T0 + DAY + 4 * HOUR, p, seq=8) for n, p in ((8, "41.00"), (9, "42.00"),
                                                                        (10, "43.00"))],
    ]
    shuffled = trades[:]
    random.Random(5).shuffle(shuffled)
    matching.trades(shuffled[:6])
    matching.trades(shuffled[3:] + shuffled[:2])                  # overlap: duplicates
    for interval in CHAIN:
        got = rpc.get_candles(market, interval, T0 - 2 * INTERVALS["1w"].ms, T0 + 2 * DAY,
                              limit=1500)
        want = [c for c in expected(md_config, trades, interval)
                if got["start"] <= c["open_time"] < got["end"]]
        assert [dict(zip(got["columns"], row)) for row in got["candles"]] == want, interval
    minute = candles(rpc, market, "1m", T0, T0 + 10 * MINUTE)
    assert [c["open_time"] for c in minute] == [T0, T0 + MINUTE, T0 + 5 * MINUTE]  # no empty ones
    assert minute[0]["open"] == "60.00" and minute[0]["close"] == "55.00"
    week = candles(rpc, market, "1w", T0, T0 + 1)[0]
    assert (week["open"], week["close"], week["trade_count"]) == ("60.00", "43.00", 9)
    previous_week = candles(rpc, market, "1w", T0 - 7 * DAY, T0)
    assert [(c["open"], c["trade_count"]) for c in previous_week] == [("50.00", 1)]


def test_the_first_trade_of_a_market_makes_every_candle_and_the_ticker(matching, market, rpc):
    assert candles(rpc, market, "1m") == []
    assert rpc.get_ticker(market)["last"] is None
    ManualClock.at = T0 + 30_000
    matching.trades([matching.trade(1, T0 + 12_345, "123.45", "0.5000")])
    for interval in CHAIN:
        [candle] = candles(rpc, market, interval)
        assert candle["open"] == candle["close"] == "123.45" and candle["volume"] == "0.5000"
    ticker = rpc.get_ticker(market)
    assert (ticker["open"], ticker["last"], ticker["change_percent"]) == ("123.45", "123.45", "0.00")


def test_rebuild_from_the_trades_table_equals_the_incremental_result(
        matching, market, rpc, cql, md_config):
    ManualClock.at = T0 + 2 * DAY
    rnd = random.Random(11)
    trades = [matching.trade(n, T0 + rnd.randrange(DAY), f"{rnd.randint(100, 200)}.{rnd.randint(0, 99):02d}")
              for n in range(1, 121)]
    matching.trades(trades + rnd.sample(trades, 30))
    incremental = stored_candles(cql, market, trades)
    assert len(incremental) > 100

    # damage: lose some rows, falsify one, add one no trade backs
    for (interval, open_time) in list(incremental)[:5]:
        cql.execute("DELETE FROM candles WHERE market=%s AND interval=%s AND bucket=%s AND open_time=%s",
                    (market, interval, partition_start(int(open_time.timestamp() * 1000), interval),
                     open_time))
    some_minute = next(k for k in incremental if k[0] == "1m")[1]
    cql.execute("UPDATE candles SET close = 1 WHERE market=%s AND interval='1m' AND bucket=%s "
                "AND open_time=%s", (market, partition_start(int(some_minute.timestamp() * 1000), "1m"),
                                     some_minute))
    cql.execute("INSERT INTO candles (market, interval, bucket, open_time, open, high, low, close, "
                "volume, quote_volume, trade_count) VALUES (%s, '1m', %s, %s, 1, 1, 1, 1, 1, 1, 1)",
                (market, T0 + DAY, T0 + DAY + 5 * MINUTE))
    assert stored_candles(cql, market, trades) != incremental

    first = rpc.rebuild_candles(market, T0, T0 + DAY)
    second = rpc.rebuild_candles(market, T0 + DAY, T0 + DAY + 10 * MINUTE)
    assert first["trades"] == 120 and second["deletes"] >= 1
    assert stored_candles(cql, market, trades) == incremental
    assert candles(rpc, market, "1h", T0, T0 + DAY, 24) == expected(md_config, trades, "1h")
    assert candles(rpc, market, "1m", T0 + DAY, T0 + DAY + HOUR) == []


def test_a_users_trades_are_kept_on_both_sides(matching, market, rpc):
    ManualClock.at = T0 + HOUR
    alice, bob = f"alice-{market}", f"bob-{market}"
    matching.trades([matching.trade(1, T0 + 5, "10.00", maker=alice, taker=bob, side="buy"),
                     matching.trade(2, T0 + 6, "11.00", maker=bob, taker=alice, side="sell")])
    alice = rpc.get_user_trades(alice)["trades"]
    assert [(t["trade_id"], t["role"], t["side"]) for t in alice] == [
        (f"{market}-2", "taker", "sell"), (f"{market}-1", "maker", "sell")]
    assert [t["side"] for t in rpc.get_user_trades(bob)["trades"]] == ["buy", "buy"]


def test_the_rebuild_command_covers_a_range_longer_than_a_day(matching, market, cql, md_config,
                                                               service):
    import io

    from services.marketdata.__main__ import main
    ManualClock.at = T0 + 3 * DAY
    trades = [matching.trade(n, T0 + n * 7 * HOUR, f"{100 + n}.00") for n in range(1, 9)]
    matching.trades(trades)
    incremental = stored_candles(cql, market, trades)
    for interval in CHAIN:
        for part in {partition_start(p["executed_at"], interval) for p in trades}:
            cql.execute("DELETE FROM candles WHERE market=%s AND interval=%s AND bucket=%s",
                        (market, interval, part))
    out = io.StringIO()
    assert main(["rebuild", "--market", market, "--start", "2026-11-23T00:00:00Z",
                 "--end", str(T0 + 3 * DAY), "--service", service.service_name],
                nameko_config=md_config, out=out) == 0
    assert stored_candles(cql, market, trades) == incremental
    assert out.getvalue().count("\n") == 4 and "8 trades" in out.getvalue().splitlines()[-1]


def test_user_partition_keys_are_the_drivers(cql):
    from decimal import Decimal

    from services.marketdata.storage import CassandraStore, user_partition_key
    store = CassandraStore(cql, 1, 1)
    for user in ("u-1", "ü-ñ", "x" * 100):
        bound = store.insert_user_trade.bind((user, T0, T0, "M", "t", "maker", 1, "buy", Decimal(1),
                                              Decimal(1), Decimal(1), 1))
        assert bound.routing_key == user_partition_key(user, T0)


def test_a_batch_that_fails_to_persist_is_redelivered_not_lost(matching, market, service, rpc, cql):
    """The trade queue is acknowledged only after Cassandra has everything: a
    failed write makes the consumer drop its connection, RabbitMQ redelivers."""
    from md_it_helpers import Backend
    store = service.shared_extensions[Backend].store
    real, failures = store.write_trades, []

    def failing_once(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise ConnectionError("injected: Cassandra write failed")
        return real(*args, **kwargs)

    store.write_trades = failing_once
    matching.trades([matching.trade(1, T0 + 5, "10.00"), matching.trade(2, T0 + 6, "11.00")])
    assert failures == [1]
    assert cql.execute("SELECT count(*) FROM trades_by_market WHERE market=%s AND bucket=%s",
                       (market, T0)).one()[0] == 2
    assert [c["trade_count"] for c in candles(rpc, market, "1m", T0, T0 + MINUTE)] == [2]



def test_a_flushs_candles_are_one_request_and_land_as_computed(cql, market):
    """A trade changes the open candle of all 8 intervals: they go to
    Cassandra as one unlogged batch (one request, was 8), and every row
    reads back as the aggregator computed it."""
    from decimal import Decimal

    from cassandra.query import BatchStatement

    from services.marketdata.candles import CandleAggregator
    from services.marketdata.models import Trade
    from services.marketdata.storage import CassandraStore
    store = CassandraStore(cql, 1, 1)
    aggregator = CandleAggregator()
    p, q = Decimal("12.34"), Decimal("0.5000")
    trade = Trade(market, f"{market}-1", 1, p, q, p * q, "buy", 1, "maker", 2, "taker", T0 + 5)
    needs = aggregator.missing([trade])
    for m, minute in needs.minutes:
        aggregator.load_minute(m, minute, [])
    for m, parent, start in needs.children:
        aggregator.load_children(m, parent, start, [])
    changes = aggregator.apply([trade])
    assert len(changes.upserts) == len(INTERVALS) == 8
    statements = store._candle_statements(changes)
    assert len(statements) == 1
    batch, _ = statements[0]
    assert isinstance(batch, BatchStatement) and len(batch._statements_and_parameters) == 8
    store.write_candles(changes)
    for c in changes.upserts:
        [stored] = store.candles_between(market, c.interval, c.open_time, c.open_time + 1)
        assert (stored.open, stored.close, stored.volume, stored.trade_count,
                stored.last.trade_id) == (p, p, q, 1, trade.trade_id)
