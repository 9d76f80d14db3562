"""``GET /api/v3/avgPrice`` (python-binance ``get_avg_price``): Binance's
current average price, the volume-weighted average price of the last 5
minutes' trades, ``{"mins": 5, "price", "closeTime": last trade time}``.
The gateway computes it from marketdata's 1m candles (the minutes opening
at or after now - 5 min, floored): checked here against the same minutes'
``/klines`` quote volume / volume, read before and after (a minute turning
in between: read again). Before session 12 the path was a 404."""
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from binance.exceptions import BinanceAPIException

import binance_testkit as kit
from binance_testkit import BINANCE, SYMBOL, TICK, quiet_price

MINUTE = 60_000


@pytest.fixture(scope="module")
def client(gateway_url):
    return kit.binance_client(gateway_url)


@pytest.fixture(scope="module")
def traded(gateway_url, maker, taker, settings):
    """Two trades of this module at two prices with different sizes, so that
    the weighted average differs from the plain one: their ids, once
    marketdata shows them."""
    ex_maker = kit.binance_local(gateway_url, maker.api_key, maker.secret)
    ex_taker = kit.binance_local(gateway_url, taker.api_key, taker.secret)
    low = quiet_price(settings)
    ids = []
    for price, qty in ((low, 0.003), (low + 3 * TICK, 0.001)):
        ex_maker.create_order(SYMBOL, "limit", "sell", qty, float(price))
        bought = ex_taker.create_order(SYMBOL, "limit", "buy", qty, float(price),
                                       {"timeInForce": "IOC"})
        assert bought["status"] == "closed"
        ids.append(int(bought["trades"][0]["id"]))

    def shown():
        page = kit.raw(settings, "GET", "/api/v3/aggTrades",
                       params={"symbol": BINANCE, "limit": 1000}).json()
        found = [t for t in page if t["a"] in ids]
        return found if len(found) == len(ids) else None
    return kit.eventually(shown)


def _klines_average(client, now: int) -> Decimal | None:
    start = (now - 5 * MINUTE) // MINUTE * MINUTE
    rows = client.get_klines(symbol=BINANCE, interval="1m", startTime=start, limit=10)
    volume = sum((Decimal(r[5]) for r in rows), Decimal(0))
    if not volume:
        return None
    quote = sum((Decimal(r[7]) for r in rows), Decimal(0))
    return (quote / volume).quantize(TICK, rounding=ROUND_HALF_EVEN)


def test_the_average_is_the_last_minutes_volume_weighted_price(client, traded):
    for _ in range(3):
        before = client.get_server_time()["serverTime"]
        expected = _klines_average(client, before)
        answer = client.get_avg_price(symbol=BINANCE)
        after = client.get_server_time()["serverTime"]
        if before // MINUTE == after // MINUTE and expected == _klines_average(client, after):
            break
    else:
        pytest.fail("the minute turned or the market traded during every attempt")
    assert answer["mins"] == 5 and expected is not None
    assert answer["price"] == f"{expected:.8f}"
    assert answer["closeTime"] >= max(t["T"] for t in traded)


def test_the_price_is_on_the_tick_grid_in_binance_format(client, traded):
    price = client.get_avg_price(symbol=BINANCE)["price"]
    assert len(price.split(".")[1]) == 8 and Decimal(price) % TICK == 0
    prices = sorted(Decimal(t["p"]) for t in traded)
    assert Decimal(price) > 0 and prices[0] - 100 < Decimal(price) < prices[-1] + 100


def test_an_unknown_symbol_is_binances_error(client):
    with pytest.raises(BinanceAPIException) as refused:
        client.get_avg_price(symbol="NOSUCHCOIN")
    assert refused.value.code == -1121
