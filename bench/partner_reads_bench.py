"""Marketdata calls and time per answer of the /api/v3 reads that page
(gateway/api/binance.py: ``_candles`` for /klines, ``_first_trades`` for
/aggTrades with startTime, ``_trades_from_id`` for /aggTrades with fromId,
``_user_fills`` for /myTrades), on the running
stack: the gateway's own functions with a counting wrapper around a real RPC
proxy (no gateway process, no HTTP), so the count per shape is exact and the
time is marketdata's round trips.

    PYTHONPATH=. .venv/bin/python bench/partner_reads_bench.py [--repeat 20]

Prints, per request shape, the marketdata calls of one answer, the rows
answered and the median / max milliseconds over ``--repeat`` answers. The
shapes read the demo markets as they stand (BTC-USDT quiet, ETH-USDT busy
when the benches have run); the /myTrades shapes need a user id (``--user``)
and are skipped without it.
"""
from __future__ import annotations

import argparse
import statistics
import time

from gateway.api import binance
from services.common.config import load_settings
from tests.e2e.gateway.native_testkit import rpc_proxy


class Counting:
    def __init__(self, marketdata):
        self.marketdata, self.calls = marketdata, 0

    def __getattr__(self, name):
        method = getattr(self.marketdata, name)

        def call(*args):
            self.calls += 1
            return method(*args)
        return call


def shapes(now: int, user: str | None, last_btc: int):
    hour, day = 3_600_000, 86_400_000
    yield "klines ETH 1m last 500", lambda s: binance._candles(s, "ETH-USDT", "1m", None, None, 500)[0]
    yield "klines BTC 1m last 500", lambda s: binance._candles(s, "BTC-USDT", "1m", None, None, 500)[0]
    yield "klines BTC 1m startTime=0 limit 1", \
        lambda s: binance._candles(s, "BTC-USDT", "1m", 0, now, 1)[0]
    yield "klines BTC 1m since 10 d limit 1000", \
        lambda s: binance._candles(s, "BTC-USDT", "1m", now - 10 * day, None, 1000)[0]
    yield "klines BTC 1h since 48 h limit 1", \
        lambda s: binance._candles(s, "BTC-USDT", "1h", now - 48 * hour, None, 1)[0]
    for market in ("ETH-USDT", "BTC-USDT"):
        for limit in (3, 500, 1000):
            yield f"aggTrades {market[:3]} since 1 h limit {limit}", \
                lambda s, m=market, n=limit: binance._first_trades(s, m, now - hour, now + 1, n)
    for from_id in (0, max(last_btc - 1500, 1), last_btc):
        yield f"aggTrades BTC fromId {from_id} limit 1000", \
            lambda s, f=from_id: binance._trades_from_id(s, "BTC-USDT", f, 1000)
    if user:
        keep = (lambda t: t["market"] == "BTC-USDT")
        yield "myTrades BTC newest 500", \
            lambda s: binance._user_fills(s, user, None, None, keep, 500, False)
        yield "myTrades BTC since 1 d limit 500", \
            lambda s: binance._user_fills(s, user, now - day, None, keep, 500, True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--user", help="a user id for the /myTrades shapes")
    args = parser.parse_args()
    now = int(time.time() * 1000)
    with rpc_proxy(load_settings()) as rpc:
        print(f"{'shape':40s} {'calls':>5s} {'rows':>5s} {'median ms':>10s} {'max ms':>8s}")
        newest = rpc.marketdata.get_trades("BTC-USDT", 1)["trades"]
        last_btc = binance.trade_number(newest[0]["trade_id"]) if newest else 0
        for name, read in shapes(now, args.user, last_btc):
            times, calls, rows = [], 0, 0
            for _ in range(max(1, min(args.repeat, 200))):
                counting = Counting(rpc.marketdata)

                class Services:
                    marketdata = counting
                started = time.perf_counter()
                rows = len(read(Services))
                times.append((time.perf_counter() - started) * 1000)
                calls = counting.calls
            print(f"{name:40s} {calls:5d} {rows:5d} {statistics.median(times):10.1f} "
                  f"{max(times):8.1f}")


if __name__ == "__main__":
    main()
