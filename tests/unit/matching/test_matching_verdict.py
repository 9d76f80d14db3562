"""The engine's verdict on a limit price without placing an order
(services/matching/verdict.py): the band's edges exactly as a real engine
refuses them, whatever else the market's config says."""
import pytest

from services.matching.engine import MatchingEngine
from services.matching.models import (COMMAND_REJECTED, MarketConfig, PlaceOrder,
                                      SetReferencePrice)
from services.matching.verdict import limit_price_rejection

BTC = MarketConfig("BTC-USDT", "BTC", "USDT", tick_size="0.01", lot_size="0.0001",
                   min_quantity="0.0001", min_notional="5", price_band_percent="20",
                   max_open_orders=1)


def real_engine_reason(side: str, price: str):
    """What a real engine with the full config says, after a reference set
    the way an admin sets it."""
    engine = MatchingEngine(BTC)
    engine.apply(SetReferencePrice(BTC.price_to_ticks("30000.00")))
    first = engine.apply(PlaceOrder(9, "u", side, "limit", BTC.price_to_ticks(price),
                                    BTC.qty_to_lots("0.01")))[0]
    return first[-1] if first[0] == COMMAND_REJECTED else None


@pytest.mark.parametrize("side", ["buy", "sell"])
@pytest.mark.parametrize("price, reason", [
    ("24000.00", None), ("23999.99", "PRICE_OUT_OF_BAND"),
    ("36000.00", None), ("36000.01", "PRICE_OUT_OF_BAND"), ("30000", None),
    ("99999999999999999999.99", "INVALID_PRICE")])
def test_the_band_is_the_engines(side, price, reason):
    assert limit_price_rejection(BTC, "30000.00", side, price) == reason
    if reason != "INVALID_PRICE":
        assert real_engine_reason(side, price) == reason


def test_no_reference_price_yet_or_no_band_is_no_refusal():
    assert limit_price_rejection(BTC, None, "buy", "0.01") is None
    unbanded = MarketConfig("BTC-USDT", "BTC", "USDT", tick_size="0.01", lot_size="0.0001")
    assert limit_price_rejection(unbanded, "30000.00", "buy", "0.01") is None
