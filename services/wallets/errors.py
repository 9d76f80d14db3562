"""Typed errors of the wallets service. The ``code`` is part of the public
contract (RPC and, through the gateway, REST): it never changes meaning.

Every class is registered (services.common.errors.registered): over RPC a
caller that imports this module gets the typed exception back, rebuilt from
``args == (message,)``; its text is ``"CODE: message"`` (``"INSUFFICIENT_FUNDS:
..."``). An unknown asset or market is the common ``UnknownAsset`` /
``UnknownMarket``.

Any of these raised by an RPC means nothing was written.
"""
from __future__ import annotations

from services.common.errors import CodedError, UnknownAsset, UnknownMarket, registered


@registered
class WalletsError(CodedError):
    """Base class; ``code`` is stable (services.common.errors.CodedError: its
    text is ``"CODE: message"``; exc_args stay ``(message,)`` on the wire)."""

    code = "WALLETS_ERROR"

    def __init__(self, message: str):
        super().__init__(type(self).code, message)
        self.args = (message,)
        self.detail = message


# ---------------------------------------------------------------- bad input


@registered
class InvalidInput(WalletsError):
    """Base of the validation errors: the request itself is wrong."""

    code = "INVALID_INPUT"


@registered
class InvalidRequest(InvalidInput):
    """A payload of the wrong shape: missing or unknown fields, wrong types, a bad limit."""

    code = "INVALID_REQUEST"


@registered
class InvalidAmount(InvalidInput):
    """Not a positive exact decimal: float, NaN, Infinity, non-numeric, zero,
    negative, or above the ledger's maximum."""

    code = "INVALID_AMOUNT"


@registered
class AmountTooPrecise(InvalidInput):
    """More decimals than the asset has (never rounded)."""

    code = "AMOUNT_TOO_PRECISE"


@registered
class InvalidId(InvalidInput):
    """A malformed user id, ref, trade id, withdrawal id, txid or cursor."""

    code = "INVALID_ID"


@registered
class InvalidAddress(InvalidInput):
    """An address that is not valid for the asset's chain."""

    code = "INVALID_ADDRESS"


@registered
class UnknownFeeTier(InvalidInput):
    code = "UNKNOWN_FEE_TIER"


@registered
class UnknownUser(InvalidInput):
    """The user has no accounts: ``open_accounts(user)`` was never called."""

    code = "UNKNOWN_USER"


@registered
class UnknownAddress(InvalidInput):
    """No user owns this deposit address."""

    code = "UNKNOWN_ADDRESS"


@registered
class IdempotencyConflict(InvalidInput):
    """A key (ref, trade id, txid) reused for a different request."""

    code = "IDEMPOTENCY_CONFLICT"


# ---------------------------------------------------------------- refused by the ledger


@registered
class InsufficientFunds(WalletsError):
    """The available balance does not cover the amount."""

    code = "INSUFFICIENT_FUNDS"


@registered
class InsufficientLocked(WalletsError):
    """The locked balance does not cover a release or a trade's settlement."""

    code = "INSUFFICIENT_LOCKED"


# ---------------------------------------------------------------- withdrawals


@registered
class WithdrawalNotFound(InvalidInput):
    """No such withdrawal (or it belongs to another user)."""

    code = "WITHDRAWAL_NOT_FOUND"


@registered
class IllegalWithdrawalTransition(InvalidInput):
    """The withdrawal's state machine does not allow this step from its status."""

    code = "ILLEGAL_WITHDRAWAL_TRANSITION"


@registered
class WithdrawalBelowMinimum(InvalidInput):
    code = "WITHDRAWAL_BELOW_MINIMUM"


@registered
class WithdrawalsDisabled(WalletsError):
    """The registry has disabled withdrawals of the asset (its catalogue's
    ``withdraw_enabled``)."""

    code = "WITHDRAWALS_DISABLED"


@registered
class DepositsDisabled(WalletsError):
    """The registry has disabled deposits of the asset (its catalogue's
    ``deposit_enabled``): no deposit address is handed out."""

    code = "DEPOSITS_DISABLED"


@registered
class WithdrawalLimitExceeded(WalletsError):
    """The rolling 24-hour withdrawal limit of the asset would be exceeded."""

    code = "WITHDRAWAL_LIMIT_EXCEEDED"


ALL_ERRORS = (
    WalletsError, InvalidInput, InvalidRequest, InvalidAmount, AmountTooPrecise, InvalidId,
    InvalidAddress, UnknownAsset, UnknownMarket, UnknownFeeTier, UnknownUser, UnknownAddress,
    IdempotencyConflict, InsufficientFunds, InsufficientLocked, WithdrawalNotFound,
    IllegalWithdrawalTransition, WithdrawalBelowMinimum, WithdrawalLimitExceeded,
    WithdrawalsDisabled, DepositsDisabled,
)

_BY_CODE = {cls.code: cls for cls in ALL_ERRORS if issubclass(cls, WalletsError)}


def from_refusal(code: str, message: str) -> CodedError:
    """The typed error of a refusal wallets' SQL raised with ``code``
    (services.common.postgres.refusal_of reads it)."""
    if code == UnknownAsset.code:
        return UnknownAsset(message=message)
    return _BY_CODE.get(code, WalletsError)(message)
