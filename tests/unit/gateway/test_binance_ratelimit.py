"""Windowed counters, 429 with Retry-After, then a ban (418) for a client
that keeps going; a per-key order count. Memcached's verbs are played by a
dict here (the e2e flood test runs against the real one)."""
import pytest
from flask import Flask
from pymemcache.exceptions import MemcacheUnexpectedCloseError

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

    def decr(self, key, amount, noreply=False):
        if key not in self.values:
            return None
        self.values[key] = str(max(0, int(self.values[key]) - amount))
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


def test_the_keys_of_one_account_share_its_order_counts(limiter):
    """Binance tracks the unfilled order count per account, shared by all its
    API keys: a second key of the same user is refused at the account's limit,
    another user's key is not, and the count read is the account's."""
    rl, clock = limiter
    clock.now = 1_000_000.0                          # a 10 s window starts
    rl.charge_key("k1", 1, orders=True, account="u1")
    rl.charge_key("k2", 1, orders=True, account="u1")
    with pytest.raises(ApiError) as caught:
        rl.charge_key("k3", 1, orders=True, account="u1")
    assert (caught.value.status, caught.value.binance_code) == (429, -1015)
    rl.charge_key("k4", 1, orders=True, account="u2")
    assert [count for _, count in rl.order_counts("u1")] == [3, 3]
    assert [count for _, count in rl.order_counts("u2")] == [1, 1]


def test_order_counts_are_the_counters_orders_are_refused_on(limiter):
    """GET /api/v3/rateLimit/order: each ORDERS limit of exchangeInfo with the
    key's count in its window, what this process counted since its last
    sync included; the 10 s count starts again with its window."""
    rl, clock = limiter
    clock.now = 1_000_000.0                          # a 10 s window starts
    rl.charge_key("k1", 1, orders=True)
    rl.charge_key("k1", 1, orders=True)
    rl.charge_key("k1", 1)                           # a read: no order
    counts = [limit.binance(count) for limit, count in rl.order_counts("k1")]
    assert counts == [
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 2,
         "count": 2},
        {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 100,
         "count": 2}]
    assert [{k: v for k, v in c.items() if k != "count"} for c in counts] == \
        [r for r in LIMITS.binance_rate_limits() if r["rateLimitType"] == "ORDERS"]
    with pytest.raises(ApiError):                    # refused at the count shown + 1
        rl.charge_key("k1", 1, orders=True)
    assert [count for _, count in rl.order_counts("k2")] == [0, 0]
    clock.now += 10
    assert [count for _, count in rl.order_counts("k1")] == [0, 3]


def test_a_refused_order_is_given_back_and_does_not_use_up_the_allowance(limiter):
    """Binance counts the orders a request placed: a refusal (the balance, a
    filter, the limit itself) gives its order back, in the windows it was
    charged to, even when it ended in the next one."""
    from flask import g
    rl, clock = limiter
    clock.now = 1_000_000.0                          # a 10 s window starts
    rl.charge_key("k1", 1, orders=True)
    rl.give_back_orders()                            # refused (say -2010)
    assert [count for _, count in rl.order_counts("k1")] == [0, 0]
    rl.charge_key("k1", 1, orders=True)
    rl.charge_key("k1", 1, orders=True)              # 2: the limit
    with pytest.raises(ApiError) as caught:
        rl.charge_key("k1", 1, orders=True)
    assert caught.value.binance_code == -1015
    rl.give_back_orders()                            # the -1015 itself is not counted
    rl.give_back_orders()                            # once only
    assert [count for _, count in rl.order_counts("k1")] == [2, 2]
    assert [count for _, count in g.ratelimit_orders] == [2, 2]   # what the headers show
    clock.now += 9.5
    rl.charge_key("k2", 1, orders=2)                 # a batch of two, at 9.5 s
    clock.now += 1                                   # answered in the next window
    rl.give_back_orders(1)                           # one of them refused
    assert [count for _, count in rl.order_counts("k2")] == [0, 1]
    clock.now -= 1
    assert [count for _, count in rl.order_counts("k2")] == [1, 1]


