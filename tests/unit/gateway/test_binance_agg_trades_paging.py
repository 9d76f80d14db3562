"""/api/v3/aggTrades' paging over marketdata (gateway/api/binance.py
``_first_trades``, ``_trades_from_id``), against a list with marketdata's
page rules: ``get_trades`` answers newest first, at most ``limit`` trades,
never splitting a millisecond (a cut inside one ends the page before it; a
millisecond alone holding more than ``limit`` is a page of its own), and
``next_end`` continues below the page; ``get_candles`` counts trades per
bucket of time. The shape is the demo's BTC-USDT minute that cost 47 calls:
milliseconds of 1020 trades between a few single ones."""
from gateway.api import binance

MINUTE, HOUR = 60_000, 3_600_000
SPANS = {"1m": MINUTE, "1h": HOUR, "1d": 86_400_000, "1w": 604_800_000}


class Marketdata:
    def __init__(self, trades: list[tuple[int, int]]):
        self.trades = sorted(trades)          # (executed_at, number), oldest first
        self.calls = 0

    def get_trades(self, symbol, limit, start, end):
        self.calls += 1
        rows = [t for t in reversed(self.trades) if start <= t[0] < end]
        page = rows[:limit]
        if len(rows) > limit and rows[limit][0] == page[-1][0]:
            split = page[-1][0]
            page = [t for t in page if t[0] != split] or [t for t in rows if t[0] == split]
        more = len(rows) > len(page)
        return {"trades": [{"trade_id": f"{symbol}-{n}", "executed_at": at} for at, n in page],
                "next_end": page[-1][0] if more else None}

    def get_candles(self, symbol, interval, start, end, limit):
        self.calls += 1
        span, counts = SPANS[interval], {}
        for at, _ in self.trades:
            bucket = at // span * span
            if start <= bucket < end:
                counts[bucket] = counts.get(bucket, 0) + 1
        rows = [[b, "0", "0", "0", "0", "0", "0", counts[b]] for b in sorted(counts)]
        return {"candles": rows[:limit]}


class Services:
    def __init__(self, marketdata):
        self.marketdata = marketdata


def busy_minute(start: int) -> list[tuple[int, int]]:
    """2053 trades in one minute: 2 single ones, then 1020 in one millisecond,
    6, 1020 in one millisecond, 5; numbered 1.. in time order."""
    times = [start + 100, start + 200] + [start + 6_319] * 1020 + \
        [start + 6_320 + i for i in range(6)] + [start + 34_209] * 1020 + \
        [start + 34_210 + i for i in range(5)]
    return [(at, n) for n, at in enumerate(times, start=1)]


def test_the_first_trades_of_an_hour_with_milliseconds_of_1020_trades():
    start = binance.now_ms() // MINUTE * MINUTE - 2 * HOUR
    marketdata = Marketdata(busy_minute(start))
    found = binance._first_trades(Services(marketdata), "BTC-USDT", start, start + HOUR, 2615,
                                  cut=False)
    assert [binance.trade_number(t["trade_id"]) for t in found] == list(range(1, 2054))
    # four pages do not reach the hour's start; the halved window keeps them
    # and reads on (before: 8 halvings of 4 pages each, 36 calls)
    assert marketdata.calls <= 8


def test_from_an_id_inside_the_busy_minute():
    start = binance.now_ms() // MINUTE * MINUTE - 2 * HOUR
    later = [(start + 5 * MINUTE + i, 2054 + i) for i in range(3)]
    marketdata = Marketdata(busy_minute(start) + later)
    services = Services(marketdata)
    page = binance._trades_from_id(services, "BTC-USDT", 1500, 1000)
    assert [binance.trade_number(t["trade_id"]) for t in page] == list(range(1500, 2057))
    assert binance._trades_from_id(services, "BTC-USDT", 0, 3) == \
        binance._trades_from_id(services, "BTC-USDT", 1, 3)
    assert [binance.trade_number(t["trade_id"]) for t in
            binance._trades_from_id(services, "BTC-USDT", 2055, 1000)] == [2055, 2056]
    assert binance._trades_from_id(services, "BTC-USDT", 2057, 1000) == []
