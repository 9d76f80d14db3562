"""Typed errors of the marketdata service. ``code`` is part of the public
contract (RPC and, through the gateway, REST): never rename a code.

Every class is registered with Nameko's ``deserialize_to_instance``, so an RPC
caller that imports this module gets the same exception type back (not a
``RemoteError``); ``HTTP_STATUS`` is the one table the gateway maps from.
An unknown market is the common ``UnknownMarket``.
"""
from __future__ import annotations

from nameko.exceptions import deserialize_to_instance

from services.common.errors import CodedError, UnknownMarket  # noqa: F401 (raised here too)


@deserialize_to_instance
class MarketDataError(CodedError):
    """Base class; ``code`` is stable, the message is for humans. Over RPC its
    exc_args stay ``(message,)``, which registered classes are rebuilt from."""

    code = "MARKETDATA_ERROR"

    def __init__(self, message: str = ""):
        super().__init__(type(self).code, message)
        self.args = (message,)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message}


@deserialize_to_instance
class UnknownInterval(MarketDataError):
    code = "UNKNOWN_INTERVAL"


@deserialize_to_instance
class InvalidTimestamp(MarketDataError):
    """Not an integer of epoch milliseconds in the supported range."""

    code = "INVALID_TIMESTAMP"


@deserialize_to_instance
class InvalidTimeRange(MarketDataError):
    """start after end."""

    code = "INVALID_TIME_RANGE"


@deserialize_to_instance
class InvalidLimit(MarketDataError):
    code = "INVALID_LIMIT"


@deserialize_to_instance
class InvalidArgument(MarketDataError):
    """Any other argument of the wrong type or shape (e.g. a user id)."""

    code = "INVALID_ARGUMENT"


@deserialize_to_instance
class RangeTooLarge(MarketDataError):
    """A maintenance request (rebuild) over more than it may do in one call."""

    code = "RANGE_TOO_LARGE"


@deserialize_to_instance
class InvalidEvent(MarketDataError):
    """An event that does not follow docs/events.md; it is logged and dropped."""

    code = "INVALID_EVENT"


@deserialize_to_instance
class DepthUnavailable(MarketDataError):
    """No trustworthy depth snapshot: this process has not seen the market's
    book from its first command, or saw a gap in ``seq``. Resynchronising from
    the engine's snapshot is issue 5's (see docs/marketdata.md)."""

    code = "DEPTH_UNAVAILABLE"


HTTP_STATUS = {
    UnknownMarket.code: 404,
    UnknownInterval.code: 400,
    InvalidTimestamp.code: 400,
    InvalidTimeRange.code: 400,
    InvalidLimit.code: 400,
    InvalidArgument.code: 400,
    RangeTooLarge.code: 400,
    InvalidEvent.code: 400,
    DepthUnavailable.code: 503,
}
