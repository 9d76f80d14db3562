"""Memcached failing under the service: reads get slower, never wrong, never
errors; ingestion goes on; stale entries are never served once the data
changed. A throw-away memcached of the test's own is killed (the stack's is
shared with other tests)."""
import os
import signal

import eventlet
import pytest
from md_it_helpers import (DAY, HOUR, MINUTE, T0, ManualClock, MarketDataUnderTest, Matching,
                           candles, isolated)
from nameko.standalone.rpc import ServiceRpcProxy

from services.marketdata.hotcache import HotCache


class WithoutRetryTimer(MarketDataUnderTest):
    """No timer: what Memcached refused is retried only by the next flush, so
    the window in which Memcached is back but still holds outdated entries
    stays open for the test to read in."""

    def refresh(self):
        pass


def start(container_factory, cls, md_config, name, port):
    config = {**md_config, "MEMCACHED_PORT": port}
    container = container_factory(isolated(cls, name), config)
    container.start()
    return config, container


@pytest.fixture
def own_cache_service(md_config, service_name, container_factory, market, throwaway_memcached):
    config, container = start(container_factory, MarketDataUnderTest, md_config, service_name,
                              throwaway_memcached.port)
    with ServiceRpcProxy(container.service_name, config, timeout=30) as rpc:
        yield rpc, Matching(config, container, market), config


def snapshot(rpc, market):
    return (candles(rpc, market, "1m", T0, T0 + DAY, 1440),
            candles(rpc, market, "1h", T0, T0 + DAY, 24),
            rpc.get_trades(market, 50)["trades"],
            {k: v for k, v in rpc.get_ticker(market).items()})


def test_memcached_killed_mid_test_reads_stay_correct_and_ingest_goes_on(
        own_cache_service, market, throwaway_memcached, memcached_of):
    rpc, matching, config = own_cache_service
    ManualClock.at = T0 + 2 * HOUR
    matching.trades([matching.trade(1, T0 + 5, "10.00"), matching.trade(2, T0 + MINUTE, "12.00")])
    before = snapshot(rpc, market)
    cache = memcached_of(config, port=throwaway_memcached.port)
    assert cache.get(HotCache.recent_key(market)) is not None      # the cache is in use

    throwaway_memcached.kill()
    assert snapshot(rpc, market) == before                        # from Cassandra now

    # ingestion during the outage is acknowledged and visible
    matching.trades([matching.trade(3, T0 + MINUTE + 1, "8.00"), matching.trade(4, T0 + HOUR, "15.00")])
    during = snapshot(rpc, market)
    assert [c["close"] for c in during[0]] == ["10.00", "8.00", "15.00"]
    assert [t["price"] for t in during[2]] == ["15.00", "8.00", "12.00", "10.00"]
    assert (during[3]["last"], during[3]["trade_count"], during[3]["low"]) == ("15.00", 4, "8.00")

    # Memcached back (empty, as a restarted one is): same answers, cache refilled
    throwaway_memcached.start()
    refilled = None
    for _ in range(200):                    # the breaker and the retry timer take ~1-2 s
        assert snapshot(rpc, market) == during
        refilled = cache.get(HotCache.recent_key(market))
        if refilled is not None:
            break
        eventlet.sleep(0.1)
    assert refilled["trades"][0]["price"] == "15.00"


def test_entries_the_data_outlived_are_never_served(
        md_config, service_name, container_factory, market, throwaway_memcached, memcached_of,
        monkeypatch):
    monkeypatch.setattr(HotCache, "OUTAGE_BACKOFF", 0.2)
    config, container = start(container_factory, WithoutRetryTimer, md_config, service_name,
                              throwaway_memcached.port)
    matching = Matching(config, container, market)
    with ServiceRpcProxy(container.service_name, config, timeout=30) as rpc:
        ManualClock.at = T0 + HOUR
        matching.trades([matching.trade(1, T0 + 5, "10.00")])
        cached = snapshot(rpc, market)                             # now in Memcached

        # SIGSTOP: connections hang (not refused), so the ingest can neither
        # bump the candle versions nor replace the entries; they stay in
        # Memcached with the old data when it resumes ...
        os.kill(throwaway_memcached.process.pid, signal.SIGSTOP)
        try:
            matching.trades([matching.trade(2, T0 + 10, "20.00")])
        finally:
            os.kill(throwaway_memcached.process.pid, signal.SIGCONT)
        eventlet.sleep(0.3)                                        # breaker closed again
        cache = memcached_of(config, port=throwaway_memcached.port)
        assert cache.get(HotCache.recent_key(market))["trades"][0]["price"] == "10.00"  # outdated
        # ... and reads do not serve them: the data changed after they were written
        after = snapshot(rpc, market)
        assert after != cached
        assert [t["price"] for t in after[2]] == ["20.00", "10.00"]
        assert after[0][0]["close"] == "20.00" and after[3]["last"] == "20.00"
        # the next flush tells Memcached, and the cache serves the new data
        matching.trades([matching.trade(3, T0 + 20, "30.00")])
        assert cache.get(HotCache.recent_key(market))["trades"][0]["price"] == "30.00"
        assert snapshot(rpc, market)[2][0]["price"] == "30.00"
