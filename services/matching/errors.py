"""Typed errors of the matching service's RPC API (stable codes; the common
base services.common.errors.CodedError). Registered: a caller that imports
this module gets the typed exception back over RPC. An unknown market is the
common ``UnknownMarket``."""
from services.common.errors import CodedError, UnknownMarket, registered

__all__ = ["MatchingServiceError", "InvalidMarket", "UnknownMarket"]


@registered
class MatchingServiceError(CodedError):
    code = "MATCHING_ERROR"

    def __init__(self, message: str):
        super().__init__(type(self).code, message)
        self.args = (message,)


@registered
class InvalidMarket(MatchingServiceError):
    code = "INVALID_MARKET"
