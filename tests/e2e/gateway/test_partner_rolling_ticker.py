"""``GET /api/v3/ticker``: Binance's rolling window statistics
(python-binance ``get_symbol_ticker_window``, ccxt ``fetch_ticker(s)`` with
``{"rolling": True}``): ``windowSize`` 1m-59m, 1h-23h, 1d-7d (default 1d),
``type`` FULL or MINI, the window opening on the minute holding
``closeTime - windowSize``. Checked against the same window's 1m klines,
read before and after (a trade landing in between: read again). Before
session 27 the path was a 404."""
from decimal import Decimal

import pytest
from binance.exceptions import BinanceAPIException

import binance_testkit as kit
from binance_testkit import BINANCE, SYMBOL

MINUTE = 60_000
MINI = {"symbol", "openPrice", "highPrice", "lowPrice", "lastPrice", "volume", "quoteVolume",
        "openTime", "closeTime", "firstId", "lastId", "count"}
FULL = MINI | {"priceChange", "priceChangePercent", "weightedAvgPrice"}
# reads that another trade landing in between spoils are made again, at most so often
ATTEMPTS = 5


@pytest.fixture(scope="module")
def ours(gateway_url, maker, taker, settings):
    return kit.crossed_trades(gateway_url, maker, taker, settings, 2)


@pytest.fixture(scope="module")
def client(gateway_url):
    return kit.binance_client(gateway_url)


def _from_klines(client, opened: int) -> dict:
    """The window's totals from the 1m klines opening at or after ``opened``
    (python-binance pages them)."""
    rows = client.get_historical_klines(BINANCE, "1m", start_str=opened)
    return {"count": sum(r[8] for r in rows),
            "volume": sum((Decimal(r[5]) for r in rows), Decimal(0)),
            "quoteVolume": sum((Decimal(r[7]) for r in rows), Decimal(0)),
            "highPrice": max((Decimal(r[2]) for r in rows), default=Decimal(0)),
            "lowPrice": min((Decimal(r[3]) for r in rows), default=Decimal(0)),
            "openPrice": Decimal(rows[0][1]) if rows else Decimal(0)}


@pytest.mark.parametrize("window, width", [("5m", 5 * MINUTE), ("2h", 120 * MINUTE),
                                           ("1d", 1440 * MINUTE), ("3d", 3 * 1440 * MINUTE)])
def test_the_window_is_binances_and_its_totals_are_its_klines(client, ours, window, width):
    for _ in range(ATTEMPTS):
        answer = client.get_symbol_ticker_window(symbol=BINANCE, windowSize=window)
        expected = _from_klines(client, answer["openTime"])
        again = client.get_symbol_ticker_window(symbol=BINANCE, windowSize=window)
        if again["count"] == answer["count"] and again["openTime"] == answer["openTime"]:
            break
    else:
        pytest.fail("the market traded or the minute turned during every attempt")
    assert set(answer) == FULL and answer["symbol"] == BINANCE
    assert answer["openTime"] == (answer["closeTime"] - width) // MINUTE * MINUTE
    assert answer["count"] == expected["count"] >= 2
    for name in ("volume", "quoteVolume", "highPrice", "lowPrice", "openPrice"):
        assert Decimal(answer[name]) == expected[name], name
    assert Decimal(answer["priceChange"]) == Decimal(answer["lastPrice"]) - \
        Decimal(answer["openPrice"])
    assert len(answer["priceChangePercent"].split(".")[1]) == 3
    assert all(len(answer[n].split(".")[1]) == 8 for n in ("volume", "lastPrice"))


def test_mini_and_several_symbols(client, ours):
    page = client.get_symbol_ticker_window(symbols='["BTCUSDT","ETHUSDT"]', type="MINI",
                                           windowSize="15m")
    assert [t["symbol"] for t in page] == ["BTCUSDT", "ETHUSDT"]
    assert all(set(t) == MINI for t in page)


def test_ccxt_reads_the_rolling_ticker(gateway_url, ours):
    exchange = kit.binance_local(gateway_url)
    ticker = exchange.fetch_ticker(SYMBOL, {"rolling": True, "windowSize": "1h"})
    assert ticker["symbol"] == SYMBOL and ticker["baseVolume"] > 0 and ticker["last"] > 0
    tickers = exchange.fetch_tickers([SYMBOL], {"rolling": True, "windowSize": "1h"})
    assert tickers[SYMBOL]["baseVolume"] > 0


@pytest.mark.parametrize("params, code", [
    ({}, -1102), ({"symbol": "NOPEUSDT"}, -1121),
    ({"symbol": BINANCE, "windowSize": "0m"}, -1100),
    ({"symbol": BINANCE, "windowSize": "60m"}, -1100),
    ({"symbol": BINANCE, "windowSize": "24h"}, -1100),
    ({"symbol": BINANCE, "windowSize": "8d"}, -1100),
    ({"symbol": BINANCE, "windowSize": "1w"}, -1100),
    ({"symbol": BINANCE, "windowSize": ""}, -1105),
    ({"symbol": BINANCE, "type": "SMALL"}, -1100),
    ({"symbol": BINANCE, "symbols": '["BTCUSDT"]'}, -1106)])
def test_bad_parameters_are_binances_errors(client, params, code):
    with pytest.raises(BinanceAPIException) as raised:
        client.get_symbol_ticker_window(**params)
    assert raised.value.code == code and raised.value.status_code == 400


def test_its_weight_is_four_per_symbol(settings):
    assert kit.charged_weight(settings, "/api/v3/ticker", {"symbol": BINANCE}) == 4
    assert kit.charged_weight(settings, "/api/v3/ticker",
                              {"symbols": '["BTCUSDT","ETHUSDT"]'}) == 8
