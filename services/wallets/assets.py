"""What wallets knows about assets and markets: the registry's catalogue.

Assets (precision, chain family, confirmations, withdrawal fee / minimum /
daily limit) and markets (base, quote, tick, lot, maker and taker fees) are
the registry's facts (services/registry), read here through
services.common.catalogue: ``ASSETS`` and ``MARKETS`` are live read-only
views of this process's current catalogue (loaded when the service starts,
followed through the registry's events, refreshed on a miss).

What stays wallets' own data is the per-user fee tiers below: a tier
overrides a market's schedule in every market.

Amounts are decimal strings in whole units of the asset; ``*_minor`` gives
the same in minor units (``10**-scale``), which the ledger stores. Fee rates
are decimal strings (``"0.001"`` = 0.1 %), charged on what a party receives
in a trade (the buyer pays in base, the seller in quote), rounded down to the
asset's minor unit.
"""
from __future__ import annotations

from typing import Optional

from services.common import catalogue
from services.common.catalogue import BTC_CHAIN, EVM_CHAIN, FeeRates  # noqa: F401

Asset = catalogue.AssetInfo
Market = catalogue.MarketInfo

ASSETS = catalogue.LiveView("asset")
MARKETS = catalogue.LiveView("market")

# Per-user tiers override a market's schedule in every market.
FEE_TIERS: dict[str, FeeRates] = {
    "vip1": FeeRates(maker="0.0008", taker="0.0009"),
    "vip2": FeeRates(maker="0.0005", taker="0.0007"),
    "market_maker": FeeRates(maker="0", taker="0.0005"),
}


def fee_rates(market: Market, tier: Optional[str]) -> FeeRates:
    """The rates that apply to a user of ``tier`` (``None``: the market's own)."""
    if tier is None:
        return market.fees
    return FEE_TIERS[tier]
