"""Typed refusals of the registry service (stable codes; see docs/errors.md).

All are ``services.common.errors.CodedError`` subclasses, registered, so a
caller that imports this module gets the typed exception back over RPC.
Input that does not parse arrives as the common ``InvalidInput`` with its
own code (``INVALID_NUMBER``, ``OFF_GRID``, ``UNKNOWN_FIELD``, ...); an
unknown asset or market is the common ``UnknownAsset`` / ``UnknownMarket``.
"""
from __future__ import annotations

from services.common.errors import (CodedError, Conflict, Forbidden, InvalidInput, Unauthenticated,
                                    UnknownAsset, UnknownMarket, registered)


@registered
class TokenRefused(Unauthenticated):
    """The access token does not verify; the code says why (TOKEN_EXPIRED, ...)."""
    code = "UNAUTHENTICATED"


@registered
class AdminRequired(Forbidden):
    """A valid token without the realm role ``admin`` (a trader)."""
    code = "ADMIN_REQUIRED"


@registered
class ServiceAccountRefused(Forbidden):
    """A client's service-account token: listing is a person's act."""
    code = "SERVICE_ACCOUNT_REFUSED"


@registered
class AssetExists(Conflict):
    """The asset is listed with a different definition (the same one is a no-op)."""
    code = "ASSET_EXISTS"


@registered
class MarketExists(Conflict):
    """The market is listed with a different definition (the same one is a no-op)."""
    code = "MARKET_EXISTS"


@registered
class ImmutableField(InvalidInput):
    """A market's symbol, assets, tick and lot never change: resting orders
    and ledgers are counted in them."""
    code = "IMMUTABLE_FIELD"


@registered
class InvalidMarket(InvalidInput):
    """The matching engine would refuse this market's limits."""
    code = "INVALID_MARKET"


@registered
class InvalidStatusChange(InvalidInput):
    """A delisted market stays delisted."""
    code = "INVALID_STATUS_CHANGE"


ERRORS: tuple[type[CodedError], ...] = (
    TokenRefused, AdminRequired, ServiceAccountRefused, AssetExists, MarketExists, UnknownAsset,
    UnknownMarket, ImmutableField, InvalidMarket, InvalidStatusChange)
