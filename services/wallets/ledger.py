"""The ledger core: journal entries, what each operation posts, the checks that
decide whether it may. Pure -- no I/O, no clock; the provider reads the
locked accounts, calls in here, and writes what comes back.

Vocabulary
----------
* account -- one per (owner, asset) with two buckets, ``available`` and
  ``locked``. Owners are users, or the system (``system:<kind>``) for the
  per-asset fee revenue, deposits clearing and withdrawals clearing accounts.
* posting -- a signed amount (int, minor units) on one bucket of one account.
* journal entry -- an atomic set of postings that sums to zero per asset,
  with a type, a unique idempotency key and details (what the request was).

Sign conventions of the system accounts (so that, per asset,
``user balances + fee revenue = deposits - withdrawals``):
deposits clearing goes negative by what came in, withdrawals clearing goes
positive by what went out, fee revenue positive by what was charged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple, Optional

from services.wallets.amounts import format_amount, format_price
from services.wallets.assets import ASSETS, MARKETS, Asset, Market, fee_rates
from services.wallets.errors import (
    IdempotencyConflict,
    InsufficientFunds,
    InsufficientLocked,
    WithdrawalBelowMinimum,
    WithdrawalsDisabled,
    WithdrawalLimitExceeded,
)

# ---------------------------------------------------------------- vocabulary

AVAILABLE = "available"
LOCKED = "locked"

USER = "user"
FEE_REVENUE = "fee_revenue"
DEPOSITS_CLEARING = "deposits_clearing"
WITHDRAWALS_CLEARING = "withdrawals_clearing"
SYSTEM_KINDS = (FEE_REVENUE, DEPOSITS_CLEARING, WITHDRAWALS_CLEARING)

DEPOSIT = "deposit"
WITHDRAWAL = "withdrawal"
HOLD = "hold"
RELEASE = "release"
TRADE = "trade"
FEE = "fee"
ADJUSTMENT = "adjustment"
TRANSACTION_TYPES = (DEPOSIT, WITHDRAWAL, HOLD, RELEASE, TRADE, FEE, ADJUSTMENT)

BUY = "buy"
SELL = "sell"


def system_owner(kind: str) -> str:
    return f"system:{kind}"


class LedgerBug(AssertionError):
    """An entry the core itself built does not balance: a programming error."""


class Account(NamedTuple):
    """A snapshot of one account row (balances in minor units)."""

    id: int
    owner: str
    kind: str
    asset: str
    available: int
    locked: int


class Posting(NamedTuple):
    account_id: int
    asset: str
    bucket: str
    amount: int


class JournalEntry(NamedTuple):
    key: str
    type: str
    postings: tuple[Posting, ...]
    details: dict


def journal_entry(key: str, type_: str, postings: Iterable[Posting], details: dict) -> JournalEntry:
    """Merge postings to the same (account, bucket), drop zeros, and check the
    result balances per asset. Raises LedgerBug when it does not."""
    merged: dict[tuple[int, str], Posting] = {}
    for posting in postings:
        place = (posting.account_id, posting.bucket)
        previous = merged.get(place)
        if previous is not None:
            if previous.asset != posting.asset:
                raise LedgerBug(f"{key}: account {posting.account_id} posted in two assets")
            posting = Posting(posting.account_id, posting.asset, posting.bucket,
                              previous.amount + posting.amount)
        merged[place] = posting
    kept, sums = [], {}
    for posting in merged.values():
        if posting.amount:
            kept.append(posting)
            sums[posting.asset] = sums.get(posting.asset, 0) + posting.amount
    result = tuple(kept)
    if len(result) < 2 or any(sums.values()):
        raise LedgerBug(f"{key}: postings {result} do not balance")
    return JournalEntry(key, type_, result, details)


# ---------------------------------------------------------------- balance checks


class WorkingBalances:
    """Balances of locked accounts, moved entry by entry to refuse, before
    anything is written, an entry that would take one below zero."""

    def __init__(self, accounts: Iterable[Account]):
        self.accounts = {a.id: a for a in accounts}
        self.available = {a.id: a.available for a in self.accounts.values()}
        self.locked = {a.id: a.locked for a in self.accounts.values()}

    def apply(self, entry: JournalEntry, context: str) -> None:
        """Apply ``entry`` or raise InsufficientFunds / InsufficientLocked
        (leaving the balances as they were)."""
        available, locked = {}, {}
        for account_id, _, bucket, amount in entry.postings:
            if bucket == AVAILABLE:
                available[account_id] = available.get(account_id, self.available[account_id]) + amount
            else:
                locked[account_id] = locked.get(account_id, self.locked[account_id]) + amount
        for account_id, value in available.items():
            account = self.accounts[account_id]
            if value < 0 and account.kind != DEPOSITS_CLEARING:
                raise InsufficientFunds(self._shortfall(context, account, AVAILABLE, value))
        for account_id, value in locked.items():
            if value < 0:
                raise InsufficientLocked(self._shortfall(context, self.accounts[account_id], LOCKED, value))
        self.available.update(available)
        self.locked.update(locked)

    def _shortfall(self, context: str, account: Account, bucket: str, after: int) -> str:
        asset = ASSETS[account.asset]
        has = self.available[account.id] if bucket == AVAILABLE else self.locked[account.id]
        needs = has - after
        return (f"{context}: {account.owner} has {format_amount(asset, has)} {asset.code} {bucket}, "
                f"needs {format_amount(asset, needs)}")


# ---------------------------------------------------------------- adjust
# (holds and releases: the SQL function wallets.move_funds_batch, movements.py)


def adjustment_entry(account: Account, fee_account: Account, amount: int, ref: str,
                     reason: str) -> JournalEntry:
    """An operator's correction: ``amount`` (signed) to the user's available
    balance, paid from (or returned to) the exchange's fee revenue -- the
    exchange can only give what it has earned."""
    return journal_entry(f"adjustment:{ref}", ADJUSTMENT, (
        Posting(account.id, account.asset, AVAILABLE, amount),
        Posting(fee_account.id, account.asset, AVAILABLE, -amount),
    ), {"user": account.owner, "asset": account.asset,
        "amount": format_amount(ASSETS[account.asset], amount), "ref": ref, "reason": reason})


def movement_result(entry_details: dict, transaction_id: int, created_at: str) -> dict:
    """What hold / release / adjust_balance return, first time and on replay."""
    return {**entry_details, "transaction_id": transaction_id, "created_at": created_at}


def check_replay(key: str, stored: dict, requested: dict, fields: Iterable[str]) -> None:
    """A replayed key must carry the same request; else IdempotencyConflict."""
    for name in fields:
        if stored.get(name) != requested.get(name):
            raise IdempotencyConflict(
                f"{key} was already used with {name}={stored.get(name)!r}, not {requested.get(name)!r}")


MOVEMENT_FIELDS = ("user", "asset", "amount", "ref")


# ---------------------------------------------------------------- deposits


def deposit_entry(account: Account, clearing: Account, amount: int, txid: str,
                  address: str) -> JournalEntry:
    """Credit a confirmed chain deposit (key ``deposit:<asset>:<txid>``)."""
    asset = ASSETS[account.asset]
    return journal_entry(f"deposit:{asset.code}:{txid}", DEPOSIT, (
        Posting(clearing.id, asset.code, AVAILABLE, -amount),
        Posting(account.id, asset.code, AVAILABLE, amount),
    ), {"user": account.owner, "asset": asset.code, "amount": format_amount(asset, amount),
        "txid": txid, "address": address})


DEPOSIT_FIELDS = ("asset", "amount", "txid", "address")


# ---------------------------------------------------------------- trades


class Trade(NamedTuple):
    """One trade to settle, validated (schemas.load_trade).

    ``base_amount`` / ``quote_amount`` are minor units of the market's base /
    quote asset; ``price`` is an exact fraction (numerator, 10**decimals).
    """

    trade_id: str
    market: Market
    price: tuple[int, int]
    base_amount: int
    quote_amount: int
    taker_side: str
    maker_user: str
    taker_user: str

    @property
    def key(self) -> str:
        return trade_key(self.market.symbol, self.trade_id)

    @property
    def buyer(self) -> str:
        return self.taker_user if self.taker_side == BUY else self.maker_user

    @property
    def seller(self) -> str:
        return self.maker_user if self.taker_side == BUY else self.taker_user

    def request_details(self, base: Optional[Asset] = None, quote: Optional[Asset] = None) -> dict:
        """What the trade asks for, as stored in its entry (and compared on a
        replay); ``base`` / ``quote``: the market's assets when the caller
        has them already (a catalogue lookup each otherwise)."""
        base = base or ASSETS[self.market.base]
        quote = quote or ASSETS[self.market.quote]
        return {
            "market": self.market.symbol,
            "trade_id": self.trade_id,
            "price": format_price(*self.price),
            "quantity": format_amount(base, self.base_amount),
            "quote_amount": format_amount(quote, self.quote_amount),
            "taker_side": self.taker_side,
            "maker_user": self.maker_user,
            "taker_user": self.taker_user,
        }


TRADE_FIELDS = ("market", "trade_id", "price", "quantity", "quote_amount", "taker_side",
                "maker_user", "taker_user")


def quote_amount(market: Market, price: tuple[int, int], base_amount: int) -> Optional[int]:
    """``price x quantity`` in quote minor units, or None when that is not a
    whole number of them (the caller refuses; never rounded)."""
    base, quote = ASSETS[market.base], ASSETS[market.quote]
    numerator, denominator = price
    scaled, remainder = divmod(numerator * base_amount * quote.unit, denominator * base.unit)
    return None if remainder else scaled


def trade_key(market: str, trade_id: str) -> str:
    """A trade's journal transaction key (its idempotency key)."""
    return f"trade:{market}:{trade_id}"


