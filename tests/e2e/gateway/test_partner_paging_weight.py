"""The paging /api/v3 reads are charged by the work they do: Binance answers
``klines`` (weight 2) and ``aggTrades`` (4) with one indexed read, where the
gateway pages marketdata (up to 12 and 33 calls, bench/README.md session 11
helper E), so each call after the first costs the endpoint's weight again
(gateway/ratelimit.py ``Metered``). Before session 12 the request cost its
single-call weight whatever it made marketdata do.

Measured through the usage header (``X-MBX-USED-WEIGHT-1M``, the IP's weight
this minute) from a loopback address of the test's own, against the running
gateway: a ping (weight 1) before the read, a second apart so that every
gateway process has the other's count (gateway/ratelimit.py ``SYNC_S``)."""
import time

from tests.e2e.gateway.binance_testkit import BINANCE
from tests.e2e.gateway.binance_testkit import charged_weight as charged


def test_klines_from_the_first_kline_pay_for_every_page(settings):
    # startTime=0 (python-binance's search for a market's first kline): the
    # first 1000 minutes from marketdata's earliest time are empty, then the
    # coarser candles look for the first trade: two calls at least (three or
    # more once the market has traded).
    assert charged(settings, "/api/v3/klines", {"symbol": BINANCE, "interval": "1m",
                                                 "startTime": 0, "limit": 1000}) >= 2 * 2


def test_agg_trades_from_a_start_time_pay_for_every_call(settings):
    # From startTime: the minutes' trade counts first, then the trades.
    start = int(time.time() * 1000) - 3_000_000
    assert charged(settings, "/api/v3/aggTrades", {"symbol": BINANCE, "startTime": start,
                                                    "limit": 1000}) >= 4 * 2


def test_a_single_call_read_pays_its_weight_once(settings):
    # The last five minutes, 1000 klines at most: one call covers them.
    now = int(time.time() * 1000)
    assert charged(settings, "/api/v3/klines", {"symbol": BINANCE, "interval": "1m",
                                                 "startTime": now - 300_000, "endTime": now,
                                                 "limit": 1000}) == 2


def test_agg_trades_from_an_id_pay_for_every_call(settings):
    # fromId: the week, day, hour and minute of the trade number from the
    # candles' trade counts (4 calls), then the trades.
    assert charged(settings, "/api/v3/aggTrades", {"symbol": BINANCE, "fromId": 0,
                                                    "limit": 1000}) >= 4 * 5
