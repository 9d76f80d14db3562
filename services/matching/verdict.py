"""The engine's verdict on a limit price, asked without placing an order.

For a caller that must refuse what the engine would refuse, yet send
nothing (the Binance API's ``POST /api/v3/order/test``): a scratch engine
with the market's grid, its price band and the live reference price takes a
one-lot GTC limit order on an empty book. The band is the engine's rule
(engine.py: the fast path's bounds, the slow path, amends); asking an engine
keeps that rule in its one home instead of copying it here, and this answer
cannot drift from the one real orders get.

The scratch config carries no quantity bounds, notional or open-order limit:
the caller checks those as its own filters, and an empty book judges neither
liquidity, FOK nor a post-only order's crossing. Not in the compiled modules
(compiled.MODULES): a plain caller of the engine.
"""
from __future__ import annotations

from typing import Optional

from .engine import MatchingEngine
from .models import COMMAND_REJECTED, GTC, LIMIT, MarketConfig, PlaceOrder

PROBE_ORDER_ID, PROBE_USER = 1, "verdict"


def limit_price_rejection(config: MarketConfig, reference_price: Optional[str], side: str,
                          price: str) -> Optional[str]:
    """The engine's reason (``Reason``, e.g. ``PRICE_OUT_OF_BAND``) for
    refusing a limit order at ``price`` on ``side`` ("buy" / "sell") while
    its reference price is ``reference_price`` (as ``matching.get_depth``
    answers it; None: no reference yet, so no band), or None when it would
    take it. ``price`` must lie on ``config``'s tick grid (raises
    ``InvalidValue`` otherwise); only the grid and the band of ``config``
    are used."""
    scratch = MarketConfig(symbol=config.symbol, base_asset=config.base_asset,
                           quote_asset=config.quote_asset, tick_size=config.tick_size,
                           lot_size=config.lot_size,
                           price_band_percent=config.price_band_percent)
    engine = MatchingEngine(scratch)
    if reference_price is not None:
        engine.reference_price = scratch.price_to_ticks(reference_price)
    events = engine.apply(PlaceOrder(PROBE_ORDER_ID, PROBE_USER, side, LIMIT,
                                     scratch.price_to_ticks(price), 1, None, GTC))
    first = events[0]
    return first[-1] if first[0] == COMMAND_REJECTED else None
