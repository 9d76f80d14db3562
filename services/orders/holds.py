"""How much an order must hold, and what to give back when it ends. Pure.

Fees are charged by wallets on what each side *receives*, so a hold never
needs a fee reserve: a buy holds quote, a sell holds base.

* limit buy: ``price x quantity`` quote; a limit sell: ``quantity`` base;
* market sell: ``quantity`` base; market buy by quote amount: that amount;
* market buy by base quantity: ``quantity x protection price`` quote, and the
  engine receives it as an IOC limit at the protection price, so it can never
  spend more than was held;
* amend: the hold always covers ``cap_price x cap_quantity``, the highest price
  and highest total quantity the order ever had. Every fill is at or below the
  order's price at that moment and the total filled never exceeds its quantity,
  so what it spends is at most that product.

When the order is done, the leftover (``hold - spent``) is released.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Hold:
    asset: str
    amount: Decimal
    cap_price: Decimal | None
    cap_quantity: Decimal | None


def initial_hold(base: str, quote: str, side: str, order_type: str, price: Decimal | None,
                 quantity: Decimal | None, quote_amount: Decimal | None) -> Hold:
    if side == "sell":
        return Hold(base, quantity, price, quantity)
    if order_type == "market" and quote_amount is not None:
        return Hold(quote, quote_amount, None, None)
    return Hold(quote, price * quantity, price, quantity)


def amend_extra(side: str, hold: Decimal, cap_price: Decimal, cap_quantity: Decimal,
                new_price: Decimal, new_quantity: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """``(extra to hold, new cap price, new cap quantity)`` for an amend."""
    price, quantity = max(cap_price, new_price), max(cap_quantity, new_quantity)
    required = quantity if side == "sell" else price * quantity
    return max(Decimal(0), required - hold), price, quantity


def leftover(side: str, hold: Decimal, filled_quantity: Decimal, filled_quote: Decimal) -> Decimal:
    """What stays locked after the order is done and must go back to available."""
    spent = filled_quantity if side == "sell" else filled_quote
    if spent > hold:
        raise ValueError(f"an order spent {spent}, more than its hold {hold}")
    return hold - spent
