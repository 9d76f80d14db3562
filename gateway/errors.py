"""The gateway's one error table: every refusal a client can see.

A refusal is an ``ApiError``: an HTTP status, the native code and message
(``/api/v1``: ``{"error": {"code", "message", "request_id"}}``) and the
Binance code and message (``/api/v3``: ``{"code", "msg"}``; ccxt maps some
messages exactly, see ../shared/BINANCE_SUBSET.md section 4).

Service errors reach the gateway as coded exceptions (``code_of``); ``TABLE``
maps each service code to its HTTP status and Binance code. A code missing
from the table is still a 4xx (the service's ``http_status`` class, else
400) with Binance's generic -1000 text replaced by the service message:
nothing a client sends produces a 500. Only an unexpected failure answers
500, with the request id, and is logged with its traceback.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from services.common.errors import code_of, message_of, reason_of

# Binance messages that ccxt matches exactly (BINANCE_SUBSET.md section 4).
MSG_INSUFFICIENT = "Account has insufficient balance for requested action."
MSG_UNKNOWN_ORDER_CANCEL = "Unknown order sent."
MSG_UNKNOWN_ORDER_QUERY = "Order does not exist."
MSG_WOULD_TAKE = "Order would immediately match and take."
MSG_BAD_SYMBOL = "Invalid symbol."
MSG_BAD_SIGNATURE = "Signature for this request is not valid."
MSG_BAD_KEY = "Invalid API-key, IP, or permissions for action."
MSG_RECV_WINDOW = "Timestamp for this request is outside of the recvWindow."
MSG_TOO_MANY = "Too many requests; current limit is %s. Please use the websocket for live updates to avoid polling the API."
MSG_INTERNAL = "An unknown error occurred while processing the request."
MSG_PRICE_FILTER = "Filter failure: PRICE_FILTER"   # ccxt: InvalidOrder (by the filter name)
MSG_LOT_SIZE = "Filter failure: LOT_SIZE"           # ccxt: InvalidOrder
MSG_NOTIONAL = "Filter failure: NOTIONAL"           # ccxt: BadRequest (-1013)


def raw_refusal(status: str, native_code: str, text: str, binance_code: int = -1100) -> bytes:
    """The raw HTTP answer the server writes itself, before any route runs,
    and the connection closed: Binance's ``{code, msg}`` and the native
    ``error`` in one JSON body, as the API is not known yet."""
    body = raw_refusal_body(native_code, text, binance_code)
    return (b"HTTP/1.0 " + status.encode() + b"\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def raw_refusal_body(native_code: str, text: str, binance_code: int) -> bytes:
    """``raw_refusal``'s JSON body: Binance's ``{code, msg}`` and the native
    ``error`` together."""
    return json.dumps({"code": binance_code, "msg": text[0].upper() + text[1:] + ".",
                       "error": {"code": native_code, "message": text}},
                      separators=(",", ":")).encode()


def too_many_connections_response(per_address: int) -> bytes:
    """The raw HTTP answer to a connection (or a trusted proxy's request)
    over its client address's cap on open connections
    (gateway/connection_limits.py): 429 with Binance's -1003, its code for
    too many requests."""
    return raw_refusal("429 Too Many Requests", "TOO_MANY_CONNECTIONS",
                       f"too many connections from this address: at most {per_address} open "
                       "at once on this gateway; close one before opening another", -1003)


def too_many_connection_attempts_body(attempts: int, window_s: int) -> bytes:
    """The JSON body of the 429 to a Socket.IO connection attempt over its
    address's limit (gateway/connection_limits.py): ``raw_refusal``'s shape."""
    return raw_refusal_body("TOO_MANY_CONNECTION_ATTEMPTS",
                            f"too many live push connection attempts from this address: at "
                            f"most {attempts} per {window_s} s; try again after Retry-After "
                            "seconds", -1003)


def headers_too_large_response(limit: int, total: int) -> bytes:
    """The raw HTTP answer to a header line of ``limit`` bytes or more, or
    headers of ``total`` in all, which eventlet refuses before any route
    runs (with a bare 400): 431 with the same JSON body shape as the 414."""
    return raw_refusal("431 Request Header Fields Too Large", "HEADERS_TOO_LARGE",
                       f"request headers too large: a line at most {limit} bytes, "
                       f"all at most {total}")


def uri_too_long_response(limit: int) -> bytes:
    """The raw HTTP answer to a request line of ``limit`` bytes or more,
    which the WSGI server (eventlet) refuses before any route runs: 414 with
    a JSON ``{code, msg}`` body as every other refusal of the partner API
    (eventlet's own is a bare 414 without a body). Binance documents no code
    for it: -1100, as for a body over the limit (413)."""
    return raw_refusal("414 Request URI Too Long", "URI_TOO_LONG",
                       f"request URI too long: at most {limit} bytes")


def request_timeout_response(phase: str, seconds: float) -> bytes:
    """The raw HTTP answer to a request whose ``phase`` (its headers) did not
    arrive in time (gateway/slow_clients.py): 408. Binance documents no code
    for it: -1000."""
    return raw_refusal("408 Request Timeout", "REQUEST_TIMEOUT",
                       request_timeout_text(phase, seconds), -1000)


def request_timeout_text(phase: str, seconds: float) -> str:
    return f"request timeout: the {phase} must arrive within {seconds:g} s"


@dataclass
class ApiError(Exception):
    """A refusal as the client sees it."""

    status: int
    code: str                     # native, upper snake case
    message: str
    binance_code: int = -1000
    binance_msg: str | None = None  # None: the native message
    field: str | None = None
    headers: dict | None = None

    def native_body(self, request_id: str) -> dict:
        error = {"code": self.code, "message": self.message, "request_id": request_id}
        if self.field:
            error["field"] = self.field
        return {"error": error}

    def binance_body(self) -> dict:
        return {"code": self.binance_code, "msg": self.binance_msg or self.message}


# service code -> (HTTP status, Binance code, Binance message or None for the service's)
TABLE: dict[str, tuple[int, int, str | None]] = {
    # input
    "INVALID_INPUT": (400, -1100, None),
    "INVALID_NUMBER": (400, -1100, None),
    "NOT_POSITIVE": (400, -1100, None),
    "TOO_PRECISE": (400, -1111, None),
    "OUT_OF_RANGE": (400, -1100, None),
    "INVALID_INTEGER": (400, -1100, None),
    "INVALID_TEXT": (400, -1100, None),
    "INVALID_CHOICE": (400, -1100, None),
    "INVALID_ORDER": (400, -1102, None),
    "INVALID_REQUEST": (400, -1102, None),
    "INVALID_AMOUNT": (400, -1100, None),
    "AMOUNT_TOO_PRECISE": (400, -1111, None),
    "INVALID_ID": (400, -1100, None),
    # markets and orders
    "UNKNOWN_MARKET": (400, -1121, MSG_BAD_SYMBOL),
    "UNKNOWN_ORDER": (400, -2013, MSG_UNKNOWN_ORDER_QUERY),
    "ORDER_NOT_OPEN": (400, -2011, MSG_UNKNOWN_ORDER_CANCEL),
    "DUPLICATE_CLIENT_ORDER_ID": (400, -2010, "Duplicate order sent."),
    "INSUFFICIENT_FUNDS": (400, -2010, MSG_INSUFFICIENT),
    "POST_ONLY_WOULD_TAKE": (400, -2010, MSG_WOULD_TAKE),
    # the engine's rule refusals (Reason codes, services/matching/models.py),
    # as Binance names the filter; ccxt maps PRICE_FILTER / LOT_SIZE to InvalidOrder
    "INVALID_PRICE": (400, -1013, MSG_PRICE_FILTER),
    "PRICE_OUT_OF_BAND": (400, -1013, "Filter failure: PERCENT_PRICE_BY_SIDE"),
    "INVALID_QUANTITY": (400, -1013, MSG_LOT_SIZE),
    "QTY_BELOW_MIN": (400, -1013, MSG_LOT_SIZE),
    "QTY_ABOVE_MAX": (400, -1013, MSG_LOT_SIZE),
    "NOTIONAL_BELOW_MIN": (400, -1013, MSG_NOTIONAL),
    "TOO_MANY_OPEN_ORDERS": (400, -1013, "Filter failure: MAX_NUM_ORDERS"),
    "NO_LIQUIDITY": (400, -2010, "Order would not be filled: no liquidity."),
    "MARKET_HALTED": (400, -2010, "Market is closed."),
    "USER_FROZEN": (403, -2010, "This account may not place orders."),
    "USER_CLOSED": (403, -2010, "This account may not place orders."),
    # access
    "UNAUTHENTICATED": (401, -2015, MSG_BAD_KEY),
    "FORBIDDEN": (403, -2015, MSG_BAD_KEY),
    "ROLE_REQUIRED": (403, -2015, MSG_BAD_KEY),
    # signed API-key requests (users.verify_request, services/users/apikeys.py)
    "APIKEY_UNKNOWN": (401, -2015, MSG_BAD_KEY),
    "APIKEY_REVOKED": (401, -2015, MSG_BAD_KEY),
    "APIKEY_EXPIRED": (401, -2015, MSG_BAD_KEY),
    "APIKEY_IP_NOT_ALLOWED": (401, -2015, MSG_BAD_KEY),
    "APIKEY_PERMISSION_DENIED": (401, -2015, MSG_BAD_KEY),
    "SIGNATURE_INVALID": (400, -1022, MSG_BAD_SIGNATURE),
    "PAYLOAD_MISMATCH": (400, -1022, MSG_BAD_SIGNATURE),
    "TIMESTAMP_STALE": (400, -1021, MSG_RECV_WINDOW),
    "TIMESTAMP_IN_FUTURE": (400, -1021, MSG_RECV_WINDOW),
    "RECV_WINDOW_INVALID": (400, -1131, "recvWindow must be less than 60000"),
    "REQUEST_MALFORMED": (400, -1102, None),
    # time and availability
    "REQUEST_EXPIRED": (504, -1007, "Timeout waiting for response from backend server. "
                                    "Send status unknown; execution status unknown."),
    "UNAVAILABLE": (503, -1001, "Internal error; unable to process your request. Please try again."),
    # native API: Keycloak tokens (services/common/tokens.py, users.authenticate)
    "TOKEN_MISSING": (401, -2015, MSG_BAD_KEY),
    "TOKEN_MALFORMED": (401, -2015, MSG_BAD_KEY),
    "TOKEN_ALGORITHM": (401, -2015, MSG_BAD_KEY),
    "TOKEN_UNKNOWN_KEY": (401, -2015, MSG_BAD_KEY),
    "TOKEN_EXPIRED": (401, -2015, MSG_BAD_KEY),
    "TOKEN_NOT_YET_VALID": (401, -2015, MSG_BAD_KEY),
    "TOKEN_AUDIENCE": (401, -2015, MSG_BAD_KEY),
    "TOKEN_ISSUER": (401, -2015, MSG_BAD_KEY),
    "TOKEN_SIGNATURE": (401, -2015, MSG_BAD_KEY),
    "TOKEN_INVALID": (401, -2015, MSG_BAD_KEY),
    "STRONG_AUTH_REQUIRED": (403, -2015, None),
    "STRONG_AUTH_STALE": (403, -2015, None),
    "USER_NOT_FOUND": (404, -2015, None),
    "APIKEY_NOT_FOUND": (404, -2015, None),
    "APIKEY_ALREADY_REVOKED": (409, -1000, None),
    "APIKEY_LIMIT_REACHED": (409, -1000, None),
    "APIKEY_WITHDRAW_NEEDS_IP_ALLOWLIST": (400, -1100, None),
    "ACCOUNT_STATE_CONFLICT": (409, -1000, None),
    # native API: wallets and market data
    "UNKNOWN_ASSET": (400, -1100, None),
    "INVALID_ADDRESS": (400, -1100, None),
    "UNKNOWN_ADDRESS": (400, -1100, None),
    "IDEMPOTENCY_CONFLICT": (409, -1000, None),
    "WITHDRAWAL_NOT_FOUND": (404, -1000, None),
    "ILLEGAL_WITHDRAWAL_TRANSITION": (409, -1000, None),
    "WITHDRAWAL_BELOW_MINIMUM": (400, -1100, None),
    "WITHDRAWAL_LIMIT_EXCEEDED": (400, -1100, None),
    "WITHDRAWALS_DISABLED": (409, -1000, None),
    "DEPOSITS_DISABLED": (409, -1000, None),
    "UNKNOWN_INTERVAL": (400, -1100, None),
    "INVALID_TIMESTAMP": (400, -1100, None),
    "INVALID_TIME_RANGE": (400, -1100, None),
    "INVALID_LIMIT": (400, -1100, None),
    "RANGE_TOO_LARGE": (400, -1100, None),
    "DEPTH_UNAVAILABLE": (503, -1001, None),
}


def from_service_error(exc: BaseException) -> ApiError | None:
    """The client-facing refusal for a coded service error, or None when the
    exception carries no code (an unexpected failure: the caller answers 500)."""
    code = code_of(exc)
    if code is None:
        return None
    # Orders nests the engine's or wallets' reason: ORDER_REJECTED: INSUFFICIENT_FUNDS: ...
    reason = reason_of(exc) if code == "ORDER_REJECTED" else None
    key = reason if reason in TABLE else code
    status, binance_code, binance_msg = TABLE.get(
        key, (getattr(exc, "http_status", 400), -1000, None))
    if not 400 <= status < 600:
        status = 400
    message = message_of(exc)
    return ApiError(status, key if reason in TABLE else (reason or code), message,
                    binance_code, binance_msg, getattr(exc, "field", None))


def internal_error() -> ApiError:
    return ApiError(500, "INTERNAL", "an unexpected error; quote the request id", -1000,
                    MSG_INTERNAL)


def timeout_error() -> ApiError:
    return ApiError(504, "TIMEOUT", "the exchange did not answer in time; the outcome is "
                    "unknown: query the order by its client order id", -1007,
                    TABLE["REQUEST_EXPIRED"][2])
