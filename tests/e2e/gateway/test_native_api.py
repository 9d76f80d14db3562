"""The native API (/api/v1) through the running gateway: market data,
orders (place, list, amend, cancel, cancel-all, history), fills, balances,
ledger, deposits, withdrawals (refused without the one-time-password login),
API keys, and refusals that name the field."""
import re
import time
from decimal import Decimal

import pytest
import requests

from tests.e2e.gateway.native_testkit import (api, create_key, error_code, new_person,
                                              quiet_price, rpc_proxy, signed, wait_for_order)

MARKET = "BTC-USDT"
FAR_BELOW = "25000.00"  # a bid nobody sells to, inside the band: the demo book is around 30000


@pytest.fixture(scope="module")
def trader(settings):
    return new_person(settings, funds={"USDT": "1000", "BTC": "0.5"})


def balance(settings, person, asset):
    found = api(settings, person, "GET", "/api/v1/balances").json()["balances"]
    return next(b for b in found if b["asset"] == asset)


# -- documents -----------------------------------------------------------------

def test_openapi_document_and_docs_page_are_served_from_the_gateway(settings):
    document = requests.get(f"{settings.gateway_url}/api/v1/openapi.json", timeout=30).json()
    assert document["openapi"] == "3.1.0"
    assert "/api/v1/orders/{order_id}" in document["paths"]
    assert set(document["paths"]["/api/v1/orders"]) == {"get", "post", "delete"}
    page = requests.get(f"{settings.gateway_url}/api/v1/docs", timeout=30)
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert not re.search(r"(https?:)?//[a-z]", page.text)  # every asset from the gateway: no CDN
    bundle = requests.get(f"{settings.gateway_url}/api/v1/docs/swagger/js/swagger-ui-bundle.js",
                          timeout=30)
    assert bundle.status_code == 200 and len(bundle.content) > 100_000


# -- market data ---------------------------------------------------------------

def test_markets_tickers_depth_trades_and_candles(settings):
    markets = api(settings, None, "GET", "/api/v1/markets").json()["markets"]
    btc = next(m for m in markets if m["market"] == MARKET)
    assert (btc["base_asset"], btc["quote_asset"]) == ("BTC", "USDT")
    assert Decimal(btc["tick_size"]) > 0
    assert api(settings, None, "GET", f"/api/v1/markets/{MARKET}").json() == btc

    tickers = api(settings, None, "GET", "/api/v1/tickers").json()["tickers"]
    assert MARKET in {t["market"] for t in tickers}
    assert api(settings, None, "GET", f"/api/v1/markets/{MARKET}/ticker").json()["market"] == MARKET

    depth = api(settings, None, "GET", f"/api/v1/markets/{MARKET}/depth",
                params={"limit": 2}).json()
    assert len(depth["bids"]) <= 2 and len(depth["asks"]) <= 2
    if depth["bids"] and depth["asks"]:
        assert Decimal(depth["bids"][0]["price"]) < Decimal(depth["asks"][0]["price"])

    trades = api(settings, None, "GET", f"/api/v1/markets/{MARKET}/trades",
                 params={"limit": 5}).json()
    assert trades["market"] == MARKET and len(trades["trades"]) <= 5

    candles = api(settings, None, "GET", f"/api/v1/markets/{MARKET}/candles",
                  params={"interval": "1m", "limit": 3}).json()
    assert candles["interval"] == "1m" and len(candles["candles"]) <= 3


def test_unknown_market_and_bad_query_values_are_refused_naming_the_field(settings):
    unknown = api(settings, None, "GET", "/api/v1/markets/NOPE-USDT/depth")
    assert unknown.status_code == 404 and error_code(unknown) == "UNKNOWN_MARKET"
    for params, field in (({"limit": "0"}, "limit"), ({"limit": "1e3"}, "limit"),
                          ({"limit": "١٢"}, "limit")):
        refused = api(settings, None, "GET", f"/api/v1/markets/{MARKET}/depth", params=params)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["field"] == field
    bad_interval = api(settings, None, "GET", f"/api/v1/markets/{MARKET}/candles",
                       params={"interval": "2m"})
    assert bad_interval.status_code == 400 and bad_interval.json()["error"]["field"] == "interval"


