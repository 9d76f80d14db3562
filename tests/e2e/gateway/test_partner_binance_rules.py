"""Rules where the gateway answered otherwise than Binance documents, and a
bot written against Binance could trip on them (session 26), against the
running gateway:

* ``myTrades`` and ``allOrders`` with ``startTime`` and ``endTime`` more
  than 24 hours apart: Binance's -1127 "More than 24 hours between
  startTime and endTime.", where the gateway read the whole window; one of
  them alone stays unbounded (ccxt's ``since`` without ``until``)."""
import time

import pytest

from tests.e2e.gateway import binance_testkit as kit
from tests.e2e.gateway.binance_testkit import BINANCE, SYMBOL

DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def reader(settings):
    return kit.new_trader(settings, {}, prefix="gwrules")


@pytest.mark.parametrize("path", ["/api/v3/myTrades", "/api/v3/allOrders"])
def test_a_window_over_24_hours_is_binances_1127(settings, reader, path):
    end = int(time.time() * 1000)
    response = kit.raw(settings, "GET", path, reader,
                       params={"symbol": BINANCE, "startTime": end - DAY_MS - 1, "endTime": end})
    assert response.status_code == 400, response.text
    assert response.json() == {"code": -1127,
                               "msg": "More than 24 hours between startTime and endTime."}
    # 24 hours exactly, or one bound alone however far back: answered.
    for params in ({"startTime": end - DAY_MS, "endTime": end}, {"startTime": 0},
                   {"endTime": end}):
        answered = kit.raw(settings, "GET", path, reader, params={"symbol": BINANCE, **params})
        assert answered.status_code == 200, (params, answered.text)


def test_ccxt_since_without_until_still_reads_history(gateway_url, reader):
    ex = kit.binance_local(gateway_url, reader.api_key, reader.secret)
    week_ago = int(time.time() * 1000) - 7 * DAY_MS
    assert ex.fetch_my_trades(SYMBOL, since=week_ago) == []
    assert ex.fetch_orders(SYMBOL, since=week_ago) == []
