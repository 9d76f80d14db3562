"""/api/v3/myTrades' paging of marketdata's fills (gateway/api/binance.py
``_user_fills``, ``_read_fills``): newest first it keeps reading until it has
``limit`` fills of the market asked for, oldest first it reads whole windows;
either way the answer has no gap. marketdata's verb is played here by a list
with its two caps (1000 fills, 24 hours holding fills per call): the e2e
test (tests/e2e/gateway/test_partner_my_trades.py) runs the real one."""
import pytest

from gateway.api import binance

HOUR = 3_600_000
T0 = 1_700_000_000_000


class Marketdata:
    def __init__(self, fills):
        self.fills = sorted(fills, key=lambda t: t["executed_at"], reverse=True)
        self.calls = 0

    def get_user_trades(self, user_id, limit, start, end):
        self.calls += 1
        out, hours = [], set()
        for t in self.fills:
            if (start is not None and t["executed_at"] < start) or \
                    (end is not None and t["executed_at"] >= end):
                continue
            hour = t["executed_at"] // HOUR
            if hour not in hours and len(hours) >= binance.USER_FILL_HOURS:
                break
            hours.add(hour)
            out.append(t)
            if len(out) >= limit:
                break
        return {"trades": out}


class Services:
    def __init__(self, fills):
        self.marketdata = Marketdata(fills)


def fills(count: int, spread_hours: int, markets=("BTC-USDT", "ETH-USDT")) -> list:
    """``count`` fills over ``spread_hours`` hours, the markets in turn; every
    tenth BTC-USDT one in a millisecond shared with the next fill."""
    step = spread_hours * HOUR // count
    out = []
    for n in range(count):
        market = markets[n % len(markets)]
        at = T0 + n * step - (step if n % 20 == 1 else 0)
        out.append({"trade_id": f"{market}-{n}", "role": "maker", "market": market,
                    "executed_at": at, "order_id": n})
    return out


def key(t):
    return (t["executed_at"], binance.trade_number(t["trade_id"]))


@pytest.mark.parametrize("count,hours,limit", [(50, 2, 500), (3000, 30, 500), (3000, 30, 1000),
                                               (5000, 100, 10), (2500, 3, 1000)])
def test_newest_first_answers_the_newest_of_the_market_without_a_gap(count, hours, limit):
    every = fills(count, hours)
    services = Services(every)

    def wanted(t):
        return t["market"] == "ETH-USDT"
    got = sorted(binance._user_fills(services, "u", None, None, wanted, limit, False), key=key)
    mine = sorted((t for t in every if wanted(t)), key=key)
    assert len(got) >= min(limit, len(mine))
    assert got == mine[len(mine) - len(got):]          # the newest ones, no gap
    assert services.marketdata.calls <= binance.USER_FILL_CALLS


@pytest.mark.parametrize("count,hours,limit", [(50, 2, 500), (3000, 30, 500), (2500, 3, 1000)])
def test_oldest_first_answers_the_first_from_start_without_a_gap(count, hours, limit):
    every = fills(count, hours)
    services = Services(every)
    start = T0 + HOUR // 2

    def wanted(t):
        return t["market"] == "BTC-USDT"
    got = binance._user_fills(services, "u", start, T0 + (hours + 1) * HOUR, wanted, limit, True)
    mine = sorted((t for t in every if wanted(t) and t["executed_at"] >= start), key=key)
    assert got == mine[:len(got)]                       # the first ones, no gap
    assert got                                           # and some
    assert services.marketdata.calls <= binance.USER_FILL_CALLS
