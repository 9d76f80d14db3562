"""A partner's ccxt bot reading candles of a quiet market (BTC-USDT, where only
the tests trade): ``limit`` counts klines, as on Binance, not buckets of time.

marketdata leaves the empty buckets out, so the gateway used to answer
``fetch_ohlcv(symbol, tf, since, limit)`` with the klines of the ``limit``
buckets after ``since`` only: none at all when the market had not traded in
them, and a bot paging with ``since`` took that for the end of the data.
"""
from decimal import Decimal

import pytest

import binance_testkit as kit
from binance_testkit import BINANCE, SYMBOL, quiet_price

MINUTE, HOUR = 60_000, 3_600_000


@pytest.fixture(scope="module")
def public(gateway_url):
    return kit.binance_local(gateway_url)


@pytest.fixture(scope="module")
def traded(gateway_url, maker, taker, settings):
    """One trade of this module at a quiet price: (price, its 1m and 1h
    candles' open times), once its candle is readable."""
    ex_maker = kit.binance_local(gateway_url, maker.api_key, maker.secret)
    ex_taker = kit.binance_local(gateway_url, taker.api_key, taker.secret)
    price = quiet_price(settings)
    ex_maker.create_order(SYMBOL, "limit", "sell", 0.01, float(price))
    bought = ex_taker.create_order(SYMBOL, "limit", "buy", 0.01, float(price),
                                   {"timeInForce": "IOC"})
    assert bought["status"] == "closed"
    at = bought["lastTradeTimestamp"] or bought["timestamp"]
    minute, hour = at - at % MINUTE, at - at % HOUR
    # the candle is written asynchronously (marketdata's consumer)
    kit.eventually(lambda: [c for c in kit.raw(settings, "GET", "/api/v3/klines", params={
        "symbol": BINANCE, "interval": "1m", "startTime": minute, "endTime": minute}).json()
        if c[0] == minute])
    return price, minute, hour


def klines(settings, **params):
    response = kit.raw(settings, "GET", "/api/v3/klines",
                       params={"symbol": BINANCE, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_since_far_before_the_trade_still_finds_the_first_klines(public, traded):
    """Binance: the first ``limit`` klines from ``startTime`` on. 48 h before
    the trade, on a market whose data began with this stack, the first hour
    bucket is empty: the old answer was ``[]``."""
    price, _, hour = traded
    since = hour - 48 * HOUR
    candles = public.fetch_ohlcv(SYMBOL, "1h", since, 1)
    assert len(candles) == 1
    assert since <= candles[0][0] <= hour     # the first kline at or after since


def test_paging_with_since_reaches_the_trade(public, traded):
    """A bot's loop (since = last open + 1, until nothing comes back), from
    30 minutes before the trade, 2 klines a page, reaches the trade's kline."""
    price, minute, _ = traded
    since, seen = minute - 30 * MINUTE, []
    for _ in range(40):                      # bounded: 30 minutes at most
        page = public.fetch_ohlcv(SYMBOL, "1m", since, 2)
        if not page:
            break
        seen.extend(page)
        if page[-1][0] >= minute:
            break
        since = page[-1][0] + 1
    assert minute in [c[0] for c in seen]
    assert [c[0] for c in seen] == sorted(set(c[0] for c in seen))


def test_since_days_before_the_trade_skips_the_empty_stretch(settings, traded):
    """10 days of empty 1m buckets (14,400) before the first kline: found
    through the coarser candles, not by reading them all."""
    price, minute, _ = traded
    since = minute - 10 * 24 * HOUR
    candles = klines(settings, interval="1m", limit=1, startTime=since)
    assert len(candles) == 1 and since <= candles[0][0] <= minute


def test_start_time_zero_gives_the_first_kline(settings, traded):
    """python-binance's _get_earliest_valid_timestamp: startTime=0, limit=1
    (the old answer: -1100, start=0 outside marketdata's range)."""
    price, minute, _ = traded
    candles = klines(settings, interval="1m", limit=1, startTime=0, endTime=minute + MINUTE)
    assert len(candles) == 1 and candles[0][0] <= minute


def test_python_binance_historical_klines_reach_the_trade(gateway_url, traded):
    """get_historical_klines: the earliest kline (startTime=0), then pages of
    1000 from the start asked for, until a short page."""
    price, minute, _ = traded
    client = kit.binance_client(gateway_url)
    candles = client.get_historical_klines(BINANCE, "1m", minute - 30 * MINUTE,
                                           minute + MINUTE)
    assert minute in [c[0] for c in candles]


def test_last_klines_before_end_time_skip_the_empty_buckets(settings, traded):
    """Without ``startTime``: the last ``limit`` klines up to ``endTime``.
    An ``endTime`` 10 minutes after the trade (still in the future, so none
    trade after it): the old answer covered those 10 empty minutes only."""
    price, minute, _ = traded
    candles = klines(settings, interval="1m", limit=1, endTime=minute + 10 * MINUTE)
    assert len(candles) == 1
    assert candles[0][0] >= minute
    assert Decimal(candles[0][5]) > 0                 # a kline with volume, not a filler


def test_limit_still_caps_the_answer(settings, traded):
    price, minute, hour = traded
    assert len(klines(settings, interval="1m", limit=1, startTime=minute - 30 * MINUTE)) == 1
    assert klines(settings, interval="1m", startTime=minute + 3_600_000 * 24 * 365) == []


def test_start_after_end_is_refused(settings):
    """Binance's -1023 (it was -1100 with marketdata's own words, or [] once
    startTime=0 became legal)."""
    response = kit.raw(settings, "GET", "/api/v3/klines", params={
        "symbol": BINANCE, "interval": "1m", "startTime": 200, "endTime": 100})
    assert response.status_code == 400
    assert response.json() == {"code": -1023, "msg": "Start time is greater than end time."}
