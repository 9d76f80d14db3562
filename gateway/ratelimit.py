"""Rate limits of the partner APIs, as Binance does them, shared by every
gateway process through Memcached counters.

* request weight per minute, per client IP (every request; an IPv6
  client's /64, gateway/auth.py ``limits_address``) and per API key
  (signed requests, charged once the key is verified);
* new orders per 10 seconds and per day, per account (Binance's "unfilled
  order count is tracked per account", shared by all its API keys and a
  person's own requests): the orders placed,
  as Binance counts them; an order is counted before the check (so that
  concurrent requests cannot pass a limit together) and given back when its
  request is refused (a 4xx answer, -1015 included) or, in a batch, when it
  is (``give_back_orders``); an order's first fill takes it off again, in
  the windows current then (``orders_filled``, called at each flush of the
  push bridge that sees every trade: Binance's "orders which are partially
  or fully filled do not count", decremented once per order, asynchronously);
* a refused request answers 429 (``-1003``, ``Retry-After``: seconds left in
  the window); a client that keeps sending (more than ``BAN_AFTER`` refused
  requests in one minute) is banned for ``BAN_S`` seconds: 418 with
  ``Retry-After`` until the ban ends, whatever it asks.

Usage headers on every response of a limited API: ``X-MBX-USED-WEIGHT-1M``
(the IP's weight this minute), and on order endpoints
``X-MBX-ORDER-COUNT-10S`` / ``X-MBX-ORDER-COUNT-1D``. GET
/api/v3/rateLimit/order reads the same order counters (``order_counts``);
each limit is described once (``Limits``, ``OrderLimit``), and exchangeInfo's
``rateLimits`` is made from that description.

Counters are fixed windows (``floor(now / window)`` in the key), incremented
atomically (``incr``; ``add`` creates a missing one, a lost ``add`` race
falls back to ``incr``), expiring shortly after their window. Memcached
unreachable: requests are served unlimited and a warning is logged once a
minute (a cache outage must not take the API down; /health reports it).

Each process syncs with Memcached at most once per counter per ``SYNC_S``
(1 s): in between it adds to the last value Memcached returned what it has
counted since, and sends its sum with the next ``incr``; a ban it looked up
is believed as long. Memcached round trips were the largest part of the
gateway's CPU per order (six per order: bench/README.md, session 6). What
this costs: a process sees what the *other* gateway processes counted up to
``SYNC_S`` late, so across processes a limit can be exceeded by at most
what the others accepted in the last second, and a ban reaches them within
a second; within one process the counts are exact.

Use it on a blueprint: ``ratelimit.install(blueprint)`` charges every
request the weight its view declares with ``@ratelimit.weight(n)`` (or a
function of the request), default 1; ``charge_key(api_key_id, ...)`` after
authentication adds the per-key weight and the account's order counts; a view that pages
a service (``Metered``) is charged its weight again per call after the
first, once the work is done.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from flask import current_app, g, request
from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheError, MemcacheUnexpectedCloseError
from pymemcache.pool import ObjectPool

from gateway.auth import limits_address
from gateway.errors import MSG_TOO_MANY, ApiError
from services.common import metrics

log = logging.getLogger(__name__)

PREFIX = "rl1:"
MINUTE, DAY = 60, 86400
MSG_BANNED = "Way too many requests; IP banned until %d. Please use the websocket for live " \
             "updates to avoid bans."
MSG_TOO_MANY_ORDERS = "Too many new orders; current limit is %d orders per %s."


INTERVAL_S = {"SECOND": 1, "MINUTE": MINUTE, "HOUR": 3600, "DAY": DAY}
# The new-order windows, as Binance names them (interval, intervalNum),
# shortest first; their limits are settings (``Limits.order_limits``).
ORDER_WINDOWS = (("SECOND", 10), ("DAY", 1))
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


def order_count_header(interval: str, interval_num: int) -> str:
    """Binance's usage header: X-MBX-ORDER-COUNT-(intervalNum)(intervalLetter)."""
    return f"X-MBX-ORDER-COUNT-{interval_num}{interval[0]}"


