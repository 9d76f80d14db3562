"""Typed errors of the orders RPC API; ``code`` is part of the public contract
(common base: services.common.errors.CodedError). Registered: a caller that
imports this module gets the typed exception back over RPC, rebuilt from its
``args`` (what its constructor takes)."""
from services.common import errors as common
from services.common.errors import CodedError, registered


@registered
class OrdersError(CodedError):
    code = "ORDERS_ERROR"

    def __init__(self, message: str):
        super().__init__(type(self).code, message)
        self.args = (message,)
        self.detail = message


@registered
class InvalidOrder(OrdersError):
    """The request itself is wrong (missing/extra fields, bad types, off grid...).
    ``field`` names the argument at fault; the text starts with it too
    (``INVALID_ORDER: price: INVALID_NUMBER: ...``) for callers that only see
    the remote error's text."""
    code = "INVALID_ORDER"

    def __init__(self, message: str, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.args = (message, field)
        self.field = field


@registered
class UnknownMarket(OrdersError, common.UnknownMarket):
    """The common ``UnknownMarket`` (catch that one): a subclass only so that
    place_orders' per-order answers, which take every OrdersError, take it."""
    code = common.UnknownMarket.code


@registered
class DuplicateClientOrderId(OrdersError):
    code = "DUPLICATE_CLIENT_ORDER_ID"


@registered
class OrderRejected(OrdersError):
    """Well-formed but refused (insufficient funds, market halted, rule breached).
    Nothing is held for a rejected order. ``reason`` is the refusal's own code;
    the text is ``"ORDER_REJECTED: REASON: detail"``, the reason once even when
    ``message`` already starts with it (a refusal raised in SQL)."""
    code = "ORDER_REJECTED"

    def __init__(self, reason: str, message: str):
        if message.startswith(f"{reason}: "):
            message = message[len(reason) + 2:]
        super().__init__(f"{reason}: {message}")
        self.args = (reason, message)
        self.reason = reason


@registered
class UnknownOrder(OrdersError):
    code = "UNKNOWN_ORDER"


@registered
class OrderNotOpen(OrdersError):
    code = "ORDER_NOT_OPEN"
