"""Times outside marketdata's range ([2000-01-01, 2100-01-01)) in the /api/v3
reads a bot pages with: an answer as Binance gives it (what lies in the window,
often nothing), never a refusal.

``fetch_my_trades(symbol, since=0)`` is how a ccxt bot asks for its whole
history (python-binance: ``get_my_trades(startTime=0)``). The gateway passed
the times on to marketdata, which refuses any before 2000 or from 2100 on, and
answered -1100 "start=0 is outside [946684800000, 4102444800000)": ccxt raised
BadRequest. Likewise ``fetch_trades(symbol, since=0)`` (aggTrades from
startTime 0), ``endTime=1`` on klines and aggTrades, and an ``endTime`` past
2100 on myTrades (sweep of session 25)."""
import pytest

import binance_testkit as kit
from binance_testkit import BINANCE, SYMBOL

FAR_FUTURE = 9_999_999_999_999          # year 2286


@pytest.fixture(scope="module")
def fill(gateway_url, maker, taker, settings):
    """One trade of the taker: its id."""
    [(trade_id, _time)] = kit.crossed_trades(gateway_url, maker, taker, settings, 1)
    return trade_id


def get(settings, path, trader=None, **params):
    response = kit.raw(settings, "GET", path, trader, params)
    assert response.status_code == 200, response.text
    return response.json()


def test_ccxt_my_trades_since_zero_is_the_whole_history(gateway_url, taker, fill):
    ex = kit.binance_local(gateway_url, taker.api_key, taker.secret)
    trades = kit.eventually(lambda: ex.fetch_my_trades(SYMBOL, 0))
    assert fill in {int(t["id"]) for t in trades}


def test_python_binance_my_trades_from_start_time_zero(gateway_url, taker, fill):
    client = kit.binance_client(gateway_url, taker.api_key, taker.secret)
    trades = kit.eventually(lambda: client.get_my_trades(symbol=BINANCE, startTime=0))
    assert fill in {t["id"] for t in trades}


def test_my_trades_up_to_a_far_end_time(settings, taker, fill):
    trades = get(settings, "/api/v3/myTrades", taker, symbol=BINANCE, endTime=FAR_FUTURE)
    assert fill in {t["id"] for t in trades}


def test_my_trades_before_2000_are_none(settings, taker, fill):
    assert get(settings, "/api/v3/myTrades", taker, symbol=BINANCE, endTime=1) == []


def test_ccxt_public_trades_since_zero_are_none(gateway_url, fill):
    # Binance: startTime 0 reads the hour after it (aggTrades' one-hour window)
    assert kit.binance_local(gateway_url).fetch_trades(SYMBOL, 0) == []


@pytest.mark.parametrize("params", [{"endTime": 1}, {"startTime": FAR_FUTURE}])
def test_agg_trades_outside_the_range_are_none(settings, fill, params):
    assert get(settings, "/api/v3/aggTrades", symbol=BINANCE, **params) == []


def test_klines_before_2000_are_none(settings, fill):
    assert get(settings, "/api/v3/klines", symbol=BINANCE, interval="1m", endTime=1) == []


def test_klines_up_to_a_far_end_time_are_the_last_ones(settings, fill):
    last = get(settings, "/api/v3/klines", symbol=BINANCE, interval="1m", limit=1)
    assert get(settings, "/api/v3/klines", symbol=BINANCE, interval="1m", limit=1,
               endTime=FAR_FUTURE)[0][0] >= last[0][0]
