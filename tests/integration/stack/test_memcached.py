"""Memcached through the project's cache."""
import time
import uuid

import pytest

from services.common.cache import make_cache


@pytest.fixture
def cache(test_settings):
    cache = make_cache(test_settings, prefix=f"test:{uuid.uuid4().hex[:8]}:")
    yield cache
    cache.client.close()


def test_set_then_get_returns_the_value(cache):
    assert cache.set("ticker:BTC-USDT", {"last": "64000.01"}, ttl=30)
    assert cache.get("ticker:BTC-USDT") == {"last": "64000.01"}


def test_entries_expire(cache):
    cache.set("short", "lived", ttl=1)
    assert cache.get("short") == "lived"
    deadline = time.monotonic() + 5
    while cache.get("short") is not None and time.monotonic() < deadline:
        time.sleep(0.25)
    assert cache.get("short") is None


def test_delete_removes(cache):
    cache.set("gone", 1, ttl=30)
    cache.delete("gone")
    assert cache.get("gone") is None


def test_entries_without_expiry_are_refused(cache):
    with pytest.raises(ValueError):
        cache.set("forever", 1, ttl=0)


def test_unreachable_memcached_reads_as_a_miss(test_settings):
    dead = make_cache(test_settings.with_overrides(EXCHANGE_MEMCACHED_PORT="1"))
    assert dead.get("anything") is None
    assert dead.set("anything", 1, ttl=5) is False
    assert dead.delete("anything") is False