# What a response of a limited API may carry about the caller's usage.
USAGE_HEADERS = (USED_WEIGHT_HEADER, *(order_count_header(*w) for w in ORDER_WINDOWS))


@dataclass(frozen=True)
class OrderLimit:
    """One ORDERS limit as Binance names it: ``limit`` new orders per
    ``interval_num`` ``interval`` (SECOND, MINUTE, HOUR, DAY), per account.
    The one description of the limit: ``charge_key`` counts and refuses by
    it, and exchangeInfo's ``rateLimits``, GET /api/v3/rateLimit/order and
    the ``X-MBX-ORDER-COUNT-*`` headers show it."""
    interval: str
    interval_num: int
    limit: int

    @property
    def window_s(self) -> int:
        return self.interval_num * INTERVAL_S[self.interval]

    @property
    def header(self) -> str:
        return order_count_header(self.interval, self.interval_num)

    @property
    def per(self) -> str:
        """The interval as Binance's -1015 message writes it (``10SECOND``, ``DAY``)."""
        return self.interval if self.interval_num == 1 else f"{self.interval_num}{self.interval}"

    def binance(self, count: int | None = None) -> dict:
        """The ``rateLimits`` entry; with ``count``, rateLimit/order's."""
        entry = {"rateLimitType": "ORDERS", "interval": self.interval,
                 "intervalNum": self.interval_num, "limit": self.limit}
        if count is not None:
            entry["count"] = count
        return entry


@dataclass(frozen=True)
class Limits:
    weight_per_minute: int
    key_weight_per_minute: int
    orders_per_10s: int
    orders_per_day: int
    ban_after: int
    ban_s: int

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        return cls(settings.int("EXCHANGE_GATEWAY_WEIGHT_PER_MINUTE"),
                   settings.int("EXCHANGE_GATEWAY_KEY_WEIGHT_PER_MINUTE"),
                   settings.int("EXCHANGE_GATEWAY_ORDERS_PER_10S"),
                   settings.int("EXCHANGE_GATEWAY_ORDERS_PER_DAY"),
                   settings.int("EXCHANGE_GATEWAY_BAN_AFTER"),
                   settings.int("EXCHANGE_GATEWAY_BAN_S"))

    @property
    def order_limits(self) -> tuple[OrderLimit, ...]:
        """The new-order limits per account, shortest window first."""
        return tuple(OrderLimit(interval, num, limit) for (interval, num), limit
                     in zip(ORDER_WINDOWS, (self.orders_per_10s, self.orders_per_day), strict=True))

    def binance_rate_limits(self) -> list[dict]:
        """``rateLimits`` of exchangeInfo: what this gateway enforces."""
        return [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.weight_per_minute}] + [o.binance() for o in self.order_limits]


SYNC_S = 1.0
# How long an order's first fill is remembered (Memcached ``add`` of
# ``ff:<order id>``, atomic across gateway processes and kept across a
# failover of the push bridge). Long enough for an order's fills close
# together to be taken off once; short enough that the marks of a busy day
# do not crowd the cache (a mark is about 70 bytes: 15 minutes at 1,000
# filled orders/s is about 60 MB of the 128 MB). An order filled again after
# its mark is gone is taken off again: lenient, once per 15 minutes at most.
FIRST_FILL_MARK_S = 900
# Orders this process knows were filled before: their later fills skip the
# Memcached round trip (bounded; the Memcached mark decides).
FILLED_SEEN_MAX = 100_000
PRUNE_AFTER = 10_000
# What a Memcached call raises when the server or the connection goes away:
# EOFError too, raised by eventlet when the socket is closed under a pending
# read (a failure clears the pool, closing the clients other requests are
# using): it answered a partner's order batch 500 under load (session 8).
CACHE_DOWN = (OSError, EOFError, MemcacheError)
# What a call on a connection Memcached has closed raises: after a restart of
# Memcached every idle pooled connection is such. The server running now never
# saw the call, so it is sent again, once, on a fresh connection (at worst,
# a counter the old server did count is counted twice: a count errs high).
# Before, a process that outlived a Memcached restart failed its next call
# there, and an order's first-fill take-off then was lost (session 27).
CONNECTION_CLOSED = (MemcacheUnexpectedCloseError, ConnectionResetError, BrokenPipeError)
# Orders (and accounts' counts) whose take-off Memcached could not be told
# (unreachable), kept for the next ``orders_filled`` call, at most: beyond,
# they are not taken off and the counts stay higher, never lower.
UNTAKEN_MAX = 100_000


