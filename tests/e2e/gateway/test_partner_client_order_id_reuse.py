"""A ``newClientOrderId`` is unique among the trader's OPEN orders, as on
Binance ("A unique id among open orders"): a bot that recycles its ids
places again once the id's order has ended, and is refused -2010 while it
is open. A query or cancel by ``origClientOrderId`` names the open order,
else the latest. Before session 12 the id stayed taken for good (-2010 on
every reuse). Unmodified ccxt and hand-signed HTTP against the running
gateway."""
import uuid

import ccxt
import pytest

from tests.e2e.gateway import binance_testkit as kit
from tests.e2e.gateway.binance_testkit import BINANCE, MARKET, SYMBOL


@pytest.fixture(scope="module")
def bot(settings):
    return kit.new_trader(settings, {"USDT": "10000"}, prefix="gwreuse")


@pytest.fixture(scope="module")
def ex_bot(gateway_url, bot):
    return kit.binance_local(gateway_url, bot.api_key, bot.secret)


def test_a_bot_recycles_a_client_order_id_once_its_order_ended(ex_bot, settings):
    price = float(kit.far_bid(settings, MARKET))
    cid = f"grid-{uuid.uuid4().hex[:8]}"
    first = ex_bot.create_order(SYMBOL, "limit", "buy", 0.01, price, {"clientOrderId": cid})
    assert first["clientOrderId"] == cid and first["status"] == "open"
    with pytest.raises(ccxt.InvalidOrder, match="-2010"):     # open: still taken
        ex_bot.create_order(SYMBOL, "limit", "buy", 0.01, price, {"clientOrderId": cid})
    assert ex_bot.cancel_order(first["id"], SYMBOL)["status"] == "canceled"

    second = ex_bot.create_order(SYMBOL, "limit", "buy", 0.01, price, {"clientOrderId": cid})
    assert second["id"] != first["id"] and second["clientOrderId"] == cid
    assert ex_bot.fetch_order(None, SYMBOL, {"origClientOrderId": cid})["id"] == second["id"]
    assert ex_bot.fetch_order(first["id"], SYMBOL)["status"] == "canceled"
    # A cancel by client order id cancels the open one; afterwards a query
    # by it names the latest order that had it.
    ex_bot.cancel_order(None, SYMBOL, {"origClientOrderId": cid})
    ended = ex_bot.fetch_order(None, SYMBOL, {"origClientOrderId": cid})
    assert (ended["id"], ended["status"]) == (second["id"], "canceled")
    assert not [o for o in ex_bot.fetch_open_orders(SYMBOL) if o["clientOrderId"] == cid]


def test_reuse_while_open_is_binances_duplicate_order(bot, settings):
    price = kit.far_bid(settings, MARKET)
    cid = f"http-{uuid.uuid4().hex[:8]}"
    order = {"symbol": BINANCE, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
             "price": f"{price}", "quantity": "0.01", "newClientOrderId": cid}
    placed = kit.raw(settings, "POST", "/api/v3/order", bot, params=order, body=True)
    assert placed.status_code == 200, placed.text
    again = kit.raw(settings, "POST", "/api/v3/order", bot, params=order, body=True)
    assert again.status_code == 400
    assert again.json()["code"] == -2010, again.text
    cancelled = kit.raw(settings, "DELETE", "/api/v3/order", bot,
                        params={"symbol": BINANCE, "origClientOrderId": cid})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELED"
    reused = kit.raw(settings, "POST", "/api/v3/order", bot, params=order, body=True)
    assert reused.status_code == 200, reused.text
    assert reused.json()["orderId"] != placed.json()["orderId"]
    assert reused.json()["clientOrderId"] == cid
    kit.raw(settings, "DELETE", "/api/v3/order", bot,
            params={"symbol": BINANCE, "orderId": reused.json()["orderId"]})