def fee_amount(received: int, rate: tuple[int, int]) -> int:
    """A fee on ``received`` minor units, rounded down to a whole minor unit."""
    numerator, denominator = rate
    return received * numerator // denominator


def settle_trade(trade: Trade, accounts: Mapping[tuple[str, str], Account],
                 tiers: Mapping[str, Optional[str]]) -> JournalEntry:
    """The journal entry of one trade, fees included.

    The seller's locked base goes to the buyer's available; the buyer's locked
    quote goes to the seller's available. Each side pays its fee (maker or
    taker rate of its tier) on what it receives, to the fee revenue account of
    that asset -- in the same entry, so a trade and its fees are one atomic,
    idempotent unit. ``accounts`` maps (owner, asset) to the locked accounts;
    every party must be present (the caller checks for unknown users).
    """
    market = trade.market
    base, quote = market.base, market.quote
    base_asset, quote_asset = ASSETS[base], ASSETS[quote]  # once a trade: catalogue lookups
    buyer, seller = trade.buyer, trade.seller
    buyer_is_maker = trade.taker_side == SELL
    buyer_fee = fee_amount(trade.base_amount,
                           fee_rates(market, tiers.get(buyer)).rate(is_maker=buyer_is_maker))
    seller_fee = fee_amount(trade.quote_amount,
                            fee_rates(market, tiers.get(seller)).rate(is_maker=not buyer_is_maker))
    buyer_fee_text = format_amount(base_asset, buyer_fee)
    seller_fee_text = format_amount(quote_asset, seller_fee)
    details = trade.request_details(base_asset, quote_asset)
    if buyer_is_maker:
        details["maker_fee"] = {"asset": base, "amount": buyer_fee_text}
        details["taker_fee"] = {"asset": quote, "amount": seller_fee_text}
    else:
        details["maker_fee"] = {"asset": quote, "amount": seller_fee_text}
        details["taker_fee"] = {"asset": base, "amount": buyer_fee_text}
    fee_owner = system_owner(FEE_REVENUE)
    return journal_entry(trade.key, TRADE, (
        Posting(accounts[(seller, base)].id, base, LOCKED, -trade.base_amount),
        Posting(accounts[(buyer, base)].id, base, AVAILABLE, trade.base_amount - buyer_fee),
        Posting(accounts[(fee_owner, base)].id, base, AVAILABLE, buyer_fee),
        Posting(accounts[(buyer, quote)].id, quote, LOCKED, -trade.quote_amount),
        Posting(accounts[(seller, quote)].id, quote, AVAILABLE, trade.quote_amount - seller_fee),
        Posting(accounts[(fee_owner, quote)].id, quote, AVAILABLE, seller_fee),
    ), details)