@dataclass
class _Local:
    """One counter as this process knows it: Memcached's value at the last
    sync, what this process added since, when it synced, when its window ends."""
    synced: int
    pending: int
    synced_at: float
    window_end: float


class Counters:
    """Windowed counters in Memcached (atomic across processes), synced at
    most once per ``sync_s`` per counter (module docstring).

    After a failed call the counters are skipped for ``RETRY_AFTER_FAILURE_S``
    (requests are served unlimited meanwhile): a dead Memcached must not add
    its connect timeout to every request."""

    RETRY_AFTER_FAILURE_S = 5.0

    def __init__(self, client, clock: Callable[[], float] = time.time, sync_s: float = SYNC_S):
        self.client = client
        self.clock = clock
        self.sync_s = sync_s
        self._warned_at = 0.0
        self._down_until = 0.0
        self._local: dict[str, _Local] = {}
        self._bans: dict[str, tuple[int | None, float]] = {}

    def _failed(self) -> None:
        now = self.clock()
        self._down_until = now + self.RETRY_AFTER_FAILURE_S
        # After a Memcached restart every idle pooled connection is dead; each
        # failure drops only the one it used, so with many idle ones the
        # counters stayed off for minutes (one per 5 s pause). Drop them all:
        # the next call after the pause opens a fresh connection.
        pool = self._pool()
        if pool is not None:
            pool.clear()
        if now - self._warned_at > MINUTE:
            self._warned_at = now
            log.warning("rate-limit counters unavailable (Memcached): serving unlimited",
                        exc_info=True)

    def _pool(self) -> ObjectPool | None:
        """The client's connection pool (a PooledClient's; None for others)."""
        pool = getattr(self.client, "client_pool", None)
        return pool if isinstance(pool, ObjectPool) else None

    def _down(self) -> bool:
        return self.clock() < self._down_until

    def _call(self, verb: str, *args, **kwargs):
        """The client's ``verb``, sent again once on a fresh connection when
        Memcached had closed the one it went out on (``CONNECTION_CLOSED``)."""
        try:
            return getattr(self.client, verb)(*args, **kwargs)
        except CONNECTION_CLOSED:
            self._drop_idle_connections()
            return getattr(self.client, verb)(*args, **kwargs)

    def _drop_idle_connections(self) -> None:
        """Close the pool's idle connections (all dead when one was: Memcached
        restarted), not those other requests are using now."""
        pool = self._pool()
        if pool is not None:
            for _ in range(len(pool.free)):
                pool.destroy(pool.get())   # get() takes an idle one first

    def add(self, name: str, window: int, amount: int,
            at: float | None = None) -> tuple[int, int]:
        """Add ``amount`` (negative: give back) to the counter of the window
        holding ``at`` (default now): (new value, seconds left)."""
        now = self.clock()
        slot = int((now if at is None else at) // window)
        left = max(1, int((slot + 1) * window - now + 0.999))
        key = f"{PREFIX}{name}:{window}:{slot}"
        if self._down():
            return 0, left
        local = self._local.get(key)
        if local is not None and now - local.synced_at < self.sync_s:
            local.pending += amount
            return local.synced + local.pending, left
        amount += local.pending if local is not None else 0
        try:
            value = self._incr(key, window, amount)
        except CACHE_DOWN:
            self._failed()
            return 0, left
        if len(self._local) >= PRUNE_AFTER:
            self._local = {k: v for k, v in self._local.items() if v.window_end > now}
        self._local[key] = _Local(value, 0, now, (slot + 1) * window)
        return value, left

    def _incr(self, key: str, window: int, amount: int) -> int:
        if amount == 0:                 # a read: nothing to send, no counter to create
            value = self._call("get", key)
            return int(value) if value else 0
        if amount < 0:                  # given back: Memcached's decr stops at 0
            value = self._call("decr", key, -amount, noreply=False)
            return int(value or 0)
        value = self._call("incr", key, amount, noreply=False)
        if value is None:
            if self._call("add", key, str(amount), expire=window + 5, noreply=False):
                return amount
            value = self._call("incr", key, amount, noreply=False)
        return int(value or 0)

    def mark_once(self, name: str, expire_s: int) -> bool | None:
        """Mark ``name`` in Memcached for ``expire_s``: True for the one call
        that marked it, across processes (Memcached's ``add`` is atomic);
        False when it was marked already; None when Memcached could not be
        asked (unreachable): neither is known."""
        if self._down():
            return None
        try:
            return bool(self._call("add", f"{PREFIX}{name}", "1", expire=expire_s,
                                   noreply=False))
        except CACHE_DOWN:
            self._failed()
            return None

    def add_now(self, name: str, window: int, amount: int) -> bool:
        """Add ``amount`` (> 0) to the counter of the current window in
        Memcached now, not at this process's next sync of it as ``add``
        would: the process adding (the push bridge's) is rarely one that
        reads the counter, so it might never sync. This process's own view of
        the counter catches up at its next sync. False when Memcached could
        not be told (unreachable): nothing was added."""
        if self._down():
            return False
        key = f"{PREFIX}{name}:{window}:{int(self.clock() // window)}"
        try:
            self._incr(key, window, amount)
        except CACHE_DOWN:
            self._failed()
            return False
        return True

    def read(self, name: str, window: int) -> int:
        """This window's counter as ``add`` would answer it, adding nothing:
        what this process counted since its last sync included (a stale
        one is synced, sending what it counted, as ``add`` does)."""
        return self.add(name, window, 0)[0]

    def banned_until(self, who: str) -> int | None:
        if self._down():
            return None
        now = self.clock()
        until, checked_at = self._bans.get(who, (None, float("-inf")))
        if now - checked_at >= self.sync_s:
            try:
                value = self._call("get", f"{PREFIX}ban:{who}")
            except CACHE_DOWN:
                self._failed()
                return None
            until = int(value) if value else None
            if len(self._bans) >= PRUNE_AFTER:
                self._bans = {w: b for w, b in self._bans.items() if now - b[1] < self.sync_s}
            self._bans[who] = (until, now)
        return until if until and until > now else None

    def ban(self, who: str, seconds: int) -> int:
        until = int(self.clock()) + seconds
        self._bans[who] = (until, self.clock())
        try:
            self._call("set", f"{PREFIX}ban:{who}", str(until), expire=seconds + 1, noreply=False)
        except CACHE_DOWN:
            self._failed()
        return until


class RateLimiter:
    def __init__(self, counters: Counters, limits: Limits):
        self.counters = counters
        self.limits = limits
        self._filled_seen: set = set()
        # Take-offs Memcached could not be told (orders_filled): fills not
        # marked yet, and counts of orders marked but not yet added.
        self._undecided_fills: list[tuple[int, str]] = []
        self._untaken: dict[tuple[str, int], int] = {}

    def _refuse(self, who: str, left: int, message: str, code: int = -1003) -> ApiError:
        """429, or 418 and a ban once the client has ignored enough 429s."""
        metrics.RATE_LIMIT_REFUSALS.labels(who.partition(":")[0]).inc()  # ip or key
        refused, _ = self.counters.add(f"refused:{who}", MINUTE, 1)
        if refused > self.limits.ban_after:
            until = self.counters.ban(who, self.limits.ban_s)
            return banned(until, self.limits.ban_s)
        return ApiError(429, "RATE_LIMITED", message, code, message,
                        headers={"Retry-After": str(left)})

    def check_ban(self, who: str) -> None:
        until = self.counters.banned_until(who)
        if until is not None:
            raise banned(until, max(1, until - int(self.counters.clock())))

    def charge_ip(self, ip: str, weight: int) -> int:
        """Charge the IP (its ``limits_address``); returns the weight used this
        minute or raises 429/418."""
        who = f"ip:{limits_address(ip)}"
        self.check_ban(who)
        used, left = self.counters.add(f"w:{who}", MINUTE, weight)
        g.ratelimit_used_weight = used
        if used > self.limits.weight_per_minute:
            raise self._refuse(who, left, MSG_TOO_MANY % self.limits.weight_per_minute)
        return used

    def charge_key(self, key_id: str, weight: int, orders: int = 0,
                   account: str | None = None) -> None:
        """Charge an authenticated key: weight, and ``orders`` new orders
        (True: one) to its ``account``'s order counts (the user the key
        belongs to; None: the key is its own account)."""
        who = key_who(key_id)
        g.ratelimit_key = key_id
        self.check_ban(who)
        used, left = self.counters.add(f"w:{who}", MINUTE, weight)
        if used > self.limits.key_weight_per_minute:
            raise self._refuse(who, left, MSG_TOO_MANY % self.limits.key_weight_per_minute)
        if not orders:
            return
        charged_at = self.counters.clock()
        account = account or key_id
        counted, filled = [], []
        for limit in self.limits.order_limits:
            placed, left = self.counters.add(order_counter(account), limit.window_s, int(orders))
            filled.append(self.counters.read(filled_counter(account), limit.window_s))
            counted.append((limit, max(0, placed - filled[-1]), left))
        g.ratelimit_orders = [(limit, count) for limit, count, _ in counted]
        # What a refusal gives back (give_back_orders): counted before the
        # check, so that concurrent requests cannot pass the limit together.
        g.ratelimit_order_charge = (account, int(orders), charged_at, filled)
        for limit, count, left in counted:
            if count > limit.limit:
                raise self._refuse(who, left, MSG_TOO_MANY_ORDERS % (limit.limit, limit.per),
                                   -1015)

    def give_back_orders(self, count: int | None = None) -> None:
        """Take ``count`` (default: all) of the current request's new orders
        off its key's order counts: they were refused. Binance counts only the
        orders a request placed ("Every successful request to place an order
        adds to the unfilled order count"), so a bot refused for its balance,
        a filter or the limit itself (-2010, -1013, -1015) does not use up
        its allowance here either. The windows charged are the ones given
        back, even when the request ended in the next one."""
        charge = getattr(g, "ratelimit_order_charge", None)
        if charge is None:
            return
        account, orders, charged_at, filled = charge
        count = orders if count is None else min(count, orders)
        if count <= 0:
            return
        g.ratelimit_order_charge = (account, orders - count, charged_at, filled)
        g.ratelimit_orders = [
            (limit, max(0, self.counters.add(order_counter(account), limit.window_s, -count,
                                             at=charged_at)[0] - filled_then))
            for limit, filled_then in zip(self.limits.order_limits, filled, strict=True)]

    def orders_filled(self, fills) -> int:
        """``fills``: ``(order id, account)`` of trades' orders. Each
        order's FIRST fill takes one order off its account's count in every
        new-order window current now (``filled_counter``; Binance: "When any order is filled for
        the first time (partially or fully), the order count will be
        decremented by 1 for the current 10-second and 24-hour order count
        windows"); a later fill, or the same trade seen again (a redelivery),
        takes nothing. What Memcached could not be told (unreachable) is kept
        and sent by a later call, the first after it is back (the push bridge
        calls at every flush, with no fills too). Returns how many orders
        were found first filled."""
        undecided, self._undecided_fills = self._undecided_fills, []
        if not fills and not undecided and not self._untaken:
            return 0
        seen = self._filled_seen
        first_filled: dict[str, int] = {}
        pending = [*undecided, *fills]
        for index, (order_id, account) in enumerate(pending):
            if not account or order_id in seen:
                continue
            marked = self.counters.mark_once(f"ff:{order_id}", FIRST_FILL_MARK_S)
            if marked is None:          # Memcached unreachable: these, again next time
                self._keep_undecided(pending[index:])
                break
            if len(seen) >= FILLED_SEEN_MAX:
                seen.clear()
            seen.add(order_id)
            if marked:
                first_filled[account] = first_filled.get(account, 0) + 1
        # One increment per account and window for all of its orders here
        # (the push bridge passes a flush's trades: a market maker's many);
        # per window, so that one that failed is not added twice to the other.
        untaken, self._untaken = self._untaken, {}
        for account, count in first_filled.items():
            for limit in self.limits.order_limits:
                key = (account, limit.window_s)
                untaken[key] = untaken.get(key, 0) + count
        for (account, window), count in untaken.items():
            if not self.counters.add_now(filled_counter(account), window, count) \
                    and len(self._untaken) < UNTAKEN_MAX:
                self._untaken[(account, window)] = count
        return sum(first_filled.values())

    def _keep_undecided(self, fills: list) -> None:
        room = UNTAKEN_MAX - len(self._undecided_fills)
        if len(fills) > room:
            log.warning("%d filled orders not taken off their order counts: Memcached has "
                        "been unreachable for too many", len(fills) - room)
        self._undecided_fills.extend(fills[:room])

    def order_counts(self, account: str) -> list[tuple[OrderLimit, int]]:
        """Each new-order limit with the account's count in its current
        window: the counters ``charge_key`` refuses on (GET
        /api/v3/rateLimit/order)."""
        return [(limit, max(0, self.counters.read(order_counter(account), limit.window_s)
                            - self.counters.read(filled_counter(account), limit.window_s)))
                for limit in self.limits.order_limits]

    def charge_work(self, ip: str, weight: int) -> None:
        """Charge the current request ``weight`` more for work it has done
        (a paging read's calls beyond its first): the IP, and its key when
        the request was signed. Never refuses: the answer is computed, and
        the next request over a limit is refused."""
        if weight <= 0:
            return
        g.ratelimit_used_weight, _ = self.counters.add(f"w:ip:{limits_address(ip)}", MINUTE,
                                                       weight)
        key_id = getattr(g, "ratelimit_key", None)
        if key_id is not None:
            self.counters.add(f"w:{key_who(key_id)}", MINUTE, weight)


def order_counter(account: str) -> str:
    """The name of an account's new-order counters (the orders placed)."""
    return f"o:account:{account}"


def filled_counter(account: str) -> str:
    """The name of the counters of an account's orders first filled in each
    window. The account's count is the orders placed less these, never
    below 0. Two counters that only grow, not one taken down: Memcached's
    ``decr`` stops at 0, so a take-off reaching Memcached before the
    increment a process has not synced yet would be lost. What it costs:
    more first fills in a window than orders placed in it (orders placed in
    an earlier window, or over RPC past the gateway) make room for as many
    more orders in that window, where a count taken down would stop at 0."""
    return f"of:account:{account}"


def key_who(key_id: str) -> str:
    """Whom a key's counters and ban are kept under."""
    return f"key:{key_id}"


def banned(until: int, retry_after: int) -> ApiError:
    message = MSG_BANNED % (until * 1000)
    return ApiError(418, "BANNED", message, -1003, message,
                    headers={"Retry-After": str(retry_after)})


def limiter(app=None) -> RateLimiter:
    """The app's limiter (one pooled Memcached client per process)."""
    app = app or current_app
    found = app.extensions.get("rate_limiter")
    if found is None:
        settings = app.config["SETTINGS"]
        found = app.extensions["rate_limiter"] = RateLimiter(Counters(counters_client(settings)),
                                                             Limits.from_settings(settings))
    return found


def counters_client(settings) -> PooledClient:
    """The Memcached client of a process's counters."""
    from gateway.app import MAX_CONCURRENT_REQUESTS
    # As many clients as requests in flight: a request holds one at a time,
    # so the pool never runs out (at 32, 64 concurrent callers got
    # pymemcache's "Too many objects" as a 500). Connections open on demand.
    return PooledClient((settings.server_host("memcached"), settings.int("EXCHANGE_MEMCACHED_PORT")),
                        connect_timeout=0.5, timeout=0.5, max_pool_size=MAX_CONCURRENT_REQUESTS,
                        no_delay=True)


# ------------------------------------------------------------------ Flask glue

def weight(amount: int | Callable[[], int]):
    """Declare a view's request weight (an int, or a function of the request)."""
    def mark(view):
        view.request_weight = amount
        return view
    return mark


def view_weight() -> int:
    """The current request's weight, as its view declares it."""
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    amount = getattr(view, "request_weight", 1)
    return amount() if callable(amount) else amount


class Metered:
    """The request's RPC proxies with one service's calls counted:
    ``metered.<service>.<verb>(...)`` calls through and counts. A paging read
    (/api/v3 klines, aggTrades, myTrades: up to 12, 33 (111 from fromId) and
    16 marketdata calls) costs the exchange a call's work per page, where Binance answers
    one indexed read for the endpoint's weight: ``charge_pages`` charges the
    view's weight again for every call after the first, as if the client
    had paged itself. ``with Metered(...) as metered:`` charges them when
    the block ends, also when it raises part-way (the calls made were work
    done)."""

    def __init__(self, services, name: str):
        self._services, self.calls = services, 0
        setattr(self, name, _Counted(getattr(services, name), self))

    def __getattr__(self, name):
        return getattr(self._services, name)

    def __enter__(self) -> "Metered":
        return self

    def __exit__(self, *exc_info) -> None:
        self.charge_pages()

    def charge_pages(self) -> None:
        """Charge the request its view's weight for each call after the first."""
        from gateway.auth import client_ip
        if self.calls > 1:
            limiter().charge_work(client_ip(), view_weight() * (self.calls - 1))


class _Counted:
    def __init__(self, service, meter: Metered):
        self._service, self._meter = service, meter

    def __getattr__(self, verb):
        method = getattr(self._service, verb)

        def call(*args, **kwargs):
            self._meter.calls += 1
            return method(*args, **kwargs)
        return call


def orders_placed_despite_refusal() -> None:
    """The current request answers 4xx but placed its new order (a
    cancelReplace whose cancel failed under ALLOW_FAILURE: 409 -2021): the
    order counts, as every order placed does."""
    g.ratelimit_orders_placed = True


def install(blueprint) -> None:
    """Charge every request of ``blueprint`` its weight by client IP, and stamp
    the usage headers on its responses (refusals included)."""
    from gateway.auth import client_ip

    @blueprint.before_request
    def charge_request_weight():
        limiter().charge_ip(client_ip(), view_weight())

    @blueprint.after_request
    def usage_headers(response):
        if 400 <= response.status_code < 500 and not getattr(g, "ratelimit_orders_placed", False):
            # Refused (by the limit, a filter, the balance...): its new
            # orders do not count (RateLimiter.give_back_orders).
            limiter().give_back_orders()
        used = getattr(g, "ratelimit_used_weight", None)
        if used is not None:
            response.headers[USED_WEIGHT_HEADER] = str(used)
        for limit, count in getattr(g, "ratelimit_orders", ()):
            response.headers[limit.header] = str(count)
        return response