# -- the caller ------------------------------------------------------------------

def test_me_tells_who_the_token_belongs_to(settings, trader):
    me = api(settings, trader, "GET", "/api/v1/me").json()
    assert me["user_id"] == trader.user_id and me["username"] == trader.username
    assert me["auth"] == "token" and me["state"] == "active" and "trader" in me["roles"]
    assert me["strong_auth"] is False  # a password grant never passed the OTP


# -- orders ----------------------------------------------------------------------

def test_place_list_amend_and_cancel_a_limit_order(settings, trader):
    usdt_before = balance(settings, trader, "USDT")
    placed = api(settings, trader, "POST", "/api/v1/orders",
                 json={"market": MARKET, "side": "buy", "type": "limit", "price": FAR_BELOW,
                       "quantity": "0.01", "client_order_id": "native-e2e-1"})
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert order["status"] == "new" and order["client_order_id"] == "native-e2e-1"
    assert (order["price"], order["quantity"]) == ("25000", "0.01")
    assert isinstance(order["created_at"], int)

    listed = api(settings, trader, "GET", "/api/v1/orders", params={"market": MARKET}).json()
    assert order["order_id"] in {o["order_id"] for o in listed["orders"]}
    usdt = balance(settings, trader, "USDT")
    assert Decimal(usdt["locked"]) - Decimal(usdt_before["locked"]) == Decimal("250")

    amended = api(settings, trader, "PATCH", f"/api/v1/orders/{order['order_id']}",
                  json={"price": "25001.00"})
    assert amended.status_code == 200, amended.text
    assert amended.json()["amend_requested"] is True
    moved = wait_for_order(settings, trader, order["order_id"], until=lambda o: o["price"] != "25000")
    assert moved["price"] == "25001" and moved["status"] == "new"

    cancelled = api(settings, trader, "DELETE", f"/api/v1/orders/{order['order_id']}")
    assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
    final = wait_for_order(settings, trader, order["order_id"], {"cancelled"})
    assert final["status"] == "cancelled"
    assert balance(settings, trader, "USDT")["locked"] == usdt_before["locked"]

    again = api(settings, trader, "DELETE", f"/api/v1/orders/{order['order_id']}")
    assert again.status_code == 400 and error_code(again) == "ORDER_NOT_OPEN"
    history = api(settings, trader, "GET", "/api/v1/orders/history", params={"limit": 10}).json()
    assert order["order_id"] in {o["order_id"] for o in history["orders"]}


def test_cancel_all_cancels_every_open_order_of_the_market(settings, trader):
    ids = []
    for price in ("25002.00", "25003.00"):
        placed = api(settings, trader, "POST", "/api/v1/orders",
                     json={"market": MARKET, "side": "buy", "price": price, "quantity": "0.01"})
        assert placed.status_code == 201, placed.text
        ids.append(placed.json()["order_id"])
    done = api(settings, trader, "DELETE", "/api/v1/orders", params={"market": MARKET})
    assert done.status_code == 200 and done.json()["cancel_requested"] is True
    assert done.json()["open_orders"] >= 2
    for order_id in ids:
        assert wait_for_order(settings, trader, order_id, {"cancelled"})["status"] == "cancelled"


