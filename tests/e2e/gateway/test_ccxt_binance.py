"""Unmodified ccxt 4.5.90 (the ``binance`` class, re-pointed at the gateway as
../shared/BINANCE_SUBSET.md section 1 shows) trades through /api/v3.

Orders go to BTC-USDT at a price inside the demo book's spread
(``quiet_price``), between two traders created for this module: the demo
traders' orders are never crossed."""
from decimal import Decimal

import ccxt
import pytest

import binance_testkit as kit
from binance_testkit import BINANCE, SYMBOL, far_bid, quiet_price


@pytest.fixture(scope="module")
def public(gateway_url):
    return kit.binance_local(gateway_url)


@pytest.fixture(scope="module")
def ex_maker(gateway_url, maker):
    return kit.binance_local(gateway_url, maker.api_key, maker.secret)


@pytest.fixture(scope="module")
def ex_taker(gateway_url, taker):
    return kit.binance_local(gateway_url, taker.api_key, taker.secret)


def f(value) -> float:
    return float(value)  # ccxt's unified API takes floats; the wire carries strings


# ---------------------------------------------------------------- public

def test_markets_carry_the_filters(public):
    markets = public.load_markets(reload=True)
    assert {"BTC/USDT", "ETH/USDT"} <= set(markets)
    btc = markets[SYMBOL]
    assert btc["id"] == BINANCE and btc["active"] and btc["spot"]
    assert btc["precision"]["price"] == 0.01 and btc["precision"]["amount"] == 0.0001
    assert btc["limits"]["cost"]["min"] == 5.0


def test_ticker_and_tickers(public, settings):
    ticker = public.fetch_ticker(SYMBOL)
    assert ticker["symbol"] == SYMBOL and ticker["timestamp"] > 0
    assert "bidQty" in ticker["info"]
    tickers = public.fetch_tickers([SYMBOL, "ETH/USDT"])
    assert set(tickers) == {SYMBOL, "ETH/USDT"}
    assert set(public.fetch_tickers()) >= {SYMBOL, "ETH/USDT"}


def test_order_book_shows_a_resting_order(public, ex_maker, settings):
    price = quiet_price(settings)
    order = ex_maker.create_order(SYMBOL, "limit", "sell", 0.01, f(price))
    try:
        book = public.fetch_order_book(SYMBOL, 50)
        assert [f(price), 0.01] in book["asks"] or any(a[0] == f(price) for a in book["asks"])
        assert book["asks"] == sorted(book["asks"])
        assert book["bids"] == sorted(book["bids"], reverse=True)
        assert book["nonce"] > 0
    finally:
        ex_maker.cancel_order(order["id"], SYMBOL)


def test_trades_and_ohlcv_show_a_trade(public, ex_maker, ex_taker, settings):
    price = quiet_price(settings)
    ex_maker.create_order(SYMBOL, "limit", "sell", 0.01, f(price))
    bought = ex_taker.create_order(SYMBOL, "limit", "buy", 0.01, f(price),
                                   {"timeInForce": "IOC"})
    assert bought["status"] == "closed"
    since = bought["timestamp"] - 60_000
    # the first trades from startTime on (Binance): start just before ours
    trades = kit.eventually(lambda: [t for t in public.fetch_trades(SYMBOL, since + 59_000)
                                     if t["price"] == f(price)])
    assert trades[-1]["side"] == "buy" and trades[-1]["amount"] == 0.01
    candles = kit.eventually(lambda: public.fetch_ohlcv(SYMBOL, "1m", since, 10))
    assert candles and all(len(c) == 6 for c in candles)
    assert candles[-1][0] <= bought["timestamp"]


# ---------------------------------------------------------------- orders

def test_balance_shows_free_and_locked(ex_maker, settings):
    before = ex_maker.fetch_balance()
    price = quiet_price(settings)
    order = ex_maker.create_order(SYMBOL, "limit", "buy", 0.01, f(price))
    after = ex_maker.fetch_balance()
    locked = Decimal(str(after["USDT"]["used"])) - Decimal(str(before["USDT"]["used"]))
    assert locked == Decimal("0.01") * price
    assert after["USDT"]["total"] == before["USDT"]["total"]
    ex_maker.cancel_order(order["id"], SYMBOL)


def test_limit_gtc_rests_then_fills_and_reports_trades(ex_maker, ex_taker, settings):
    price = quiet_price(settings)
    resting = ex_maker.create_order(SYMBOL, "limit", "sell", 0.03, f(price))
    assert resting["status"] == "open" and resting["filled"] == 0
    assert resting["clientOrderId"].startswith("x-")
    taken = ex_taker.create_order(SYMBOL, "limit", "buy", 0.01, f(price))   # GTC, crosses
    assert taken["status"] == "closed" and taken["filled"] == 0.01
    assert taken["trades"] and taken["trades"][0]["price"] == f(price)
    assert taken["fee"]["currency"] == "BTC"
    fetched = ex_maker.fetch_order(resting["id"], SYMBOL)
    assert fetched["status"] == "open" and fetched["filled"] == 0.01
    ex_maker.cancel_order(resting["id"], SYMBOL)


