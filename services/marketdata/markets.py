"""The markets this service knows, with their precision (tick and lot sizes):
the registry's catalogue (services.common.catalogue), loaded at start and
followed, so a market listed on the running exchange shows at once.

``MarketRegistry`` wraps anything with the catalogue's read verbs
(``market(symbol)``, ``markets()``: a ``CatalogueFollower`` in the service, a
``Catalogue`` snapshot in tests) and hands out the engine's ``MarketConfig``,
built once per market and catalogue version.
"""
from __future__ import annotations

from services.common import catalogue
from services.marketdata.errors import UnknownMarket
from services.matching.models import MarketConfig


class MarketRegistry:
    def __init__(self, source):
        self._source = source
        # The number of trades parked for markets not listed yet (the
        # service's Backend sets it; none without one).
        self.parked = lambda: 0
        self._configs: dict[str, tuple[catalogue.MarketInfo, MarketConfig]] = {}

    @classmethod
    def from_catalogue(cls, snapshot: catalogue.Catalogue) -> "MarketRegistry":
        return cls(snapshot)

    def get(self, symbol) -> MarketConfig:
        market = self._source.market(symbol) if isinstance(symbol, str) else None
        if market is None:
            raise UnknownMarket(message=f"unknown market {str(symbol)[:40]!r}")
        cached = self._configs.get(market.symbol)
        if cached is None or cached[0] is not market:
            cached = self._configs[market.symbol] = (
                market, MarketConfig.from_dict(market.engine_config()))
        return cached[1]

    def __contains__(self, symbol) -> bool:
        return isinstance(symbol, str) and self._source.market(symbol) is not None

    def symbols(self) -> list[str]:
        return sorted(self._source.markets())