def test_order_refusals_name_the_field_and_never_hold_anything(settings, trader):
    before = balance(settings, trader, "USDT")
    cases = [({"price": 1000.5}, "price", "INVALID_NUMBER"),
             ({"price": "1e3"}, "price", "INVALID_NUMBER"),
             ({"quantity": "0.01", "price": "-1"}, "price", "INVALID_NUMBER"),
             ({"post_only": "yes"}, "post_only", None),
             ({"side": "hold"}, "side", None),
             ({"colour": "red"}, "colour", "UNKNOWN_FIELD")]
    for change, field, code in cases:
        body = {"market": MARKET, "side": "buy", "price": FAR_BELOW, "quantity": "0.01", **change}
        refused = api(settings, trader, "POST", "/api/v1/orders", json=body)
        assert refused.status_code == 400, (change, refused.text)
        assert refused.json()["error"]["field"] == field, refused.text
        if code:
            assert error_code(refused) == code
    too_much = api(settings, trader, "POST", "/api/v1/orders",
                   json={"market": MARKET, "side": "buy", "price": FAR_BELOW, "quantity": "1"})
    assert too_much.status_code == 400 and error_code(too_much) == "INSUFFICIENT_FUNDS"
    not_json = api(settings, trader, "POST", "/api/v1/orders", data="market=BTC-USDT")
    assert not_json.status_code == 400
    assert balance(settings, trader, "USDT") == before


def test_fills_of_a_trade_between_two_people(settings):
    market = "ETH-USDT"
    seller = new_person(settings, funds={"ETH": "1"})
    buyer = new_person(settings, funds={"USDT": "1000"})
    price = str(quiet_price(settings, market))
    ask = api(settings, seller, "POST", "/api/v1/orders",
              json={"market": market, "side": "sell", "price": price, "quantity": "0.01"})
    assert ask.status_code == 201, ask.text
    assert wait_for_order(settings, seller, ask.json()["order_id"], {"new"})["status"] == "new"
    bid = api(settings, buyer, "POST", "/api/v1/orders",
              json={"market": market, "side": "buy", "price": price, "quantity": "0.01",
                    "time_in_force": "IOC"})
    assert bid.status_code == 201, bid.text
    order = wait_for_order(settings, buyer, bid.json()["order_id"], {"filled"})
    assert order["status"] == "filled" and order["filled_quantity"] == "0.01"
    fills = []
    for _ in range(50):  # fills reach market data asynchronously (bounded wait)
        fills = api(settings, buyer, "GET", "/api/v1/fills", params={"market": market}).json()["fills"]
        if fills:
            break
        time.sleep(0.2)
    mine = [f for f in fills if f["order_id"] == order["order_id"]]
    assert mine and mine[0]["side"] == "buy" and mine[0]["role"] == "taker"
    assert Decimal(mine[0]["price"]) == Decimal(price)
    assert sum(Decimal(f["quantity"]) for f in mine) == Decimal("0.01")
    other = api(settings, buyer, "GET", "/api/v1/fills", params={"market": "BTC-USDT"}).json()
    assert not [f for f in other["fills"] if f["order_id"] == order["order_id"]]
    # Its fee: the market's taker rate on the ETH received (the buyer has no
    # fee tier), and once settled what the ledger charged: the ETH the buyer
    # holds is the fill less it.
    rate = Decimal(api(settings, None, "GET", f"/api/v1/markets/{market}").json()["taker_fee"])
    assert rate > 0
    for _ in range(50):
        fee = next(f for f in api(settings, buyer, "GET", "/api/v1/fills",
                                  params={"market": market}).json()["fills"]
                   if f["order_id"] == order["order_id"])["fee"]
        if fee["settled"]:
            break
        time.sleep(0.2)
    assert fee["settled"] and fee["asset"] == "ETH" and Decimal(fee["amount"]) == Decimal("0.01") * rate
    assert Decimal(balance(settings, buyer, "ETH")["available"]) == Decimal("0.01") - Decimal(fee["amount"])


# -- wallets ---------------------------------------------------------------------