def trade_result(details: dict, transaction_id: int) -> dict:
    """One trade's settlement as ``settle_trades`` returns it, first time and on replay."""
    return {"trade_id": details["trade_id"], "market": details["market"],
            "transaction_id": transaction_id,
            "maker_fee": details["maker_fee"], "taker_fee": details["taker_fee"]}


# ---------------------------------------------------------------- withdrawals

PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
CANCELLED = "cancelled"
SENT = "sent"
WITHDRAWAL_STATUSES = (PENDING, APPROVED, REJECTED, CANCELLED, SENT)

APPROVE = "approve"
REJECT = "reject"
CANCEL = "cancel"
MARK_SENT = "mark_sent"

# The status each action asks for. Which steps are legal from which status
# is the database's rule, stated once: the trigger of
# functions/check_withdrawal_transition.sql refuses the others
# (ILLEGAL_WITHDRAWAL_TRANSITION).
ACTION_TARGETS = {APPROVE: APPROVED, REJECT: REJECTED, CANCEL: CANCELLED, MARK_SENT: SENT}


@dataclass(frozen=True)
class Withdrawal:
    """A snapshot of one withdrawal row (amount and fee in minor units)."""

    id: int
    user_id: str
    asset: str
    account_id: int
    address: str
    amount: int
    fee: int
    status: str
    txid: Optional[str]
    created_at: str
    updated_at: str

    def as_dict(self) -> dict:
        asset = ASSETS[self.asset]
        return {"withdrawal_id": self.id, "user": self.user_id, "asset": self.asset,
                "address": self.address, "amount": format_amount(asset, self.amount),
                "fee": format_amount(asset, self.fee), "status": self.status, "txid": self.txid,
                "created_at": self.created_at, "updated_at": self.updated_at}


