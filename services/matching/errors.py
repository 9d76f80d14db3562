"""Typed errors of the matching service's RPC API (stable codes)."""


class MatchingServiceError(Exception):
    code = "MATCHING_ERROR"

    def __init__(self, message: str):
        super().__init__(f"{self.code}: {message}")


class UnknownMarket(MatchingServiceError):
    code = "UNKNOWN_MARKET"


class InvalidMarket(MatchingServiceError):
    code = "INVALID_MARKET"


class MarketExists(MatchingServiceError):
    code = "MARKET_EXISTS"
