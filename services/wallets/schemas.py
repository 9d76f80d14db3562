"""RPC input: turn what arrives over the wire into validated values, or raise
a typed error (services.wallets.errors) before anything is read or written.

Identifiers
-----------
* user id  -- 1-64 characters ``[A-Za-z0-9_.-]`` starting with a letter or
  digit (a Keycloak subject UUID fits). System owners (``system:...``) can
  never be named by a caller.
* ref / trade id -- 1-128 characters ``[A-Za-z0-9_.:/-]`` starting with a
  letter or digit; a trade id may also be a non-negative int (the engine's
  per-market sequence number).
* withdrawal id -- a positive int.
* cursor -- ``None`` or the ``next_cursor`` string of the previous page.
"""
from __future__ import annotations

import re
from typing import Any, Optional

from services.common import events, grammar
from services.common.errors import InvalidInput as GrammarRefusal
from services.wallets.amounts import parse_amount, parse_price
from services.wallets.assets import ASSETS, FEE_TIERS, MARKETS, Asset, Market
from services.wallets.errors import (
    AmountTooPrecise,
    InvalidId,
    InvalidRequest,
    UnknownAsset,
    UnknownFeeTier,
    UnknownMarket,
)
from services.wallets.ledger import BUY, SELL, Trade, quote_amount

_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}")
_TXID = re.compile(r"[A-Za-z0-9:_-]{1,100}", re.ASCII)
_CURSOR = re.compile(r"[1-9][0-9]{0,18}")
_MAX_BIGINT = (1 << 63) - 1

MAX_PAGE = 200
DEFAULT_PAGE = 50
MAX_BATCH = 1000
MAX_TEXT = 500


def load_user_id(value: Any, name: str = "user") -> str:
    if not isinstance(value, str) or not _USER_ID.fullmatch(value):
        raise InvalidId(f"{name} {_show(value)} is not a user id")
    return value


def load_ref(value: Any, name: str = "ref") -> str:
    if not isinstance(value, str) or not _REF.fullmatch(value):
        raise InvalidId(f"{name} {_show(value)} is not a valid reference")
    return value


def load_trade_id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_BIGINT:
        return str(value)
    return load_ref(value, "trade_id")


def load_market(value: Any) -> Market:
    if not isinstance(value, str) or value not in MARKETS:
        raise UnknownMarket(message=f"{_show(value)} is not a market", field="market")
    return MARKETS[value]


def load_trade_ids(value: Any) -> list[str]:
    """A list of 0 to MAX_BATCH trade ids (trade_fees), duplicates dropped."""
    if not isinstance(value, list) or len(value) > MAX_BATCH:
        raise InvalidRequest(f"trade_ids must be a list of at most {MAX_BATCH} trade ids")
    return list(dict.fromkeys(load_trade_id(item) for item in value))


def load_withdrawal_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_BIGINT:
        raise InvalidId(f"withdrawal_id {_show(value)} is not a positive integer")
    return value


def load_asset(value: Any) -> Asset:
    if not isinstance(value, str) or value not in ASSETS:
        raise UnknownAsset(message=f"{_show(value)} is not a listed asset")
    return ASSETS[value]


def load_amount(asset: Asset, value: Any, *, signed: bool = False) -> int:
    """Whole units on the wire -> minor units (see services.wallets.amounts)."""
    return parse_amount(asset, value, signed=signed)


def load_fee_tier(value: Any) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str) or value not in FEE_TIERS:
        raise UnknownFeeTier(f"{_show(value)} is not a fee tier ({', '.join(sorted(FEE_TIERS))})")
    return value