def test_ioc_fills_what_crosses_and_expires_the_rest(ex_maker, ex_taker, settings):
    price = quiet_price(settings)
    ex_maker.create_order(SYMBOL, "limit", "sell", 0.02, f(price))
    order = ex_taker.create_order(SYMBOL, "limit", "buy", 0.05, f(price),
                                  {"timeInForce": "IOC"})
    assert order["status"] == "expired"
    assert order["filled"] == 0.02 and order["remaining"] == 0.03


def test_fok_that_cannot_fill_expires_unfilled(ex_maker, ex_taker, settings):
    price = quiet_price(settings)
    resting = ex_maker.create_order(SYMBOL, "limit", "sell", 0.02, f(price))
    order = ex_taker.create_order(SYMBOL, "limit", "buy", 0.05, f(price),
                                  {"timeInForce": "FOK"})
    assert order["status"] == "expired" and order["filled"] == 0
    filled = ex_taker.create_order(SYMBOL, "limit", "buy", 0.02, f(price),
                                   {"timeInForce": "FOK"})
    assert filled["status"] == "closed" and filled["filled"] == 0.02
    assert ex_maker.fetch_order(resting["id"], SYMBOL)["status"] == "closed"


def test_post_only_that_would_cross_is_refused(ex_maker, ex_taker, settings):
    price = quiet_price(settings)
    resting = ex_maker.create_order(SYMBOL, "limit", "sell", 0.01, f(price))
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        ex_taker.create_order(SYMBOL, "limit", "buy", 0.01, f(price), {"postOnly": True})
    maker_order = ex_taker.create_order(SYMBOL, "limit", "buy", 0.01, f(price - 1),
                                        {"postOnly": True})
    assert maker_order["status"] == "open" and maker_order["postOnly"]
    ex_taker.cancel_order(maker_order["id"], SYMBOL)
    ex_maker.cancel_order(resting["id"], SYMBOL)


def test_market_orders_by_quantity_and_by_quote_amount(ex_maker, ex_taker, settings):
    price = quiet_price(settings)
    ask = ex_maker.create_order(SYMBOL, "limit", "sell", 0.05, f(price))
    by_quantity = ex_taker.create_order(SYMBOL, "market", "buy", 0.01)
    assert by_quantity["status"] == "closed" and by_quantity["filled"] == 0.01
    assert by_quantity["average"] == f(price)
    cost = (Decimal("0.02") * price).quantize(Decimal("0.01"))
    by_quote = ex_taker.create_order(SYMBOL, "market", "buy", None, None, {"cost": f(cost)})
    assert by_quote["status"] in ("closed", "expired")
    assert Decimal(by_quote["info"]["cummulativeQuoteQty"]) <= cost
    assert by_quote["info"]["origQuoteOrderQty"] == f"{cost:.8f}"
    ex_maker.cancel_order(ask["id"], SYMBOL)
    bid = ex_maker.create_order(SYMBOL, "limit", "buy", 0.02, f(price))
    sold = ex_taker.create_order(SYMBOL, "market", "sell", 0.02)
    assert sold["status"] == "closed" and sold["filled"] == 0.02
    assert ex_maker.fetch_order(bid["id"], SYMBOL)["status"] == "closed"


def test_cancel_cancel_all_and_the_order_lists(ex_maker, settings):
    price = quiet_price(settings)
    first = ex_maker.create_order(SYMBOL, "limit", "buy", 0.01, f(price))
    second = ex_maker.create_order(SYMBOL, "limit", "buy", 0.01, f(price))
    other = ex_maker.create_order("ETH/USDT", "limit", "buy", 0.01,
                                 f(far_bid(settings, "ETH-USDT")))
    ids = {first["id"], second["id"]}
    assert ids <= {o["id"] for o in ex_maker.fetch_open_orders(SYMBOL)}
    everywhere = {o["id"]: o["symbol"] for o in ex_maker.fetch_open_orders()}
    assert everywhere[other["id"]] == "ETH/USDT" and ids <= set(everywhere)
    cancelled = ex_maker.cancel_order(first["id"], SYMBOL)
    assert cancelled["status"] == "canceled"
    ex_maker.cancel_all_orders(SYMBOL)
    assert not ids & {o["id"] for o in ex_maker.fetch_open_orders(SYMBOL)}
    assert ex_maker.fetch_order(second["id"], SYMBOL)["status"] == "canceled"
    assert other["id"] in {o["id"] for o in ex_maker.fetch_open_orders("ETH/USDT")}
    ex_maker.cancel_order(other["id"], "ETH/USDT")
    history = {o["id"]: o["status"] for o in ex_maker.fetch_orders(SYMBOL)}
    assert history[first["id"]] == history[second["id"]] == "canceled"
    assert {o["id"] for o in ex_maker.fetch_canceled_orders(SYMBOL)} >= ids


