"""A partner with a fee tier sees what it pays: ccxt's ``order["fee"]`` (from
FULL ``fills``) and ``fetch_my_trades`` fees are the ledger's, not the
market's schedule.

Before, the gateway computed every commission at the market's rates
(BTC-USDT: maker 0.1 %, taker 0.2 %), while wallets charged a market maker's
0 % or a vip1 taker's 0.09 %: a bot reconciling its fees against its balances
was off on every fill. And a tier changed later must not rewrite what a past
trade was charged.
"""
from decimal import Decimal

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

import binance_testkit as kit
from binance_testkit import SYMBOL, quiet_price
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)

QUANTITY = Decimal("0.01")


def set_tier(settings, admin_token: str, user: str, tier) -> None:
    """wallets' admin verb, as an operator calls it (an admin's token)."""
    with ClusterRpcProxy(settings.nameko_config(), timeout=30,
                         context_data={"access_token": admin_token}) as rpc:
        assert rpc.wallets.set_fee_tier(user, tier)["tier"] == tier


@pytest.fixture(scope="module")
def tiered(settings, gateway_url, principal_tokens):  # noqa: F811 (fixture)
    """A market maker (maker 0 %) and a vip1 taker (taker 0.09 %), each a
    ccxt bot of its own."""
    maker = kit.new_trader(settings, {"BTC": "1"}, prefix="tiermaker")
    taker = kit.new_trader(settings, {"USDT": "10000"}, prefix="tiertaker")
    admin = principal_tokens.person("admin")
    set_tier(settings, admin, maker.user_id, "market_maker")
    set_tier(settings, admin, taker.user_id, "vip1")
    return (kit.binance_local(gateway_url, maker.api_key, maker.secret),
            kit.binance_local(gateway_url, taker.api_key, taker.secret),
            taker, admin)


def cross(settings, ex_maker, ex_taker) -> tuple[dict, Decimal]:
    """The maker's resting sell taken whole by the taker's IOC buy (FULL)."""
    price = quiet_price(settings)
    ex_maker.create_order(SYMBOL, "limit", "sell", float(QUANTITY), float(price))
    bought = ex_taker.create_order(SYMBOL, "limit", "buy", float(QUANTITY), float(price),
                                   {"timeInForce": "IOC"})
    assert bought["filled"] == float(QUANTITY), bought
    return bought, price


def btc_available(settings, user: str) -> Decimal:
    with kit.rpc_proxy(settings) as rpc:
        return Decimal(rpc.wallets.balance(user, "BTC")["available"])


def fees_of(ex, order_id: str) -> list[tuple[Decimal, str]]:
    trades = kit.eventually(lambda: [t for t in ex.fetch_my_trades(SYMBOL) if t["order"] == order_id])
    return [(Decimal(str(t["fee"]["cost"])), t["fee"]["currency"]) for t in trades]


def test_fills_and_my_trades_show_the_tiers_fees(settings, tiered):
    ex_maker, ex_taker, _, _ = tiered
    bought, price = cross(settings, ex_maker, ex_taker)
    # vip1's taker rate on the 0.01 BTC received: 0.000009 BTC (the market's
    # taker rate would say 0.00002)
    assert [(Decimal(str(t["fee"]["cost"])), t["fee"]["currency"]) for t in bought["trades"]] == \
        [(Decimal("0.000009"), "BTC")]
    assert fees_of(ex_taker, bought["id"]) == [(Decimal("0.000009"), "BTC")]
    sold = [t for t in ex_maker.fetch_my_trades(SYMBOL) if t["price"] == float(price)]
    assert sold and all(Decimal(str(t["fee"]["cost"])) == 0 and t["fee"]["currency"] == "USDT"
                        for t in sold), sold