@pytest.fixture
def two_processes():
    """Two gateway processes' limiters on one Memcached: (one, two, clock, memcache)."""
    clock, memcache = Clock(), DictMemcache()
    with Flask(__name__).test_request_context("/"):
        yield (RateLimiter(Counters(memcache, clock, sync_s=1.0), LIMITS),
               RateLimiter(Counters(memcache, clock, sync_s=1.0), LIMITS), clock, memcache)


def test_a_give_back_after_the_sync_reaches_memcached(two_processes):
    one, two, clock, _ = two_processes
    one.charge_key("k1", 1, orders=True)
    one.charge_key("k1", 1, orders=True)
    clock.now += 1.5                                 # past the sync interval
    one.give_back_orders()
    assert [count for _, count in two.order_counts("k1")] == [1, 1]


def test_another_process_reads_the_order_counts_once_synced(two_processes):
    one, two, _, memcache = two_processes
    one.charge_key("k1", 1, orders=True)
    assert [count for _, count in two.order_counts("k1")] == [1, 1]
    assert not any(key.startswith("rl1:o:key:k2") for key in memcache.values)
    two.order_counts("k2")                           # a read creates no counter
    assert not any(key.startswith("rl1:o:key:k2") for key in memcache.values)


def test_an_orders_first_fill_takes_it_off_its_accounts_order_counts_once(two_processes):
    """Binance: "When any order is filled for the first time (partially or
    fully), the order count will be decremented by 1 for the current
    10-second and 24-hour order count windows": so long as a bot's orders
    trade, it can keep trading. A later fill of the same order, the same
    trade seen again, or seen by another gateway process (the push bridge
    after a failover) takes nothing more."""
    one, two, clock, _ = two_processes
    clock.now = 1_000_000.0                          # a 10 s window starts
    one.charge_key("k1", 1, orders=True, account="u1")
    clock.now += 1.5
    one.charge_key("k2", 1, orders=True, account="u1")   # synced: 2, the limit
    # ``two`` plays the push bridge's process: it takes off in Memcached at
    # once (it never counts for u1, so it would never sync a pending change).
    assert two.orders_filled([(7, "u1"), (9, "u2")]) == 2
    assert [count for _, count in two.order_counts("u1")] == [1, 1]
    assert [count for _, count in two.order_counts("u2")] == [0, 0]   # never below 0
    assert two.orders_filled([(7, "u1")]) == 0       # filled again: once per order
    assert one.orders_filled([(7, "u1"), (9, "u2")]) == 0   # seen by another process
    clock.now += 1.5
    one.charge_key("k1", 1, orders=True, account="u1")   # 2 again: under the limit
    assert [count for _, count in one.order_counts("u1")] == [2, 2]
    assert two.orders_filled([(8, "u1")]) == 1       # another order of u1, first filled
    assert [count for _, count in two.order_counts("u1")] == [1, 1]


def test_a_fill_taken_off_before_its_orders_count_reached_memcached_is_not_lost(two_processes):
    """The e2e test's race: an order counted by one process and not synced
    yet (its count is that process's own for up to a second) filled, and
    taken off by the bridge's process first. A take-off that was a ``decr``
    of the placed count stopped at 0 there and was lost; a count of fills
    apart is not."""
    one, two, clock, _ = two_processes
    clock.now = 1_000_000.0
    one.charge_key("k1", 1, orders=True, account="u1")   # 1 in Memcached
    assert two.orders_filled([(21, "u1")]) == 1
    one.charge_key("k1", 1, orders=True, account="u1")   # one's own: not synced yet
    assert two.orders_filled([(22, "u1")]) == 1          # ... when it fills
    clock.now += 1.5
    assert [count for _, count in one.order_counts("u1")] == [0, 0]
    assert [count for _, count in two.order_counts("u1")] == [0, 0]


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


@pytest.mark.parametrize("failure", [OSError("connection refused"), EOFError(),
                                     MemcacheUnexpectedCloseError()])
