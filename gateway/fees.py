"""A user's fees on their fills, for both APIs (Binance's ``commission`` of
``myTrades``; the native ``/fills``' ``fee``).

A fill's fee is what the ledger charged the user on it (wallets'
``trade_fees``: the fee of the user's own role, at the rate of their fee tier
or the market's schedule when it settled). A fill that marketdata already
shows but wallets has not settled yet gets what its settlement will charge
at the user's rate now, marked not settled. Fees are never the market's
schedule alone: a user with a tier pays the tier's rate.
"""
from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from gateway.markets import Market, catalogue

# Fills per wallets.trade_fees call (wallets' MAX_BATCH ids).
TRADE_FEES_BATCH = 1000


class Fee(NamedTuple):
    amount: Decimal
    asset: str
    settled: bool   # False: not settled yet, the amount at the user's rate


def rates_of(paid: dict) -> dict[str, Decimal]:
    """The maker and taker rates of a ``wallets.trade_fees`` answer."""
    return {role: Decimal(rate) for role, rate in paid["rates"].items()}


def fee_at(fill: dict, market: Market, rates: dict[str, Decimal]) -> Fee:
    """A fill's fee at the user's ``rates``, as its settlement charges it."""
    amount, asset = market.commission(fill["side"] == "buy", rates[fill["role"]],
                                      Decimal(fill["quantity"]), Decimal(fill["quote_quantity"]))
    return Fee(amount, asset, False)


def fill_fees(services, user: str, fills: list[dict]) -> list[Fee]:
    """Each of ``user``'s fills' fee (marketdata's fill dicts, any markets):
    one wallets call per market and TRADE_FEES_BATCH fills."""
    out: list[Fee | None] = [None] * len(fills)
    by_market: dict[str, list[int]] = {}
    for index, fill in enumerate(fills):
        by_market.setdefault(fill["market"], []).append(index)
    for symbol, indices in by_market.items():
        market = catalogue().by_symbol(symbol)
        for start in range(0, len(indices), TRADE_FEES_BATCH):
            chunk = indices[start:start + TRADE_FEES_BATCH]
            paid = services.wallets.trade_fees(user, symbol, [fills[i]["trade_id"] for i in chunk])
            rates = rates_of(paid)
            for i in chunk:
                charged = paid["fees"].get(fills[i]["trade_id"], {}).get(fills[i]["role"])
                out[i] = Fee(Decimal(charged["amount"]), charged["asset"], True) if charged \
                    else fee_at(fills[i], market, rates)
    return out
