"""Windowed counters, 429 with Retry-After, then a ban (418) for a client
that keeps going; a per-key order count. Memcached's verbs are played by a
dict here (the e2e flood test runs against the real one)."""
import pytest
from flask import Flask

from gateway.errors import ApiError
from gateway.ratelimit import Counters, Limits, RateLimiter


class DictMemcache:
    def __init__(self):
        self.values = {}

    def incr(self, key, amount, noreply=False):
        if key not in self.values:
            return None
        self.values[key] = str(int(self.values[key]) + amount)
        return int(self.values[key])

    def add(self, key, value, expire=0, noreply=False):
        if key in self.values:
            return False
        self.values[key] = value
        return True

    def get(self, key):
        return self.values.get(key)

    def set(self, key, value, expire=0, noreply=False):
        self.values[key] = value
        return True


class Clock:
    now = 1_000_000.0

    def __call__(self):
        return self.now


LIMITS = Limits(weight_per_minute=10, key_weight_per_minute=10, orders_per_10s=2,
                orders_per_day=100, ban_after=3, ban_s=120)


@pytest.fixture
def limiter():
    with Flask(__name__).test_request_context("/"):
        clock = Clock()
        yield RateLimiter(Counters(DictMemcache(), clock), LIMITS), clock


def test_weight_adds_up_then_429_with_retry_after_then_a_ban(limiter):
    rl, clock = limiter
    clock.now = 1_000_040.0     # 20 s into a minute (1_000_020 = 60 x 16_667): 40 s left
    assert rl.charge_ip("1.2.3.4", 6) == 6
    assert rl.charge_ip("1.2.3.4", 4) == 10
    statuses = []
    for _ in range(5):
        with pytest.raises(ApiError) as caught:
            rl.charge_ip("1.2.3.4", 1)
        statuses.append((caught.value.status, caught.value.binance_code))
        if caught.value.status == 429:
            assert caught.value.headers["Retry-After"] == "40"
    assert statuses == [(429, -1003)] * 3 + [(418, -1003)] * 2
    assert rl.charge_ip("5.6.7.8", 1) == 1          # another client is served
    clock.now += 60                                  # a new minute, still banned
    with pytest.raises(ApiError) as caught:
        rl.charge_ip("1.2.3.4", 1)
    assert caught.value.status == 418
    clock.now += 61                                  # the ban is over
    assert rl.charge_ip("1.2.3.4", 1) == 1


def test_orders_are_counted_per_key_in_ten_second_windows(limiter):
    rl, clock = limiter
    rl.charge_key("k1", 1, orders=True)
    rl.charge_key("k1", 1, orders=True)
    with pytest.raises(ApiError) as caught:
        rl.charge_key("k1", 1, orders=True)
    assert (caught.value.status, caught.value.binance_code) == (429, -1015)
    rl.charge_key("k2", 1, orders=True)
    clock.now += 10
    rl.charge_key("k1", 1, orders=True)


def test_an_unreachable_memcached_serves_unlimited_and_is_not_asked_again_at_once():
    calls = []

    class Down:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                calls.append(name)
                raise OSError("connection refused")
            return fail

    clock = Clock()
    with Flask(__name__).test_request_context("/"):
        rl = RateLimiter(Counters(Down(), clock), LIMITS)
        for _ in range(20):
            rl.charge_ip("1.2.3.4", 5)
        assert len(calls) == 1
        clock.now += Counters.RETRY_AFTER_FAILURE_S + 1
        rl.charge_ip("1.2.3.4", 5)
        assert len(calls) == 2
