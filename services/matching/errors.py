"""Typed errors of the matching service's RPC API (stable codes; the common
base services.common.errors.CodedError)."""
from services.common.errors import CodedError


class MatchingServiceError(CodedError):
    code = "MATCHING_ERROR"

    def __init__(self, message: str):
        super().__init__(type(self).code, message)
        self.args = (message,)


class UnknownMarket(MatchingServiceError):
    code = "UNKNOWN_MARKET"


class InvalidMarket(MatchingServiceError):
    code = "INVALID_MARKET"


class MarketExists(MatchingServiceError):
    code = "MARKET_EXISTS"