def test_balances_ledger_deposits_and_deposit_address(settings):
    person = new_person(settings, funds={"USDT": "123.45"})
    balances = {b["asset"]: b for b in api(settings, person, "GET", "/api/v1/balances").json()["balances"]}
    assert Decimal(balances["USDT"]["available"]) == Decimal("123.45")
    ledger = api(settings, person, "GET", "/api/v1/ledger/USDT", params={"limit": 5}).json()
    assert [e["type"] for e in ledger["entries"]] == ["deposit"]
    assert Decimal(ledger["entries"][0]["available_delta"]) == Decimal("123.45")
    deposits = api(settings, person, "GET", "/api/v1/deposits").json()["deposits"]
    assert [(d["asset"], Decimal(d["amount"])) for d in deposits] == [("USDT", Decimal("123.45"))]
    address = api(settings, person, "GET", "/api/v1/deposit-addresses/USDT").json()
    assert address["address"] == deposits[0]["address"]
    unknown = api(settings, person, "GET", "/api/v1/ledger/NOPE")
    assert unknown.status_code == 400 and error_code(unknown) == "UNKNOWN_ASSET"


def test_withdrawal_is_refused_without_the_one_time_password_login(settings):
    person = new_person(settings, funds={"USDT": "500"})
    request = {"asset": "USDT", "address": "0x" + "ab" * 20, "amount": "100", "ref": "w-1"}
    refused = api(settings, person, "POST", "/api/v1/withdrawals", json=request)
    assert refused.status_code == 403, refused.text
    assert error_code(refused) in {"STRONG_AUTH_REQUIRED", "STRONG_AUTH_STALE"}
    key = create_key(settings, person, permissions=["read", "trade"])
    by_key = signed(settings, key, "POST", "/api/v1/withdrawals", body=request)
    assert by_key.status_code in (401, 403) and error_code(by_key) == "APIKEY_PERMISSION_DENIED"
    assert api(settings, person, "GET", "/api/v1/withdrawals").json()["withdrawals"] == []
    usdt = {b["asset"]: b for b in api(settings, person, "GET", "/api/v1/balances").json()["balances"]}["USDT"]
    assert Decimal(usdt["available"]) == Decimal("500") and Decimal(usdt["locked"]) == 0


# -- API keys ------------------------------------------------------------------------

def test_api_key_lifecycle_and_signed_requests(settings):
    person = new_person(settings, funds={"USDT": "100"})
    key = create_key(settings, person, permissions=["read", "trade"])
    listed = api(settings, person, "GET", "/api/v1/api-keys").json()["api_keys"]
    assert [(k["key_id"], k["status"]) for k in listed] == [(key.key_id, "active")]
    assert "secret" not in listed[0]

    me = signed(settings, key, "GET", "/api/v1/me")
    assert me.status_code == 200, me.text
    assert (me.json()["user_id"], me.json()["auth"]) == (person.user_id, "api_key")
    placed = signed(settings, key, "POST", "/api/v1/orders",
                    body={"market": MARKET, "side": "buy", "price": FAR_BELOW, "quantity": "0.001"})
    assert placed.status_code == 201, placed.text
    assert signed(settings, key, "DELETE", f"/api/v1/orders/{placed.json()['order_id']}").status_code == 200

    forged = signed(settings, key, "GET", "/api/v1/me", secret="x" * 64)
    assert forged.status_code in (400, 401) and error_code(forged) == "SIGNATURE_INVALID"
    keys_by_key = signed(settings, key, "GET", "/api/v1/api-keys")
    assert keys_by_key.status_code == 403 and error_code(keys_by_key) == "TOKEN_REQUIRED"

    revoked = api(settings, person, "DELETE", f"/api/v1/api-keys/{key.api_key}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    after = signed(settings, key, "GET", "/api/v1/me")
    assert after.status_code == 401 and error_code(after) == "APIKEY_REVOKED"
    with rpc_proxy(settings) as rpc:
        assert [k["status"] for k in rpc.users.list_api_keys(person.token)] == ["revoked"]