def test_a_connection_lost_in_any_way_serves_unlimited_never_an_error(failure):
    """EOFError is what eventlet raises when another request's failure closed
    the pooled connection under this one's read (a 500 under load, once)."""
    class Lost:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise failure
            return fail

    with Flask(__name__).test_request_context("/"):
        rl = RateLimiter(Counters(Lost(), Clock()), LIMITS)
        assert rl.charge_ip("1.2.3.4", 5) == 0
        rl.charge_key("key-1", 1, orders=1)


class CountingMemcache(DictMemcache):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def incr(self, key, amount, noreply=False):
        self.calls += 1
        return super().incr(key, amount, noreply)

    def get(self, key):
        self.calls += 1
        return super().get(key)


def test_a_process_asks_memcached_once_per_counter_per_sync_interval():
    clock, memcache = Clock(), CountingMemcache()
    with Flask(__name__).test_request_context("/"):
        rl = RateLimiter(Counters(memcache, clock, sync_s=1.0), LIMITS)
        for used in range(1, 6):
            assert rl.charge_ip("1.2.3.4", 1) == used     # exact within the process
        asked = memcache.calls
        assert asked <= 3                                 # ban get, incr (+ add)
        clock.now += 1.0
        assert rl.charge_ip("1.2.3.4", 1) == 6
        assert memcache.calls <= asked + 2


def test_other_processes_see_the_counts_within_the_sync_interval():
    clock, memcache = Clock(), DictMemcache()
    with Flask(__name__).test_request_context("/"):
        one = RateLimiter(Counters(memcache, clock, sync_s=1.0), LIMITS)
        two = RateLimiter(Counters(memcache, clock, sync_s=1.0), LIMITS)
        for _ in range(4):
            one.charge_ip("1.2.3.4", 1)
        assert two.charge_ip("1.2.3.4", 1) == 2        # one synced only its first
        clock.now += 1.0
        one.charge_ip("1.2.3.4", 1)                      # syncs its 3 pending + 1
        clock.now += 1.0
        assert two.charge_ip("1.2.3.4", 1) == 7          # every count, once
        with pytest.raises(ApiError):                    # the 11th of 10 a minute
            for _ in range(11):
                one.charge_ip("9.9.9.9", 1)
        for _ in range(3):                               # ignoring the 429s: banned
            with pytest.raises(ApiError):
                one.charge_ip("9.9.9.9", 1)
        clock.now += 1.0
        with pytest.raises(ApiError) as caught:          # the ban reached the other
            two.charge_ip("9.9.9.9", 1)
        assert caught.value.status == 418


# ------------------------------------------------- paging reads (session 12)

class Marketdata:
    """Stands in for the marketdata RPC proxy: answers every verb with its name."""

    def __getattr__(self, verb):
        return lambda *args, **kwargs: verb


class Services:
    marketdata = Marketdata()
    orders = "orders proxy"


def test_a_paging_read_is_charged_its_weight_per_call_after_the_first(limiter, monkeypatch):
    """/klines made up to 12 marketdata calls, /aggTrades 33, /myTrades 16
    for the one weight of a single Binance call (review R, session 11 #5)."""
    from gateway import ratelimit
    rl, _clock = limiter
    monkeypatch.setattr(ratelimit, "limiter", lambda: rl)
    monkeypatch.setattr(ratelimit, "view_weight", lambda: 2)
    monkeypatch.setattr("gateway.auth.client_ip", lambda: "1.2.3.4")
    rl.charge_ip("1.2.3.4", 2)                     # before the view, as install() does
    metered = ratelimit.Metered(Services(), "marketdata")
    assert [metered.marketdata.get_candles(), metered.marketdata.get_trades()] == [
        "get_candles", "get_trades"]
    assert metered.orders == "orders proxy"        # other services pass through
    metered.marketdata.get_candles()
    metered.charge_pages()                         # 3 calls: 2 more pages of weight 2
    assert metered.calls == 3
    assert rl.charge_ip("1.2.3.4", 0) == 6
    # Over the limit afterwards: the answer was served, the next request is refused.
    for _ in range(3):
        metered.marketdata.get_candles()
    metered.charge_pages()                         # 6 calls: 10 more, 16 in all
    with pytest.raises(ApiError) as caught:
        rl.charge_ip("1.2.3.4", 1)
    assert caught.value.status == 429


