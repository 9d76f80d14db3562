"""Reads on the real stack: served from Memcached when fresh, re-read from
Cassandra once an ingest changed the data; the ticker window rolls; pages
of trades; depth from book events; bad input and bounded work."""
import json

import eventlet
import pytest
from md_it_helpers import DAY, HOUR, MINUTE, T0, ManualClock, candles

from services.marketdata import errors
from services.marketdata.candles import partition_start
from services.marketdata.hotcache import HotCache
from services.marketdata.providers import Backend


# ---------------------------------------------------------------- cache use and invalidation

def test_candles_come_from_memcached_until_an_ingest_changes_their_partition(
        matching, market, rpc, cql, md_config, memcached_of):
    ManualClock.at = T0 + 2 * DAY
    matching.trades([matching.trade(1, T0 + 10, "10.00"), matching.trade(2, T0 + MINUTE + 10, "20.00")])
    first = candles(rpc, market, "1m", T0, T0 + DAY, 1440)
    assert [c["close"] for c in first] == ["10.00", "20.00"]

    # Behind the service's back: Cassandra changes, nothing tells the cache.
    cql.execute("UPDATE candles SET row = %s WHERE market=%s AND interval='1m' AND bucket=%s "
                "AND open_time=%s", (json.dumps([T0, "10.00", "10.00", "10.00", "99.99", "1.0000",
                                                 "10.000000", 1]), market, partition_start(T0, "1m"), T0))
    assert candles(rpc, market, "1m", T0, T0 + DAY, 1440) == first   # cached

    # An ingest into the same partition (a late trade, a day old) bumps its version ...
    cache = memcached_of(md_config)
    key = HotCache.candle_version_key(market, "1m", partition_start(T0, "1m"))
    version = cache.get(key)
    matching.trades([matching.trade(3, T0 + MINUTE + 20, "25.00")])
    assert cache.get(key) not in (None, version)
    # ... so the next read goes to Cassandra and sees everything there.
    after = candles(rpc, market, "1m", T0, T0 + DAY, 1440)
    assert [c["close"] for c in after] == ["99.99", "25.00"]
    assert after[1]["trade_count"] == 2


def test_a_process_without_a_decoded_copy_reads_the_compact_rows_from_memcached(
        matching, market, rpc, cql, service, md_config, memcached_of):
    ManualClock.at = T0 + 2 * DAY
    matching.trades([matching.trade(1, T0 + 10, "10.00"), matching.trade(2, T0 + MINUTE + 10, "20.00")])
    first = candles(rpc, market, "1m", T0, T0 + DAY, 1440)
    cql.execute("UPDATE candles SET row = %s WHERE market=%s AND interval='1m' AND bucket=%s "
                "AND open_time=%s", (json.dumps([T0, "10.00", "10.00", "10.00", "99.99", "1.0000",
                                                 "10.000000", 1]), market, partition_start(T0, "1m"), T0))
    decoded = service.shared_extensions[Backend].reads._decoded
    decoded.clear()                                 # as in a process that never read it
    assert candles(rpc, market, "1m", T0, T0 + DAY, 1440) == first      # from Memcached

    cache = memcached_of(md_config)
    part = partition_start(T0, "1m")
    version = cache.get(HotCache.candle_version_key(market, "1m", part))
    chunk = HotCache.candle_chunk_key(market, "1m", part, version)
    assert cache.client.get(cache._key(chunk)).startswith(f"{T0},10.00,".encode())
    cache.client.set(cache._key(chunk), b"not,candle,rows", expire=60)
    decoded.clear()
    # what does not unpack is a miss: read from Cassandra (and stored again)
    assert [c["close"] for c in candles(rpc, market, "1m", T0, T0 + DAY, 1440)] == ["99.99", "20.00"]
    assert cache.client.get(cache._key(chunk)).startswith(f"{T0},10.00,10.00,10.00,99.99,".encode())