def test_my_trades_list_both_sides(ex_maker, ex_taker, settings):
    price = quiet_price(settings)
    sell = ex_maker.create_order(SYMBOL, "limit", "sell", 0.01, f(price))
    buy = ex_taker.create_order(SYMBOL, "limit", "buy", 0.01, f(price), {"timeInForce": "IOC"})
    mine = kit.eventually(lambda: [t for t in ex_taker.fetch_my_trades(SYMBOL)
                                   if t["order"] == buy["id"]])
    assert mine[0]["side"] == "buy" and mine[0]["takerOrMaker"] == "taker"
    assert mine[0]["fee"]["currency"] == "BTC" and mine[0]["fee"]["cost"] > 0
    theirs = kit.eventually(lambda: [t for t in ex_maker.fetch_my_trades(SYMBOL)
                                     if t["order"] == sell["id"]])
    assert theirs[0]["side"] == "sell" and theirs[0]["takerOrMaker"] == "maker"
    assert theirs[0]["id"] == mine[0]["id"]


# ---------------------------------------------------------------- errors

def test_insufficient_funds(gateway_url, settings):
    poor = kit.new_trader(settings, {"USDT": "10"}, prefix="gwpoor")
    ex = kit.binance_local(gateway_url, poor.api_key, poor.secret)
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order(SYMBOL, "limit", "buy", 1, f(quiet_price(settings)))


def test_unknown_order(ex_maker):
    with pytest.raises(ccxt.OrderNotFound):
        ex_maker.fetch_order("987654321987", SYMBOL)
    with pytest.raises(ccxt.OrderNotFound):
        ex_maker.cancel_order("987654321987", SYMBOL)


def test_bad_symbol_through_the_implicit_api(public, ex_maker):
    with pytest.raises(ccxt.BadSymbol):
        public.publicGetDepth({"symbol": "NOPEUSDT"})
    with pytest.raises(ccxt.BadSymbol):
        ex_maker.privateGetOpenOrders({"symbol": "NOPEUSDT"})


def test_filter_failures_through_the_implicit_api(ex_maker, settings):
    price = quiet_price(settings)
    ex_maker.cancel_all_orders(SYMBOL)
    order = {"symbol": BINANCE, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    with pytest.raises(ccxt.InvalidOrder, match="PRICE_FILTER"):
        ex_maker.privatePostOrder({**order, "quantity": "0.01", "price": f"{price}5"})
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
        ex_maker.privatePostOrder({**order, "quantity": "0.00015", "price": str(price)})
    with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):
        ex_maker.privatePostOrder({**order, "quantity": "0.0001", "price": str(price)})
    assert not [o for o in ex_maker.fetch_open_orders(SYMBOL) if o["price"] == f(price)]


def test_bad_signature(gateway_url, maker):
    ex = kit.binance_local(gateway_url, maker.api_key, "x" * 64)
    with pytest.raises(ccxt.AuthenticationError):
        ex.fetch_balance()


def test_stale_timestamp(gateway_url, maker):
    ex = kit.binance_local(gateway_url, maker.api_key, maker.secret)
    ex.options["timeDifference"] = 60_000        # the clock a minute behind
    with pytest.raises(ccxt.InvalidNonce):
        ex.fetch_balance()


# ---------------------------------------------------------------- optional extras

def test_last_prices_bids_asks_and_recent_trades(public, gateway_url):
    prices = public.fetch_last_prices([SYMBOL, "ETH/USDT"])
    assert set(prices) == {SYMBOL, "ETH/USDT"}
    book_tops = public.fetch_bids_asks([SYMBOL])
    top = public.fetch_order_book(SYMBOL, 5)
    assert book_tops[SYMBOL]["bid"] == top["bids"][0][0]
    recent = kit.binance_local(gateway_url)
    recent.options["fetchTradesMethod"] = "publicGetTrades"
    trades = recent.fetch_trades("BTC/USDT", limit=5)
    assert all(t["symbol"] == "BTC/USDT" and t["price"] > 0 for t in trades)


def test_test_orders_and_cancel_replace(ex_maker, settings):
    price = quiet_price(settings)
    assert ex_maker.create_order(SYMBOL, "limit", "buy", 0.01, f(price), {"test": True}) \
        is not None
    assert price not in {Decimal(str(o["price"])) for o in ex_maker.fetch_open_orders(SYMBOL)}
    original = ex_maker.create_order(SYMBOL, "limit", "buy", 0.01, f(price))
    lower = price - Decimal("0.5")
    edited = ex_maker.edit_order(original["id"], SYMBOL, "limit", "buy", 0.02, f(lower))
    assert edited["id"] != original["id"] and edited["price"] == f(lower)
    assert edited["amount"] == 0.02 and edited["status"] == "open"
    assert ex_maker.fetch_order(original["id"], SYMBOL)["status"] == "canceled"
    ex_maker.cancel_order(edited["id"], SYMBOL)