def test_a_signed_paging_read_charges_its_key_too(limiter, monkeypatch):
    from gateway import ratelimit
    rl, _clock = limiter
    monkeypatch.setattr(ratelimit, "limiter", lambda: rl)
    monkeypatch.setattr(ratelimit, "view_weight", lambda: 4)
    monkeypatch.setattr("gateway.auth.client_ip", lambda: "1.2.3.4")
    rl.charge_key("k9", 4)
    metered = ratelimit.Metered(Services(), "marketdata")
    metered.marketdata.get_trades()
    metered.charge_pages()                         # one call: nothing more
    metered.marketdata.get_trades()
    metered.charge_pages()                         # two calls: 4 more
    with pytest.raises(ApiError):
        rl.charge_key("k9", 3)                     # 4 + 4 + 3 > 10


def test_a_paging_read_that_raises_part_way_is_still_charged_its_pages(limiter, monkeypatch):
    """``with Metered(...)`` charges the calls made when the view raises
    after some pages (an RPC timeout on the third, say): they were work done
    (review R, session 12 #4; before, charge_pages was skipped)."""
    from gateway import ratelimit
    rl, _clock = limiter
    monkeypatch.setattr(ratelimit, "limiter", lambda: rl)
    monkeypatch.setattr(ratelimit, "view_weight", lambda: 2)
    monkeypatch.setattr("gateway.auth.client_ip", lambda: "1.2.3.4")
    rl.charge_ip("1.2.3.4", 2)                     # before the view, as install() does
    with pytest.raises(RuntimeError):
        with ratelimit.Metered(Services(), "marketdata") as metered:
            for _ in range(3):
                metered.marketdata.get_candles()
            raise RuntimeError("the fourth page timed out")
    assert rl.charge_ip("1.2.3.4", 0) == 6         # 2 + 2 more pages of weight 2


class SwitchableMemcache(DictMemcache):
    """A Memcached that can be made unreachable, for every verb or for the
    keys that contain a given text."""

    def __init__(self):
        super().__init__()
        self.down_for = None          # None: up; "": every key; else keys containing it

    def _check(self, key):
        if self.down_for is not None and self.down_for in key:
            raise OSError("connection refused")

    def incr(self, key, amount, noreply=False):
        self._check(key)
        return super().incr(key, amount, noreply)

    def add(self, key, value, expire=0, noreply=False):
        self._check(key)
        return super().add(key, value, expire, noreply)

    def get(self, key):
        self._check(key)
        return super().get(key)


def filled_in_memcached(memcache, account, clock):
    """The account's first-filled counts in Memcached: {window: count}."""
    return {window: int(memcache.values.get(f"rl1:of:account:{account}:{window}:"
                                           f"{int(clock.now // window)}", 0))
            for window in (10, 86400)}


def test_a_take_off_memcached_could_not_be_told_is_sent_once_it_is_back():
    """The push bridge's take-off while Memcached is unreachable (a restart):
    the orders are kept, not lost, and taken off at the first flush after it
    is back (the bridge calls with no new fills too); each once."""
    clock, memcache = Clock(), SwitchableMemcache()
    with Flask(__name__).test_request_context("/"):
        rl = RateLimiter(Counters(memcache, clock), LIMITS)
        memcache.down_for = ""
        assert rl.orders_filled([(31, "u1"), (32, "u1"), (33, "u2")]) == 0
        assert rl.orders_filled([(34, "u2")]) == 0         # asked at once: still down
        memcache.down_for = None
        assert rl.orders_filled([]) == 0                   # within the pause after a failure
        clock.now += Counters.RETRY_AFTER_FAILURE_S + 1
        assert rl.orders_filled([]) == 4
        assert filled_in_memcached(memcache, "u1", clock) == {10: 2, 86400: 2}
        assert filled_in_memcached(memcache, "u2", clock) == {10: 2, 86400: 2}
        assert rl.orders_filled([(31, "u1"), (34, "u2")]) == 0   # once per order
        assert rl.orders_filled([]) == 0
        assert filled_in_memcached(memcache, "u1", clock) == {10: 2, 86400: 2}


