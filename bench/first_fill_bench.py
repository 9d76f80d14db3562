"""What taking first fills off the new-order counts costs the push bridge.

The one active private push bridge calls ``RateLimiter.orders_filled`` for
each trade's two orders (gateway/ratelimit.py): a Memcached ``add`` marks the
order, and its first fill adds one to the account's filled counter of each
order window (two more round trips). Measured here against the running
stack's Memcached (``make up`` or ``python -m stack servers``), in one
process and thread as the bridge runs it, with the trade's other costs
(a fill push per side) left out. Printed: microseconds of wall and CPU per
trade for a trade whose two orders fill for the first time, for one whose
orders filled before (this process remembers them: no round trip), for one
another process marked (the Memcached ``add`` only), for a trade among a
flush's 150 (the bridge takes off once per flush: one increment per account
and window), and the baseline of one Memcached ``get`` round trip measured
in the same run.

    PYTHONPATH=. .venv/bin/python bench/first_fill_bench.py [--trades 5000]
"""
from __future__ import annotations

import argparse
import time
import uuid

from pymemcache.client.base import PooledClient

from gateway.ratelimit import Counters, Limits, RateLimiter
from services.common.config import load_settings


def timed(label: str, count: int, work) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:<58} {wall / count * 1e6:8.1f} us wall {cpu / count * 1e6:8.1f} us CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=5000)
    args = parser.parse_args()
    settings = load_settings()
    client = PooledClient((settings.server_host("memcached"),
                           settings.int("EXCHANGE_MEMCACHED_PORT")),
                          connect_timeout=0.5, timeout=0.5, max_pool_size=4, no_delay=True)
    limits = Limits.from_settings(settings)
    run = uuid.uuid4().hex[:8]
    # Order ids of this run only (strings: the marks must not meet real orders').
    trades = [((f"bench-{run}-{i}-m", f"bench-{run}-maker"),
               (f"bench-{run}-{i}-t", f"bench-{run}-taker-{i % 64}"))
              for i in range(args.trades)]
    n = len(trades)
    print(f"{n} trades, {len(limits.order_limits)} order windows, Memcached "
          f"{settings.server_host('memcached')}:{settings.int('EXCHANGE_MEMCACHED_PORT')}")
    timed("baseline: one Memcached get", n, lambda: [client.get(f"bench-{run}-none")
                                                     for _ in range(n)])
    bridge = RateLimiter(Counters(client), limits)
    timed("a trade, both orders first filled", n,
          lambda: [bridge.orders_filled(trade) for trade in trades])
    timed("a trade, both orders filled before (this process)", n,
          lambda: [bridge.orders_filled(trade) for trade in trades])
    failed_over = RateLimiter(Counters(client), limits)
    timed("a trade, both filled before (marked by another process)", n,
          lambda: [failed_over.orders_filled(trade) for trade in trades])
    # As the bridge calls it: a flush's trades (0.25 s at 600 trades/s) in one
    # call, the makers one market maker's account, the takers 64 accounts.
    flushes = [[side for i in range(start, start + 150) for side in (
        (f"bench-{run}-f{i}-m", f"bench-{run}-mm"), (f"bench-{run}-f{i}-t",
                                                     f"bench-{run}-taker-{i % 64}"))]
               for start in range(0, n, 150)]
    flushing = RateLimiter(Counters(client), limits)
    timed("a trade in a flush of 150 (one maker's account)", len(flushes) * 150,
          lambda: [flushing.orders_filled(flush) for flush in flushes])


if __name__ == "__main__":
    main()