def test_latest_trades_and_ticker_follow_each_ingest(matching, market, rpc, md_config, memcached_of):
    ManualClock.at = T0 + HOUR
    matching.trades([matching.trade(n, T0 + n, f"{10 + n}.00") for n in range(1, 4)])
    assert [t["price"] for t in rpc.get_trades(market, 10)["trades"]] == ["13.00", "12.00", "11.00"]
    assert rpc.get_ticker(market)["last"] == "13.00"
    cache = memcached_of(md_config)
    assert cache.get(HotCache.recent_key(market))["trades"][0]["price"] == "13.00"
    matching.trades([matching.trade(4, T0 + 4, "9.00"), matching.trade(5, T0 + 2, "50.00")])
    # same millisecond: the later seq is the newer trade
    assert [t["price"] for t in rpc.get_trades(market, 10)["trades"]] == [
        "9.00", "13.00", "50.00", "12.00", "11.00"]
    ticker = rpc.get_ticker(market)
    assert (ticker["last"], ticker["high"], ticker["trade_count"]) == ("9.00", "50.00", 5)
    assert cache.get(HotCache.ticker_key(market))["last"] == "9.00"


def test_the_24h_ticker_rolls_off_old_trades(matching, market, rpc, md_config, memcached_of):
    ManualClock.at = T0 + 2 * HOUR
    matching.trades([matching.trade(1, T0 + 30 * MINUTE + 5, "100.00"),
                     matching.trade(2, T0 + HOUR, "120.00", "2.0000")])
    ticker = rpc.get_ticker(market)
    assert (ticker["open"], ticker["last"], ticker["volume"]) == ("100.00", "120.00", "3.0000")
    assert ticker["change_percent"] == "20.00"

    ManualClock.at = T0 + 30 * MINUTE + DAY - 1          # the first trade's minute still in
    assert rpc.get_ticker(market)["trade_count"] == 2
    ManualClock.at = T0 + 30 * MINUTE + DAY              # ... and now rolled off
    rolled = rpc.get_ticker(market)
    assert (rolled["open"], rolled["volume"], rolled["trade_count"]) == ("120.00", "2.0000", 1)
    ManualClock.at = T0 + HOUR + DAY                     # a quiet window keeps the last price
    quiet = rpc.get_ticker(market)
    assert (quiet["last"], quiet["volume"], quiet["open"]) == ("120.00", "0", None)
    # the timer rolls the cached ticker into the new minute as well
    cache = memcached_of(md_config)
    deadline = T0 + HOUR + DAY
    for _ in range(200):
        cached = cache.get(HotCache.ticker_key(market))
        if cached and cached["minute"] == deadline:
            break
        eventlet.sleep(0.1)
    assert cached["minute"] == deadline and cached["volume"] == "0"
    assert market in [t["market"] for t in rpc.get_tickers()]


def test_pages_of_trades_never_split_a_millisecond(matching, market, rpc):
    ManualClock.at = T0 + DAY
    # 3 trades at T0+10 (one command), 2 at T0+5, 1 at T0+1, spread over two hours too
    trades = ([matching.trade(n, T0 + 10, "10.00", seq=9) for n in (4, 5, 6)]
              + [matching.trade(n, T0 + 5, "10.00") for n in (2, 3)]
              + [matching.trade(1, T0 + 1, "10.00"), matching.trade(7, T0 + HOUR + 1, "11.00")])
    matching.trades(trades)
    ids = lambda page: [t["trade_id"].rsplit("-", 1)[1] for t in page["trades"]]  # noqa: E731
    page = rpc.get_trades(market, 2)
    assert ids(page) == ["7"] and page["next_end"] == T0 + 11    # 2 would cut the T0+10 group
    page = rpc.get_trades(market, 2, end=page["next_end"])
    assert ids(page) == ["6", "5", "4"] and page["next_end"] == T0 + 10
    page = rpc.get_trades(market, 2, end=page["next_end"])
    assert ids(page) == ["3", "2"] and page["next_end"] == T0 + 5
    page = rpc.get_trades(market, 2, end=page["next_end"])
    assert ids(page) == ["1"] and page["next_end"] is None
    window = rpc.get_trades(market, 100, start=T0 + 2, end=T0 + HOUR)
    assert ids(window) == ["6", "5", "4", "3", "2"]


# ---------------------------------------------------------------- depth

def level(side, price, qty):
    return {"side": side, "price": price, "quantity": qty}


