"""A partner's ccxt bot trading two markets reads its fills of one:
``/api/v3/myTrades`` finds them behind more than 1000 fills of another market.

marketdata answers a user's fills of all markets, newest first, at most 1000 a
call; the gateway used to read one call and filter the market afterwards, so
after 1000 fills of BTC-USDT the taker's earlier ETH-USDT fill was missing from
``fetch_my_trades('ETH/USDT')``, with or without ``since``.
"""
from decimal import Decimal

import pytest

import binance_testkit as kit
from binance_testkit import MARKET, SYMBOL, quiet_price
from native_testkit import rpc_proxy

SELLERS, EACH = 6, 170                # the engine takes at most 200 open orders a user
MAKERS = SELLERS * EACH              # resting orders the taker sweeps: > 1000 fills
LOT = Decimal("0.0002")              # 6 USDT at ~30,000: over the 5 USDT minimum
ETH = "ETH/USDT"


@pytest.fixture(scope="module")
def swept(gateway_url, settings, maker, taker):
    """The taker's one ETH-USDT fill, then MAKERS BTC-USDT fills of one IOC
    order against SELLERS sellers' resting orders (placed over RPC: the API's
    order rate limit would take minutes); returns the ETH fill once the
    sellers' fills are all recorded."""
    ex_maker = kit.binance_local(gateway_url, maker.api_key, maker.secret)
    ex_taker = kit.binance_local(gateway_url, taker.api_key, taker.secret)
    for _ in range(5):             # ETH-USDT's book may move under benches: try again
        eth_price = float(quiet_price(settings, "ETH-USDT"))
        ex_maker.create_order(ETH, "limit", "sell", 0.01, eth_price)
        bought = ex_taker.create_order(ETH, "limit", "buy", 0.01, eth_price,
                                       {"timeInForce": "IOC"})
        ex_maker.cancel_all_orders(ETH)
        if bought["filled"]:
            break
    assert bought["filled"] > 0
    eth_fill = kit.eventually(lambda: [t for t in ex_taker.fetch_my_trades(ETH)
                                       if t["order"] == bought["id"]])[0]
    sellers = [kit.new_trader(settings, {"BTC": "1"}, prefix="gwseller") for _ in range(SELLERS)]
    price = quiet_price(settings)
    with rpc_proxy(settings) as rpc:
        for seller in sellers:
            answers = rpc.orders.place_orders([
                {"user": seller.user_id, "market": MARKET, "side": "sell", "type": "limit",
                 "quantity": str(LOT), "price": str(price)} for _ in range(EACH)])
            assert all("order" in a for a in answers), answers[:3]
        kit.eventually(lambda: _resting(rpc, price) >= LOT * MAKERS, timeout_s=60)
    sweep = ex_taker.create_order(SYMBOL, "limit", "buy", float(LOT * MAKERS), float(price),
                                  {"timeInForce": "IOC"})
    # The answer shows the order as it stood when the gateway's wait ended
    # (EXCHANGE_GATEWAY_ORDER_WAIT_MS, acceptance included): on a loaded
    # machine that can be before its 1,020 fills (it said 0 filled once).
    if sweep["filled"] != float(LOT * MAKERS):
        sweep = kit.eventually(lambda: (lambda o: o if o["status"] == "closed" else None)(
            ex_taker.fetch_order(sweep["id"], SYMBOL)), timeout_s=60, interval_s=0.5)
    assert sweep["filled"] == float(LOT * MAKERS)
    with rpc_proxy(settings) as rpc:
        kit.eventually(lambda: sum(len(rpc.marketdata.get_user_trades(
            s.user_id, 1000, sweep["timestamp"] - 60_000)["trades"]) for s in sellers) == MAKERS,
            timeout_s=60)
        # and the taker's own: 1000 of them after the ETH fill are recorded
        kit.eventually(lambda: len(rpc.marketdata.get_user_trades(
            taker.user_id, 1000, eth_fill["timestamp"] + 1)["trades"]) == 1000, timeout_s=60)
    return ex_taker, eth_fill


def _resting(rpc, price) -> Decimal:
    book = rpc.matching.get_depth(MARKET, 50)
    return sum((Decimal(q) for p, q in book["sell"] if Decimal(p) == price), Decimal(0))


def test_fills_of_a_market_behind_1000_of_another(swept):
    ex_taker, eth_fill = swept
    assert eth_fill["id"] in [t["id"] for t in ex_taker.fetch_my_trades(ETH)]


def test_since_before_the_fill_finds_it(swept):
    ex_taker, eth_fill = swept
    found = ex_taker.fetch_my_trades(ETH, eth_fill["timestamp"] - 1, 5)
    assert found and found[0]["id"] == eth_fill["id"]