def check_withdrawal_request(asset: Asset, amount: int, withdrawn_last_24h: int) -> int:
    """The fee to hold on top of ``amount``; raises for an asset whose
    withdrawals the registry disabled, a too-small amount or one that would
    take the user past the asset's rolling 24-hour limit."""
    if not asset.withdraw_enabled:
        raise WithdrawalsDisabled(f"withdrawals of {asset.code} are disabled")
    if amount < asset.min_withdrawal_minor:
        raise WithdrawalBelowMinimum(
            f"{format_amount(asset, amount)} {asset.code} is below the minimum "
            f"{format_amount(asset, asset.min_withdrawal_minor)}")
    if withdrawn_last_24h + amount > asset.daily_withdrawal_limit_minor:
        raise WithdrawalLimitExceeded(
            f"{format_amount(asset, amount)} {asset.code} on top of "
            f"{format_amount(asset, withdrawn_last_24h)} in the last 24 hours exceeds the limit "
            f"{format_amount(asset, asset.daily_withdrawal_limit_minor)}")
    return asset.withdrawal_fee_minor


def withdrawal_hold_entry(withdrawal_id: int, account: Account, amount: int, fee: int) -> JournalEntry:
    total = amount + fee
    return journal_entry(f"withdrawal:{withdrawal_id}:hold", HOLD, (
        Posting(account.id, account.asset, AVAILABLE, -total),
        Posting(account.id, account.asset, LOCKED, total),
    ), {"withdrawal_id": withdrawal_id, "user": account.owner, "asset": account.asset,
        "amount": format_amount(ASSETS[account.asset], total)})


def withdrawal_step(withdrawal: Withdrawal, action: str, txid: Optional[str] = None) -> Optional[str]:
    """The status ``action`` asks for, or None when the withdrawal is already
    there by the same action (a replay: nothing to do). Whether the step is
    legal from the withdrawal's status, the database's state machine decides
    when the status is written."""
    target = ACTION_TARGETS[action]
    if withdrawal.status == target and (action != MARK_SENT or txid == withdrawal.txid):
        return None
    return target