def test_a_count_not_added_in_one_window_is_added_later_and_the_other_not_twice():
    """Marked first filled, then the count of one window fails: that window's
    count is added at a later call, the other window's is not added again."""
    clock, memcache = Clock(), SwitchableMemcache()
    with Flask(__name__).test_request_context("/"):
        rl = RateLimiter(Counters(memcache, clock), LIMITS)
        memcache.down_for = ":86400:"
        assert rl.orders_filled([(41, "u1")]) == 1
        assert filled_in_memcached(memcache, "u1", clock) == {10: 1, 86400: 0}
        memcache.down_for = None
        clock.now += Counters.RETRY_AFTER_FAILURE_S + 1
        assert rl.orders_filled([]) == 0                   # no order newly found filled ...
        assert filled_in_memcached(memcache, "u1", clock)[86400] == 1   # ... its count added
        ten_s_window_then = int((clock.now - Counters.RETRY_AFTER_FAILURE_S - 1) // 10)
        assert memcache.values[f"rl1:of:account:u1:10:{ten_s_window_then}"] == "1"


class ClosedOnce(DictMemcache):
    """Memcached restarted under a pooled connection: its next call raises
    what pymemcache raises on a closed connection, then calls go through."""

    def __init__(self, closed):
        super().__init__()
        self.closed = closed
        self.calls = 0

    def add(self, key, value, expire=0, noreply=False):
        self.calls += 1
        if self.closed:
            failure, self.closed = self.closed, None
            raise failure
        return super().add(key, value, expire, noreply)

    def incr(self, key, amount, noreply=False):
        self.calls += 1
        return super().incr(key, amount, noreply)


@pytest.mark.parametrize("closed", [MemcacheUnexpectedCloseError(), ConnectionResetError(),
                                    BrokenPipeError()])
def test_a_call_on_a_connection_memcached_closed_is_sent_again_once(closed):
    clock, memcache = Clock(), ClosedOnce(closed)
    with Flask(__name__).test_request_context("/"):
        rl = RateLimiter(Counters(memcache, clock), LIMITS)
        assert rl.orders_filled([(51, "u1")]) == 1
        assert filled_in_memcached(memcache, "u1", clock) == {10: 1, 86400: 1}


def test_a_timeout_is_not_sent_again():
    """A timeout may have reached Memcached: not repeated (the counters are
    skipped for a while instead, and the take-off kept)."""
    clock, memcache = Clock(), ClosedOnce(TimeoutError())
    with Flask(__name__).test_request_context("/"):
        rl = RateLimiter(Counters(memcache, clock), LIMITS)
        assert rl.orders_filled([(52, "u1")]) == 0
        assert memcache.calls == 1
        clock.now += Counters.RETRY_AFTER_FAILURE_S + 1
        assert rl.orders_filled([]) == 1


def test_an_ipv6_client_is_limited_by_its_64_not_by_each_address_it_sends_from(limiter):
    """A /64 is one client's: a limit per IPv6 address was escaped by sending
    each request from a new one."""
    rl, clock = limiter
    clock.now = 1_000_040.0
    assert rl.charge_ip("2001:db8:1:2::1", 6) == 6
    assert rl.charge_ip("2001:db8:1:2:ffff:ffff:ffff:fffe", 4) == 10
    with pytest.raises(ApiError) as caught:
        rl.charge_ip("2001:db8:1:2:1234::9", 1)
    assert caught.value.status == 429
    assert rl.charge_ip("2001:db8:1:3::1", 1) == 1     # the next /64 is another client
    rl.charge_work("2001:db8:1:3::2", 2)                # work charged to the same /64
    assert rl.charge_ip("2001:db8:1:3::3", 1) == 4
