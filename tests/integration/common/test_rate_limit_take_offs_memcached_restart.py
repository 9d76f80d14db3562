"""A gateway process outlives a restart of Memcached, or an outage of it: the
first-fill take-offs of its push bridge (gateway/ratelimit.py
``RateLimiter.orders_filled``) reach the counters all the same.

Found in session 27: a gateway that had used Memcached before a restart sent
its next call on a pooled connection the old server had closed. The call
failed, the take-off was dropped, and the orders stayed on their accounts'
order counts for the rest of the day. A real Memcached of the test's own is
restarted and killed here (the stack's is shared with other tests); the
counters' client is the one every gateway process builds."""
import pytest

from gateway.ratelimit import Counters, Limits, RateLimiter, counters_client
from tests.integration.throwaway_memcached import ThrowawayMemcached, free_port

LIMITS = Limits(weight_per_minute=1200, key_weight_per_minute=1200, orders_per_10s=50,
                orders_per_day=160_000, ban_after=3, ban_s=120)


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def memcached():
    server = ThrowawayMemcached(free_port()).start()
    yield server
    server.kill()


@pytest.fixture
def bridge_limiter(settings, memcached):
    """The limiter of the process whose push bridge is active, on the test's
    Memcached, with a clock the test moves."""
    client = counters_client(settings.with_overrides(EXCHANGE_MEMCACHED_PORT=str(memcached.port)))
    clock = Clock(1_796_688_000.0)          # 2026-12-08T00:00:00Z, the start of a day
    yield RateLimiter(Counters(client, clock), LIMITS), clock, client
    client.close()


def filled_counts(client, account: str, clock: Clock) -> dict[int, int]:
    """The account's first-filled counts in Memcached, per window (s)."""
    return {window: int(client.get(f"rl1:of:account:{account}:{window}:"
                                   f"{int(clock.now // window)}") or 0)
            for window in (10, 86400)}


def test_the_first_take_off_after_a_memcached_restart_is_not_lost(bridge_limiter, memcached):
    limiter, clock, client = bridge_limiter
    assert limiter.orders_filled([(1, "alice")]) == 1     # the pool holds a connection now
    memcached.restart()                                     # ... which the old server closed
    assert limiter.orders_filled([(2, "bob")]) == 1
    assert filled_counts(client, "bob", clock) == {10: 1, 86400: 1}


def test_take_offs_during_an_outage_are_sent_once_memcached_is_back(bridge_limiter, memcached):
    limiter, clock, client = bridge_limiter
    assert limiter.orders_filled([(1, "alice")]) == 1
    memcached.kill()
    assert limiter.orders_filled([(2, "bob"), (3, "bob"), (4, "carol")]) == 0
    assert limiter.orders_filled([(5, "carol")]) == 0
    memcached.start()                                       # empty: a new server
    clock.now += Counters.RETRY_AFTER_FAILURE_S + 1
    assert limiter.orders_filled([]) == 4                 # the bridge's next flush
    assert filled_counts(client, "bob", clock) == {10: 2, 86400: 2}
    assert filled_counts(client, "carol", clock) == {10: 2, 86400: 2}
    assert limiter.orders_filled([(2, "bob"), (5, "carol")]) == 0   # once per order
    assert filled_counts(client, "bob", clock) == {10: 2, 86400: 2}
