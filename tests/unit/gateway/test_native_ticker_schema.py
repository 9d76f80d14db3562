"""/api/v1 tickers: marketdata gives each best level as [price, quantity]
(None while it holds no book). Once marketdata kept a live book (per-batch
coalesced book_changed), every /api/v1/tickers answered 500 because the
schema wanted a string; the CI rehearsal's browser tests saw it in the
console."""
from gateway.schemas import Ticker

BASE = {"market": "BTC-USDT", "volume": "1.5", "quote_volume": "45000", "trade_count": 3}


def test_best_levels_become_price_and_quantity():
    ticker = Ticker.model_validate({**BASE, "best_bid": ["29990.00", "0.2500"],
                                    "best_ask": ["30010.00", "1.0000"]}).model_dump()
    assert (ticker["best_bid"], ticker["best_bid_quantity"]) == ("29990.00", "0.2500")
    assert (ticker["best_ask"], ticker["best_ask_quantity"]) == ("30010.00", "1.0000")


def test_no_book_means_no_best_levels():
    ticker = Ticker.model_validate({**BASE, "best_bid": None, "best_ask": None}).model_dump()
    assert ticker["best_bid"] is None and ticker["best_bid_quantity"] is None
    assert ticker["best_ask"] is None and ticker["best_ask_quantity"] is None
