"""The registry: assets, markets and the fee schedule -- one place for each fact.

Everything the wallets service knows about an asset (its precision, how its
addresses and transaction ids look, how many confirmations a deposit needs,
withdrawal fee / minimum / daily limit) and about a market (base, quote, tick
and lot size, maker and taker fee rates) lives here, so a later market-config
service can take over by replacing this one module.

Amounts in this module are decimal strings in whole units of the asset
(``"0.0002"`` BTC); the ``*_minor`` properties give the same values in minor
units (``10**-scale`` of the asset), which is what the ledger stores.

Fee rates are decimal strings (``"0.001"`` = 0.1 %, 10 basis points). A fee is
charged on what a party *receives* in a trade (the buyer pays in base, the
seller in quote) and rounded down to the asset's minor unit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Optional

# ---------------------------------------------------------------- assets

BTC_CHAIN = "bitcoin"
EVM_CHAIN = "ethereum"


@dataclass(frozen=True)
class Asset:
    """One asset. ``scale`` is its number of decimals: 1 minor unit = 10**-scale."""

    code: str
    scale: int
    chain: str                      # address / txid format family: BTC_CHAIN or EVM_CHAIN
    confirmations: int              # a deposit is credited once it has this many
    withdrawal_fee: str             # whole units, charged on top of the amount
    min_withdrawal: str             # whole units, the smallest amount one can withdraw
    daily_withdrawal_limit: str     # whole units per user, rolling 24 hours

    withdrawal_fee_minor: int = field(init=False, repr=False, compare=False)
    min_withdrawal_minor: int = field(init=False, repr=False, compare=False)
    daily_withdrawal_limit_minor: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("withdrawal_fee", "min_withdrawal", "daily_withdrawal_limit"):
            value = Decimal(getattr(self, name))
            minor = value.scaleb(self.scale)
            if value < 0 or minor != minor.to_integral_value():
                raise ValueError(f"{self.code}.{name} {value} does not fit {self.scale} decimals")
            object.__setattr__(self, f"{name}_minor", int(minor))

    @property
    def unit(self) -> int:
        """Minor units in one whole unit."""
        return 10 ** self.scale


ASSETS: dict[str, Asset] = {
    asset.code: asset
    for asset in (
        Asset("BTC", 8, BTC_CHAIN, confirmations=3, withdrawal_fee="0.0002",
              min_withdrawal="0.001", daily_withdrawal_limit="10"),
        Asset("ETH", 18, EVM_CHAIN, confirmations=12, withdrawal_fee="0.002",
              min_withdrawal="0.01", daily_withdrawal_limit="200"),
        # USDT as the ERC-20 token: 6 decimals on chain, Ethereum addresses.
        Asset("USDT", 6, EVM_CHAIN, confirmations=12, withdrawal_fee="1",
              min_withdrawal="10", daily_withdrawal_limit="500000"),
    )
}


# ---------------------------------------------------------------- fees


@dataclass(frozen=True)
class FeeRates:
    """Maker and taker fee rates as decimal strings (``"0.001"`` = 0.1 %)."""

    maker: str
    taker: str

    maker_ratio: tuple[int, int] = field(init=False, repr=False, compare=False)
    taker_ratio: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("maker", "taker"):
            rate = Decimal(getattr(self, name))
            if not rate.is_finite() or rate < 0 or rate >= Decimal("0.1"):
                raise ValueError(f"fee rate {name}={rate} must be in [0, 0.1)")
            object.__setattr__(self, f"{name}_ratio", rate.as_integer_ratio())

    def rate(self, is_maker: bool) -> tuple[int, int]:
        """The rate as an exact fraction ``(numerator, denominator)``."""
        return self.maker_ratio if is_maker else self.taker_ratio


# Per-user tiers override a market's schedule in every market.
FEE_TIERS: dict[str, FeeRates] = {
    "vip1": FeeRates(maker="0.0008", taker="0.0009"),
    "vip2": FeeRates(maker="0.0005", taker="0.0007"),
    "market_maker": FeeRates(maker="0", taker="0.0005"),
}


# ---------------------------------------------------------------- markets


@dataclass(frozen=True)
class Market:
    """A spot market. ``tick_size`` (quote per base) and ``lot_size`` (base) are
    the matching engine's grid; their product must be a whole number of the
    quote asset's minor units so every trade's quote amount is exact."""

    symbol: str
    base: str
    quote: str
    tick_size: str
    lot_size: str
    fees: FeeRates

    def __post_init__(self) -> None:
        base, quote = ASSETS[self.base], ASSETS[self.quote]
        lot_minor = Decimal(self.lot_size).scaleb(base.scale)
        notional_minor = (Decimal(self.tick_size) * Decimal(self.lot_size)).scaleb(quote.scale)
        if lot_minor != lot_minor.to_integral_value():
            raise ValueError(f"{self.symbol}: lot {self.lot_size} is finer than {base.code}")
        if notional_minor != notional_minor.to_integral_value():
            raise ValueError(f"{self.symbol}: tick x lot is finer than {quote.code}")


MARKETS: dict[str, Market] = {
    market.symbol: market
    for market in (
        Market("BTC-USDT", "BTC", "USDT", tick_size="0.01", lot_size="0.0001",
               fees=FeeRates(maker="0.001", taker="0.002")),
        Market("ETH-USDT", "ETH", "USDT", tick_size="0.01", lot_size="0.0001",
               fees=FeeRates(maker="0.001", taker="0.002")),
    )
}


def fee_rates(market: Market, tier: Optional[str]) -> FeeRates:
    """The rates that apply to a user of ``tier`` (``None``: the market's own)."""
    if tier is None:
        return market.fees
    return FEE_TIERS[tier]