def withdrawal_entries(withdrawal: Withdrawal, target: str,
                       accounts: Mapping[tuple[str, str], Account]) -> list[JournalEntry]:
    """What moving ``withdrawal`` to ``target`` posts: the release of its hold
    (rejected, cancelled) or its payment out plus its fee (sent)."""
    asset = withdrawal.asset
    user = accounts[(withdrawal.user_id, asset)]
    total = withdrawal.amount + withdrawal.fee
    prefix = f"withdrawal:{withdrawal.id}"
    base_details = {"withdrawal_id": withdrawal.id, "user": withdrawal.user_id, "asset": asset}
    if target in (REJECTED, CANCELLED):
        return [journal_entry(f"{prefix}:release", RELEASE, (
            Posting(user.id, asset, LOCKED, -total),
            Posting(user.id, asset, AVAILABLE, total),
        ), {**base_details, "amount": format_amount(ASSETS[asset], total), "status": target})]
    if target == SENT:
        clearing = accounts[(system_owner(WITHDRAWALS_CLEARING), asset)]
        entries = [journal_entry(f"{prefix}:sent", WITHDRAWAL, (
            Posting(user.id, asset, LOCKED, -withdrawal.amount),
            Posting(clearing.id, asset, AVAILABLE, withdrawal.amount),
        ), {**base_details, "amount": format_amount(ASSETS[asset], withdrawal.amount),
            "address": withdrawal.address, "txid": withdrawal.txid})]
        if withdrawal.fee:
            fee_account = accounts[(system_owner(FEE_REVENUE), asset)]
            entries.append(journal_entry(f"{prefix}:fee", FEE, (
                Posting(user.id, asset, LOCKED, -withdrawal.fee),
                Posting(fee_account.id, asset, AVAILABLE, withdrawal.fee),
            ), {**base_details, "amount": format_amount(ASSETS[asset], withdrawal.fee)}))
        return entries
    return []


# ---------------------------------------------------------------- history

# What a user may see of an entry's details (no counterparty ids).
PUBLIC_DETAILS = {
    DEPOSIT: ("txid", "address"),
    WITHDRAWAL: ("withdrawal_id", "address", "txid"),
    HOLD: ("ref", "withdrawal_id"),
    RELEASE: ("ref", "withdrawal_id", "status"),
    TRADE: ("market", "trade_id", "price", "quantity", "quote_amount"),
    FEE: ("withdrawal_id",),
    ADJUSTMENT: ("ref", "reason"),
}


def history_entry(user: str, asset: Asset, transaction_id: int, type_: str, created_at: str,
                  details: dict, available_delta: int, locked_delta: int) -> dict:
    """One line of ``user``'s ledger page for their ``asset`` account. A trade
    line also says the user's side and role, and the fee this account paid
    (its ``available_delta`` is net of it)."""
    shown = {name: details[name] for name in PUBLIC_DETAILS[type_] if name in details}
    if type_ == TRADE:
        taker_buys = details["taker_side"] == BUY
        buyer = details["taker_user"] if taker_buys else details["maker_user"]
        seller = details["maker_user"] if taker_buys else details["taker_user"]
        market = MARKETS[details["market"]]
        base, quote = market.base, market.quote
        shown["side"] = BUY if user == buyer else SELL
        shown["role"] = "taker" if user == details["taker_user"] else "maker"
        paid_here = (asset.code == base and user == buyer) or (asset.code == quote and user == seller)
        fee = format_amount(asset, 0)
        if paid_here:
            for charged in (details["maker_fee"], details["taker_fee"]):
                if charged["asset"] == asset.code:
                    fee = charged["amount"]
        shown["fee"] = fee
    return {"transaction_id": transaction_id, "type": type_, "created_at": created_at,
            "available_delta": format_amount(asset, available_delta),
            "locked_delta": format_amount(asset, locked_delta), "details": shown}
