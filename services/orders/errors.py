"""Typed errors of the orders RPC API; ``code`` is part of the public contract
(common base: services.common.errors.CodedError)."""
from services.common.errors import CodedError


class OrdersError(CodedError):
    code = "ORDERS_ERROR"

    def __init__(self, message: str):
        super().__init__(type(self).code, message)
        self.args = (message,)
        self.detail = message


class InvalidOrder(OrdersError):
    """The request itself is wrong (missing/extra fields, bad types, off grid...).
    ``field`` names the argument at fault; the text starts with it too
    (``INVALID_ORDER: price: INVALID_NUMBER: ...``) for callers that only see
    the remote error's text."""
    code = "INVALID_ORDER"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class UnknownMarket(OrdersError):
    code = "UNKNOWN_MARKET"


class DuplicateClientOrderId(OrdersError):
    code = "DUPLICATE_CLIENT_ORDER_ID"


class OrderRejected(OrdersError):
    """Well-formed but refused (insufficient funds, market halted, rule breached).
    Nothing is held for a rejected order."""
    code = "ORDER_REJECTED"

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class UnknownOrder(OrdersError):
    code = "UNKNOWN_ORDER"


class OrderNotOpen(OrdersError):
    code = "ORDER_NOT_OPEN"
