"""``GET /api/v3/historicalTrades`` (python-binance ``get_historical_trades``,
ccxt ``fetch_trades`` with ``fetchTradesMethod: publicGetHistoricalTrades``):
Binance's "old trade lookup", ``/trades``' objects from ``fromId`` on (or
the recent ones), MARKET_DATA security (a valid key in ``X-MBX-APIKEY``, no
signature), weight 25. Before session 27 the path was a 404."""
import secrets
import string

import pytest
from binance.exceptions import BinanceAPIException

import binance_testkit as kit
from binance_testkit import BINANCE, SYMBOL

TRADES = 4
FIELDS = {"id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"}


@pytest.fixture(scope="module")
def ours(gateway_url, maker, taker, settings):
    """TRADES trades of this module: [(trade id, time ms)], oldest first."""
    return kit.crossed_trades(gateway_url, maker, taker, settings, TRADES)


@pytest.fixture(scope="module")
def client(gateway_url, taker):
    return kit.binance_client(gateway_url, taker.api_key, taker.secret)


def _get(settings, headers=None, **params):
    return kit.raw(settings, "GET", "/api/v3/historicalTrades", headers=headers,
                   params={"symbol": BINANCE, **params})


def test_python_binance_reads_from_an_id_on(client, ours, settings):
    first = ours[0][0]
    page = client.get_historical_trades(symbol=BINANCE, fromId=first, limit=3)
    assert [t["id"] for t in page] == [first, first + 1, first + 2]
    assert all(set(t) == FIELDS for t in page)
    assert page[0]["time"] == ours[0][1]
    # the same objects /trades shows for those ids (taker bought: buyer not maker)
    recent = {t["id"]: t for t in kit.raw(settings, "GET", "/api/v3/trades",
                                          params={"symbol": BINANCE, "limit": 1000}).json()}
    assert page == [recent[t["id"]] for t in page]
    assert page[0]["isBuyerMaker"] is False and isinstance(page[0]["price"], str)


def test_without_from_id_the_recent_trades_oldest_first(client, ours):
    page = client.get_historical_trades(symbol=BINANCE, limit=1000)
    ids = [t["id"] for t in page]
    assert ids == sorted(ids) and {a for a, _ in ours} <= set(ids)
    assert len(client.get_historical_trades(symbol=BINANCE, limit=2)) == 2


def test_ccxt_fetches_trades_through_it(gateway_url, taker, ours):
    exchange = kit.binance_local(gateway_url, taker.api_key, taker.secret)
    exchange.options["fetchTradesMethod"] = "publicGetHistoricalTrades"
    trades = exchange.fetch_trades(SYMBOL, limit=1000)
    assert {str(a) for a, _ in ours} <= {t["id"] for t in trades}
    assert all(t["side"] == "buy" for t in trades if t["id"] in {str(a) for a, _ in ours})


def test_a_key_is_needed_but_no_signature(settings, ours):
    refused = _get(settings)
    assert refused.status_code == 401 and refused.json()["code"] == -2014
    unknown = "".join(secrets.choice(string.ascii_letters) for _ in range(64))
    refused = _get(settings, headers={"X-MBX-APIKEY": unknown})
    assert refused.status_code == 401 and refused.json()["code"] == -2015


def test_a_revoked_key_or_one_for_other_addresses_is_refused(settings, taker, ours):
    other = kit.another_key(settings, taker, permissions=["read"])
    assert _get(settings, headers={"X-MBX-APIKEY": other["api_key"]}).status_code == 200
    kit.revoke(settings, taker, other["api_key"])
    # the gateway's cached copy of the key goes with users' api_key_revoked
    # event, a moment after the revocation (gateway/keycache.py)
    def refused_now():
        answer = _get(settings, headers={"X-MBX-APIKEY": other["api_key"]})
        # (a Response is falsy when it is an error: eventually wants a truthy value)
        return (answer.status_code, answer.json()) if answer.status_code != 200 else None
    status, body = kit.eventually(refused_now)
    assert status == 401 and body["code"] == -2015
    elsewhere = kit.another_key(settings, taker, permissions=["read"],
                                ip_allowlist=["203.0.113.0/24"])
    refused = _get(settings, headers={"X-MBX-APIKEY": elsewhere["api_key"]})
    assert refused.status_code == 401 and refused.json()["code"] == -2015


def test_bad_parameters_are_binances_errors(client, settings, taker):
    key = {"X-MBX-APIKEY": taker.api_key}
    with pytest.raises(BinanceAPIException) as raised:
        client.get_historical_trades(symbol="NOPEUSDT")
    assert raised.value.code == -1121
    for params, code in (({"limit": 1001}, -1100), ({"limit": 0}, -1100),
                         ({"fromId": "x"}, -1100), ({"fromId": ""}, -1105)):
        refused = _get(settings, headers=key, **params)
        assert refused.status_code == 400 and refused.json()["code"] == code, params


def test_a_number_past_the_last_trade_is_an_empty_page(client, ours):
    assert client.get_historical_trades(symbol=BINANCE, fromId=10**12) == []


def test_its_weight_is_binances(settings, taker):
    assert kit.charged_weight(settings, "/api/v3/historicalTrades",
                              {"symbol": BINANCE, "limit": 5},
                              headers={"X-MBX-APIKEY": taker.api_key}) == 25
