"""The gateway's market catalogue: Binance number format, filters with the
exact messages ccxt maps, symbol mapping and the cache."""
from decimal import Decimal

import pytest

from gateway.errors import ApiError
from gateway.markets import Catalogue, Market, fmt


def btc_usdt(**overrides) -> Market:
    spec = dict(symbol="BTC-USDT", base="BTC", quote="USDT", tick=Decimal("0.01"),
                lot=Decimal("0.0001"), min_qty=Decimal("0.0001"), max_qty=Decimal("1000"),
                min_notional=Decimal("5"), base_scale=8, quote_scale=6,
                maker_fee=Decimal("0.001"), taker_fee=Decimal("0.002"))
    spec.update(overrides)
    return Market(**spec)


def test_numbers_have_eight_decimals_and_never_lose_a_digit():
    assert fmt("0.01") == "0.01000000"
    assert fmt("30000") == "30000.00000000"
    assert fmt(None) == "0.00000000"
    assert fmt("0.000000000000000001") == "0.000000000000000001"


def test_zeros_past_the_eighth_decimal_are_not_shown():
    """An 18-decimal asset's amounts (wallets' ETH scale) in Binance's 8-decimal
    form: ``/account`` answered ETH's ``free`` as "20.000000000000000000"."""
    assert fmt(Decimal("20.000000000000000000")) == "20.00000000"
    assert fmt("0.000000000000000000") == "0.00000000"
    assert fmt("1.123456789000000000") == "1.123456789"
    assert fmt("12345678901234567890.123456789012345678000") == \
        "12345678901234567890.123456789012345678"


def refusal(call) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


def test_off_tick_price_is_a_price_filter_failure():
    error = refusal(lambda: btc_usdt().check_price(Decimal("30000.005")))
    assert (error.status, error.binance_code, error.binance_msg) == \
        (400, -1013, "Filter failure: PRICE_FILTER")
    assert refusal(lambda: btc_usdt().check_price(Decimal("0.001"))).binance_code == -1013
    btc_usdt().check_price(Decimal("30000.01"))


@pytest.mark.parametrize("quantity", ["0.00005", "0.00015", "1000.0001"])
def test_off_step_or_out_of_range_quantity_is_a_lot_size_failure(quantity):
    error = refusal(lambda: btc_usdt().check_quantity(Decimal(quantity)))
    assert error.binance_msg == "Filter failure: LOT_SIZE"


def test_small_notional_is_a_notional_failure():
    assert refusal(lambda: btc_usdt().check_notional(Decimal("4.99"))).binance_msg == \
        "Filter failure: NOTIONAL"
    btc_usdt().check_notional(Decimal("5"))


def test_commission_is_on_what_the_party_receives_rounded_down():
    market = btc_usdt()
    # a buyer receives 0.0100 BTC, pays 0.2 % of it in BTC
    assert market.commission(True, Decimal("0.002"), Decimal("0.01"), Decimal("300.1")) == \
        (Decimal("0.00002000"), "BTC")
    # a seller receives 300.1 USDT, pays 0.1 % in USDT, floored to 6 decimals
    assert market.commission(False, Decimal("0.001"), Decimal("0.01"), Decimal("300.1")) == \
        (Decimal("0.300100"), "USDT")
    assert market.commission(False, Decimal("0.001"), Decimal("0.0001"),
                             Decimal("0.000999"))[0] == 0


def test_exchange_info_entry_has_what_ccxt_reads():
    entry = btc_usdt().exchange_info()
    assert entry["symbol"] == "BTCUSDT" and entry["status"] == "TRADING"
    assert entry["orderTypes"] == ["LIMIT", "LIMIT_MAKER", "MARKET"]
    filters = {f["filterType"]: f for f in entry["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00010000"
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_catalogue_maps_symbols_caches_and_reloads_an_unknown_one():
    loads, markets, clock = [], [btc_usdt()], Clock()

    def load():
        loads.append(clock.now)
        return list(markets)

    catalogue = Catalogue(load, ttl_s=10, clock=clock)
    assert catalogue.by_binance("BTCUSDT").symbol == "BTC-USDT"
    assert catalogue.by_symbol("BTC-USDT").binance == "BTCUSDT"
    assert len(loads) == 1
    markets.append(btc_usdt(symbol="ETH-USDT", base="ETH"))
    clock.now = 2.0
    assert catalogue.by_binance("ETHUSDT").base == "ETH"     # a miss reloads
    assert len(loads) == 2
    for bad in ("NOPE", "BTC-USDT", "btc usdt", "", None, "X" * 40):
        assert refusal(lambda: catalogue.by_binance(bad)).binance_code == -1121


def test_catalogue_keeps_serving_its_copy_when_a_reload_fails():
    clock, fail = Clock(), []

    def load():
        if fail:
            raise OSError("registry down")
        return [btc_usdt()]

    catalogue = Catalogue(load, ttl_s=10, clock=clock)
    assert catalogue.markets()
    fail.append(True)
    clock.now = 60
    assert [m.symbol for m in catalogue.markets()] == ["BTC-USDT"]


def test_a_registry_market_becomes_a_binance_market():
    from services.common.catalogue import MarketInfo
    from gateway.markets import market_from_registry
    info = MarketInfo(symbol="ETH-USDT", base="ETH", quote="USDT", tick_size="0.01",
                      lot_size="0.0001", maker_fee="0.001", taker_fee="0.002",
                      min_quantity=None, max_quantity="10000", min_notional="5",
                      status="halted")
    market = market_from_registry(info, {"ETH": 18, "USDT": 6})
    assert (market.binance, market.min_qty, market.max_qty, market.min_notional) == \
        ("ETHUSDT", Decimal("0.0001"), Decimal("10000"), Decimal("5"))
    assert (market.base_scale, market.quote_scale, market.taker_fee) == (18, 6, Decimal("0.002"))
    entry = market.exchange_info()
    assert entry["status"] == "HALT" and entry["baseAssetPrecision"] == 18


def test_the_engines_price_band_is_stated_as_percent_price_by_side():
    """A limit price outside the band is refused -1013 "Filter failure:
    PERCENT_PRICE_BY_SIDE": exchangeInfo states that filter, from the
    registry's band, so a bot can keep its prices inside it."""
    from services.common.catalogue import MarketInfo
    from gateway.markets import market_from_engine_config, market_from_registry
    info = MarketInfo(symbol="BTC-USDT", base="BTC", quote="USDT", tick_size="0.01",
                      lot_size="0.0001", maker_fee="0.001", taker_fee="0.002",
                      min_quantity=None, max_quantity=None, min_notional="5",
                      status="trading", price_band_percent="7.5")
    for market in (market_from_registry(info, {}), market_from_engine_config({
            "symbol": "BTC-USDT", "base_asset": "BTC", "quote_asset": "USDT",
            "tick_size": "0.01", "lot_size": "0.0001", "price_band_percent": "7.5"})):
        filters = {f["filterType"]: f for f in market.exchange_info()["filters"]}
        assert filters["PERCENT_PRICE_BY_SIDE"] == {
            "filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": "1.07500000",
            "bidMultiplierDown": "0.92500000", "askMultiplierUp": "1.07500000",
            "askMultiplierDown": "0.92500000", "avgPriceMins": 0}
    assert "PERCENT_PRICE_BY_SIDE" not in {f["filterType"] for f in btc_usdt().exchange_info()[
        "filters"]}
