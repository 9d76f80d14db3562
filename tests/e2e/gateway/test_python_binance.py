"""Unmodified python-binance 1.0.37 against /api/v3 (BINANCE_SUBSET.md
section 5): it signs sorted parameters, sends POST and DELETE parameters in
the form body, sends no newOrderRespType (FULL is the default) and sends
X-MBX-APIKEY on public calls too."""
from decimal import Decimal

import pytest
from binance.exceptions import BinanceAPIException

import binance_testkit as kit
from binance_testkit import BINANCE, quiet_price


@pytest.fixture(scope="module")
def maker_client(gateway_url, maker):
    return kit.binance_client(gateway_url, maker.api_key, maker.secret)


@pytest.fixture(scope="module")
def taker_client(gateway_url, taker):
    return kit.binance_client(gateway_url, taker.api_key, taker.secret)


def test_public_calls_ignore_the_key_header(maker_client):
    assert maker_client.ping() == {}
    assert maker_client.get_server_time()["serverTime"] > 0
    info = maker_client.get_symbol_info(BINANCE)
    assert info["baseAsset"] == "BTC" and info["quoteAsset"] == "USDT"
    book = maker_client.get_order_book(symbol="BTCUSDT", limit=5)
    assert "bids" in book and "asks" in book and book["lastUpdateId"] > 0
    ticker = maker_client.get_ticker(symbol="BTCUSDT")
    assert ticker["symbol"] == "BTCUSDT" and "bidQty" in ticker
    assert {t["symbol"] for t in maker_client.get_all_tickers()} >= {"ETHUSDT", BINANCE}
    assert isinstance(maker_client.get_klines(symbol=BINANCE, interval="1m", limit=5), list)
    assert isinstance(maker_client.get_recent_trades(symbol=BINANCE, limit=5), list)
    assert isinstance(maker_client.get_aggregate_trades(symbol=BINANCE, limit=5), list)


def test_trade_cycle(maker_client, taker_client, settings):
    price = str(quiet_price(settings))
    resting = maker_client.create_order(symbol=BINANCE, side="SELL", type="LIMIT",
                                        timeInForce="GTC", quantity="0.02", price=price)
    assert resting["status"] == "NEW" and resting["fills"] == []
    assert resting["clientOrderId"].startswith("x-")
    taken = taker_client.create_order(symbol=BINANCE, side="BUY", type="MARKET",
                                      quantity="0.01")
    assert taken["status"] == "FILLED" and Decimal(taken["executedQty"]) == Decimal("0.01")
    assert [Decimal(f["price"]) for f in taken["fills"]] == [Decimal(price)]
    assert taken["fills"][0]["commissionAsset"] == "BTC"
    got = maker_client.get_order(symbol=BINANCE, orderId=resting["orderId"])
    assert got["status"] == "PARTIALLY_FILLED"
    assert resting["orderId"] in {o["orderId"] for o in maker_client.get_open_orders()}
    assert resting["orderId"] in {o["orderId"] for o in
                                  maker_client.get_open_orders(symbol=BINANCE)}
    cancelled = maker_client.cancel_order(symbol=BINANCE, orderId=resting["orderId"])
    assert cancelled["status"] == "CANCELED" and Decimal(cancelled["executedQty"]) == \
        Decimal("0.01")
    assert resting["orderId"] in {o["orderId"] for o in
                                  maker_client.get_all_orders(symbol=BINANCE)}
    trades = kit.eventually(lambda: [t for t in taker_client.get_my_trades(symbol=BINANCE)
                                     if t["orderId"] == taken["orderId"]])
    assert trades[0]["isBuyer"] and not trades[0]["isMaker"]
    balances = {b["asset"]: b for b in taker_client.get_account()["balances"]}
    assert Decimal(balances["BTC"]["free"]) > 10


def test_a_float_written_with_an_exponent_is_refused(taker_client, settings):
    with pytest.raises(BinanceAPIException) as caught:
        taker_client.create_order(symbol=BINANCE, side="BUY", type="LIMIT", timeInForce="GTC",
                                  quantity=1e-05, price=str(quiet_price(settings)))
    assert caught.value.code == -1100 and caught.value.status_code == 400


def test_unknown_order_and_symbol(taker_client):
    with pytest.raises(BinanceAPIException) as caught:
        taker_client.get_order(symbol=BINANCE, orderId=987654321987)
    assert caught.value.code == -2013
    with pytest.raises(BinanceAPIException) as caught:
        taker_client.cancel_order(symbol=BINANCE, orderId=987654321987)
    assert caught.value.code == -2011
    with pytest.raises(BinanceAPIException) as caught:
        taker_client.get_order_book(symbol="NOPEUSDT")
    assert caught.value.code == -1121
