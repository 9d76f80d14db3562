"""The markets this service knows, with their precision (tick and lot sizes).

A stand-in registry: BTC-USDT and ETH-USDT, plus any extra markets given in
the container config as ``MARKETDATA_MARKETS`` (a list of
``MarketConfig.to_dict()`` dicts; tests register throw-away markets this way).
It is to be replaced by the markets admin RPC of issue 5, which will be the one
place market rules live; until then this module is that place for marketdata.
"""
from __future__ import annotations

import re
from typing import Iterable, Optional

from services.marketdata.errors import UnknownMarket
from services.matching.models import MarketConfig

# Symbols become Cassandra partition keys and Memcached key parts: keep them tame.
SYMBOL = re.compile(r"^[A-Z0-9]{2,16}-[A-Z0-9]{2,16}$")

DEFAULT_MARKETS = (
    MarketConfig("BTC-USDT", "BTC", "USDT", tick_size="0.01", lot_size="0.0001"),
    MarketConfig("ETH-USDT", "ETH", "USDT", tick_size="0.01", lot_size="0.0001"),
)


class MarketRegistry:
    def __init__(self, markets: Iterable[MarketConfig]):
        self._markets: dict[str, MarketConfig] = {}
        for market in markets:
            if not SYMBOL.match(market.symbol):
                raise ValueError(f"market symbol {market.symbol!r} must match {SYMBOL.pattern}")
            self._markets[market.symbol] = market

    @classmethod
    def from_config(cls, config: Optional[dict]) -> "MarketRegistry":
        extra = [MarketConfig.from_dict(d) for d in (config or {}).get("MARKETDATA_MARKETS", ())]
        return cls([*DEFAULT_MARKETS, *extra])

    def get(self, symbol) -> MarketConfig:
        market = self._markets.get(symbol) if isinstance(symbol, str) else None
        if market is None:
            raise UnknownMarket(f"unknown market {str(symbol)[:40]!r}")
        return market

    def __contains__(self, symbol) -> bool:
        return isinstance(symbol, str) and symbol in self._markets

    def symbols(self) -> list[str]:
        return sorted(self._markets)