def load_confirmations(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10 ** 9:
        raise InvalidRequest(f"confirmations {_show(value)} is not a non-negative integer")
    return value


def load_text(value: Any, name: str) -> str:
    """Free text (a reason): 1 to MAX_TEXT characters, not blank, no control
    characters (services.common.grammar)."""
    try:
        grammar.text(value, name, max_len=MAX_TEXT)
    except GrammarRefusal:
        raise InvalidRequest(f"{name} must be 1 to {MAX_TEXT} characters without control "
                             "characters") from None
    if not value.strip():
        raise InvalidRequest(f"{name} must not be blank")
    return value


def load_sent_txid(value: Any) -> str:
    """The chain transaction id an operator records for a sent withdrawal."""
    if not isinstance(value, str) or not _TXID.fullmatch(value):
        raise InvalidRequest(f"txid {_show(value)} is not a transaction id")
    return value


def load_page(cursor: Any, limit: Any) -> tuple[Optional[int], int]:
    """(transaction id to continue below, or None for the newest; page size)."""
    if cursor is None:
        before = None
    elif isinstance(cursor, str) and _CURSOR.fullmatch(cursor) and int(cursor) <= _MAX_BIGINT:
        before = int(cursor)
    else:
        raise InvalidId(f"cursor {_show(cursor)} is not a cursor from a previous page")
    if limit is None:
        limit = DEFAULT_PAGE
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit {_show(limit)} must be an integer from 1 to {MAX_PAGE}")
    return before, limit


# ---------------------------------------------------------------- trades

TRADE_KEYS = {"trade_id", "market", "price", "quantity", "taker_side", "maker_user_id", "taker_user_id"}


def trade_from_event(event: events.Trade) -> Trade:
    """A decoded ``trade_executed`` (services.common.events.trade_executed)
    as the ledger's Trade; the same refusals as ``load_trade``."""
    return load_trade({"trade_id": event.trade_id, "market": event.market, "price": event.price,
                       "quantity": event.quantity, "taker_side": event.taker_side,
                       "maker_user_id": event.maker_user_id,
                       "taker_user_id": event.taker_user_id})


def load_user_ids(value: Any) -> list[str]:
    """A list of 1 to MAX_BATCH user ids (balances_of), duplicates dropped,
    in the order given."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_BATCH:
        raise InvalidRequest(f"users must be a list of 1 to {MAX_BATCH} user ids")
    return list(dict.fromkeys(load_user_id(item, f"users[{index}]")
                              for index, item in enumerate(value)))


def load_trades(value: Any) -> list[Trade]:
    """A batch for settle_trades: a non-empty list of at most MAX_BATCH trades."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_BATCH:
        raise InvalidRequest(f"trades must be a list of 1 to {MAX_BATCH} trades")
    return [load_trade(item, index) for index, item in enumerate(value)]


def load_trade(value: Any, index: int = 0) -> Trade:
    """One trade dict::

        {"trade_id": "17" | 17, "market": "BTC-USDT",
         "price": "30000.01",        # quote per base, decimal string
         "quantity": "0.0150",       # base, decimal string
         "taker_side": "buy" | "sell",
         "maker_user_id": "...", "taker_user_id": "..."}

    ``price x quantity`` must be a whole number of quote minor units.
    """
    if not isinstance(value, dict):
        raise InvalidRequest(f"trades[{index}] is not an object")
    keys = set(value)
    if keys != TRADE_KEYS:
        missing, unknown = sorted(TRADE_KEYS - keys), sorted(keys - TRADE_KEYS)
        raise InvalidRequest(f"trades[{index}]: missing {missing}, unknown {unknown}")
    symbol = value["market"]
    if not isinstance(symbol, str) or symbol not in MARKETS:
        raise UnknownMarket(message=f"trades[{index}]: {_show(symbol)} is not a market",
                            field=f"trades[{index}].market")
    market = MARKETS[symbol]
    trade_id = load_trade_id(value["trade_id"])
    price = parse_price(value["price"])
    base_amount = parse_amount(ASSETS[market.base], value["quantity"])
    quote = quote_amount(market, price, base_amount)
    if quote is None:
        raise AmountTooPrecise(
            f"trades[{index}]: price {value['price']} x quantity {value['quantity']} is not a whole "
            f"number of {market.quote} minor units")
    if value["taker_side"] not in (BUY, SELL):
        raise InvalidRequest(f"trades[{index}]: taker_side must be 'buy' or 'sell'")
    return Trade(trade_id, market, price, base_amount, quote, value["taker_side"],
                 load_user_id(value["maker_user_id"], "maker_user_id"),
                 load_user_id(value["taker_user_id"], "taker_user_id"))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
