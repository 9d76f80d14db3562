"""Typed errors of the wallets service. The ``code`` is part of the public
contract (RPC and, through the gateway, REST): it never changes meaning.

Every message starts with the code (``"INSUFFICIENT_FUNDS: ..."``). Over RPC the
caller receives a ``nameko.exceptions.RemoteError`` whose ``exc_type`` is the
class name below and whose ``value`` is that message.

Any of these raised by an RPC means nothing was written.
"""
from __future__ import annotations

from services.common.errors import CodedError


class WalletsError(CodedError):
    """Base class; ``code`` is stable (services.common.errors.CodedError: its
    text is ``"CODE: message"``; exc_args stay ``(message,)`` on the wire)."""

    code = "WALLETS_ERROR"

    def __init__(self, message: str):
        super().__init__(type(self).code, message)
        self.args = (message,)
        self.detail = message


# ---------------------------------------------------------------- bad input


class InvalidInput(WalletsError):
    """Base of the validation errors: the request itself is wrong."""

    code = "INVALID_INPUT"


class InvalidRequest(InvalidInput):
    """A payload of the wrong shape: missing or unknown fields, wrong types, a bad limit."""

    code = "INVALID_REQUEST"


class InvalidAmount(InvalidInput):
    """Not a positive exact decimal: float, NaN, Infinity, non-numeric, zero,
    negative, or above the ledger's maximum."""

    code = "INVALID_AMOUNT"


class AmountTooPrecise(InvalidInput):
    """More decimals than the asset has (never rounded)."""

    code = "AMOUNT_TOO_PRECISE"


class InvalidId(InvalidInput):
    """A malformed user id, ref, trade id, withdrawal id, txid or cursor."""

    code = "INVALID_ID"


class InvalidAddress(InvalidInput):
    """An address that is not valid for the asset's chain."""

    code = "INVALID_ADDRESS"


class UnknownAsset(InvalidInput):
    code = "UNKNOWN_ASSET"


class UnknownMarket(InvalidInput):
    code = "UNKNOWN_MARKET"


class UnknownFeeTier(InvalidInput):
    code = "UNKNOWN_FEE_TIER"


class UnknownUser(InvalidInput):
    """The user has no accounts: ``open_accounts(user)`` was never called."""

    code = "UNKNOWN_USER"


class UnknownAddress(InvalidInput):
    """No user owns this deposit address."""

    code = "UNKNOWN_ADDRESS"


class IdempotencyConflict(InvalidInput):
    """A key (ref, trade id, txid) reused for a different request."""

    code = "IDEMPOTENCY_CONFLICT"


# ---------------------------------------------------------------- refused by the ledger


class InsufficientFunds(WalletsError):
    """The available balance does not cover the amount."""

    code = "INSUFFICIENT_FUNDS"


class InsufficientLocked(WalletsError):
    """The locked balance does not cover a release or a trade's settlement."""

    code = "INSUFFICIENT_LOCKED"


# ---------------------------------------------------------------- withdrawals


class WithdrawalNotFound(InvalidInput):
    """No such withdrawal (or it belongs to another user)."""

    code = "WITHDRAWAL_NOT_FOUND"


class IllegalWithdrawalTransition(InvalidInput):
    """The withdrawal's state machine does not allow this step from its status."""

    code = "ILLEGAL_WITHDRAWAL_TRANSITION"


class WithdrawalBelowMinimum(InvalidInput):
    code = "WITHDRAWAL_BELOW_MINIMUM"


class WithdrawalLimitExceeded(WalletsError):
    """The rolling 24-hour withdrawal limit of the asset would be exceeded."""

    code = "WITHDRAWAL_LIMIT_EXCEEDED"


ALL_ERRORS = (
    WalletsError, InvalidInput, InvalidRequest, InvalidAmount, AmountTooPrecise, InvalidId,
    InvalidAddress, UnknownAsset, UnknownMarket, UnknownFeeTier, UnknownUser, UnknownAddress,
    IdempotencyConflict, InsufficientFunds, InsufficientLocked, WithdrawalNotFound,
    IllegalWithdrawalTransition, WithdrawalBelowMinimum, WithdrawalLimitExceeded,
)