def test_a_later_tier_change_leaves_past_fees_alone(settings, tiered):
    ex_maker, ex_taker, taker, admin = tiered
    held = btc_available(settings, taker.user_id)
    before, _ = cross(settings, ex_maker, ex_taker)
    # settled under vip1 before the change (else settlement would charge the new rate)
    kit.eventually(lambda: btc_available(settings, taker.user_id) - held == QUANTITY - Decimal("0.000009"))
    set_tier(settings, admin, taker.user_id, None)  # back to the market's 0.2 %
    after, _ = cross(settings, ex_maker, ex_taker)
    assert [Decimal(str(t["fee"]["cost"])) for t in after["trades"]] == [Decimal("0.00002")]
    assert fees_of(ex_taker, before["id"]) == [(Decimal("0.000009"), "BTC")]
    assert fees_of(ex_taker, after["id"]) == [(Decimal("0.00002"), "BTC")]


def test_bots_read_their_rates(settings, gateway_url, principal_tokens):  # noqa: F811 (fixture)
    """ccxt's fetch_trading_fee(s) and python-binance's get_trade_fee
    (``GET /sapi/v1/asset/tradeFee``): the market's schedule, then the tier's
    once an operator sets one."""
    trader = kit.new_trader(settings, prefix="tierrates")
    ex = kit.binance_local(gateway_url, trader.api_key, trader.secret)
    client = kit.binance_client(gateway_url, trader.api_key, trader.secret)
    fee = ex.fetch_trading_fee(SYMBOL)
    assert (fee["symbol"], fee["maker"], fee["taker"]) == (SYMBOL, 0.001, 0.002)
    assert client.get_trade_fee(symbol="BTCUSDT") == [
        {"symbol": "BTCUSDT", "makerCommission": "0.001", "takerCommission": "0.002"}]
    set_tier(settings, principal_tokens.person("admin"), trader.user_id, "vip2")
    every = ex.fetch_trading_fees()
    assert SYMBOL in every and "ETH/USDT" in every
    assert {(f["maker"], f["taker"]) for f in every.values()} == {(0.0005, 0.0007)}
    assert client.get_trade_fee(symbol="ETHUSDT") == [
        {"symbol": "ETHUSDT", "makerCommission": "0.0005", "takerCommission": "0.0007"}]


def test_trade_fee_refusals(settings):
    """Signed as any /api/v3 read; an unknown or malformed symbol is -1121."""
    trader = kit.new_trader(settings, prefix="tierrates")
    unsigned = kit.raw(settings, "GET", "/sapi/v1/asset/tradeFee")
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, -2014)
    for path in ("/sapi/v1/asset/tradeFee", "/api/v3/account/commission"):
        for hostile in ("NOPEUSDT", "btcusdt", "BTC-USDT", "BTCUSDT" * 100, "БТЦ", "BTC\x00USDT",
                        "1e5"):
            unknown = kit.raw(settings, "GET", path, trader, {"symbol": hostile})
            assert (unknown.status_code, unknown.json()["code"]) == (400, -1121), (path, hostile)


def test_account_commission_shows_the_rates(settings, gateway_url, principal_tokens):  # noqa: F811
    """GET /api/v3/account/commission (python-binance's
    v3_get_account_commission): the market's schedule, then the tier's."""
    trader = kit.new_trader(settings, prefix="tierrates")
    client = kit.binance_client(gateway_url, trader.api_key, trader.secret)
    answer = client.v3_get_account_commission(symbol="BTCUSDT")
    assert answer["symbol"] == "BTCUSDT"
    assert answer["standardCommission"] == {"maker": "0.00100000", "taker": "0.00200000",
                                            "buyer": "0.00000000", "seller": "0.00000000"}
    assert answer["discount"]["enabledForAccount"] is False
    set_tier(settings, principal_tokens.person("admin"), trader.user_id, "market_maker")
    tiered = client.v3_get_account_commission(symbol="BTCUSDT")["standardCommission"]
    assert (tiered["maker"], tiered["taker"]) == ("0.00000000", "0.00050000")
    missing = kit.raw(settings, "GET", "/api/v3/account/commission", trader)
    assert (missing.status_code, missing.json()["code"]) == (400, -1102)