def test_depth_and_best_bid_ask_follow_book_events(matching, market, rpc, md_config, memcached_of):
    book = lambda seq, *changes: {"market": market, "seq": seq, "at": T0 + seq,  # noqa: E731
                                   "changes": list(changes)}
    matching.book([book(1, level("buy", "99.00", "1.0000"), level("sell", "101.00", "2.0000")),
                   book(2, level("buy", "100.00", "0.5000")),
                   book(2, level("buy", "100.00", "7.0000")),             # duplicate: ignored
                   book(3, level("buy", "99.00", "0"))])
    depth = rpc.get_depth(market, 10)
    assert (depth["seq"], depth["bids"], depth["asks"]) == (
        3, [["100.00", "0.5000"]], [["101.00", "2.0000"]])
    ticker = rpc.get_ticker(market)
    assert (ticker["best_bid"], ticker["best_ask"]) == (["100.00", "0.5000"], ["101.00", "2.0000"])
    cache = memcached_of(md_config)
    for _ in range(200):
        cached = cache.get(HotCache.depth_key(market))
        if cached and cached["seq"] == 3:
            break
        eventlet.sleep(0.05)
    assert cached["bids"] == [["100.00", "0.5000"]]

    # a lost event: once more than the reorder tolerance waits, the book is stale
    from services.marketdata.depth import REORDER_TOLERANCE
    matching.book([book(s, level("sell", "101.00", "1.0000"))
                   for s in range(5, 6 + REORDER_TOLERANCE)])
    with pytest.raises(errors.DepthUnavailable):
        rpc.get_depth(market, 10)
    assert cache.get(HotCache.depth_key(market)) is None
    assert rpc.health()["depth"][market] == "stale"


def test_depth_of_a_book_never_seen_from_its_start_is_unavailable(matching, market, rpc):
    matching.book([{"market": market, "seq": 40, "at": T0, "changes": [level("buy", "1.00", "1.0000")]}])
    with pytest.raises(errors.DepthUnavailable):
        rpc.get_depth(market)


# ---------------------------------------------------------------- bad input, bounded work

@pytest.mark.parametrize("call, error", [
    (lambda r, m: r.get_candles("NOPE-USDT", "1m"), errors.UnknownMarket),
    (lambda r, m: r.get_candles(m, "2m"), errors.UnknownInterval),
    (lambda r, m: r.get_candles(m, "1m", T0 + 1, T0), errors.InvalidTimeRange),
    (lambda r, m: r.get_candles(m, "1m", "2026-11-23", None), errors.InvalidTimestamp),
    (lambda r, m: r.get_candles(m, "1m", 1.5e12, None), errors.InvalidTimestamp),
    (lambda r, m: r.get_candles(m, "1m", None, None, 10**9), errors.InvalidLimit),
    (lambda r, m: r.get_trades(m, 0), errors.InvalidLimit),
    (lambda r, m: r.get_trades(m, 5, -1), errors.InvalidTimestamp),
    (lambda r, m: r.get_trades(m, 5, T0, T0 - 1), errors.InvalidTimeRange),
    (lambda r, m: r.get_depth(m, 1001), errors.InvalidLimit),
    (lambda r, m: r.get_ticker(None), errors.UnknownMarket),
    (lambda r, m: r.get_user_trades(""), errors.InvalidArgument),
    (lambda r, m: r.rebuild_candles(m, T0, T0 + 2 * DAY), errors.RangeTooLarge),
])
def test_bad_input_is_a_typed_error(rpc, market, call, error):
    with pytest.raises(error) as caught:
        call(rpc, market)
    assert caught.value.code == error.code


def test_absurd_ranges_do_bounded_work(matching, market, rpc):
    ManualClock.at = T0 + DAY
    matching.trades([matching.trade(1, T0 + 5)])
    ten_years = rpc.get_candles(market, "1m", T0 - 3650 * DAY, T0 + DAY, 1500)
    assert ten_years["end"] - ten_years["start"] <= 1500 * MINUTE
    assert ten_years["next_start"] == ten_years["end"] and ten_years["candles"] == []
    assert len(rpc.get_trades(market, 1000, T0 - 3650 * DAY, T0 + DAY)["trades"]) == 1


def test_decimals_read_back_in_plain_notation(market, rpc, cql):
    # Cassandra casts decimals to text with Java's BigDecimal.toString (1E-8)
    cql.execute("INSERT INTO candles (market, interval, bucket, open_time, open, high, low, close, "
                "volume, quote_volume, trade_count) VALUES (%s, '1m', %s, %s, 0.00000012, "
                "1000000000000, 0.00000001, 1E+3, 0.00000001, 0.0000000100, 1)",
                (market, partition_start(T0, "1m"), T0))
    [candle] = candles(rpc, market, "1m", T0, T0 + MINUTE)
    assert (candle["open"], candle["high"], candle["low"], candle["close"], candle["volume"],
            candle["quote_volume"]) == ("0.00000012", "1000000000000", "0.00000001", "1000",
                                        "0.00000001", "0.0000000100")
