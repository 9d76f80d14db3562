"""The 24 h ticker object in Binance's shape, from marketdata's ticker and
the engine's book, without servers."""
import pytest

from gateway.api.binance import _ticker
from test_binance_markets import btc_usdt

BOOK = {"buy": [["29990.00", "0.5"]], "sell": [["30010.00", "0.25"]]}


def ticker(**overrides) -> dict:
    row = {"market": "BTC-USDT", "window_start": 1, "open": "100.00", "high": "100.00",
           "low": "4.04", "last": "4.04", "volume": "2", "quote_volume": "104.04",
           "change": "-95.96", "change_percent": "-95.96", "trade_count": 2}
    row.update(overrides)
    return row


@pytest.mark.parametrize("overrides, shown", [
    ({}, "-95.960"),                                                  # Binance's own example
    ({"open": "3.00", "last": "4.00", "change": "1.00", "change_percent": "33.33"}, "33.333"),
    # a fall too small for three decimals is no change, never "-0.000"
    ({"open": "30000.00", "last": "29999.99", "change": "-0.01", "change_percent": "0.00"},
     "0.000"),
    ({"open": None, "high": None, "low": None, "change": None, "change_percent": None,
      "trade_count": 0}, "0.000"),                                    # no trade in the window
])
def test_price_change_percent_has_binances_three_decimals(overrides, shown):
    assert _ticker(btc_usdt(), ticker(**overrides), BOOK, None, 2)["priceChangePercent"] == shown
