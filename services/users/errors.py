"""Typed errors of the users service. The ``code`` is the public contract.

Every error is a ``services.common.errors.CodedError`` carrying a stable
``code`` (upper snake case, one per reason: see ``CODES``) and a human
message; each class is also the common class of its HTTP status
(``users.Forbidden`` is a ``services.common.errors.Forbidden``). Over Nameko
RPC an error travels as ``exc_args = [code, message, field]``; the classes
are registered, so a caller that imports this module (the gateway, orders,
wallets) gets the same class back instead of a bare ``RemoteError``. Callers
that do not import it still see ``RemoteError.exc_type`` (the class name)
and ``value`` = ``"CODE: message"``.

``http_status`` is a hint for the gateway's one mapping table; the gateway
owns the HTTP contract. The full list of codes with their meaning is
``CODES`` below and in docs/users.md.

This module is pure (standard library and the common errors only), so the
cores can raise these errors.
"""
from __future__ import annotations

from services.common import errors as common
from services.common.errors import CodedError, registered


@registered
class UsersError(CodedError):
    """Base class: ``code`` is stable (an instance's, from ``CODES``),
    ``message`` is for humans."""

    code = "USERS_ERROR"
    http_status = 400

    def __init__(self, code: str, message: str = "", field: str | None = None):
        super().__init__(code, message, field)


@registered
class InvalidRequest(UsersError, common.InvalidInput):
    """The input does not pass validation (the schema or Keycloak's profile rules)."""
    http_status = 400


@registered
class Unauthenticated(UsersError, common.Unauthenticated):
    """No valid access token: the code is the verifier's (TOKEN_*)."""
    http_status = 401


@registered
class Forbidden(UsersError, common.Forbidden):
    """Authenticated, but not allowed: missing role, missing second factor."""
    http_status = 403


@registered
class NotFound(UsersError, common.NotFound):
    http_status = 404


@registered
class Conflict(UsersError, common.Conflict):
    """The request collides with existing state (taken username, wrong account state)."""
    http_status = 409


@registered
class AccountRestricted(UsersError, common.Forbidden):
    """The account's state forbids the action (frozen, closed)."""
    http_status = 403


@registered
class ApiRequestRejected(UsersError, common.Unauthenticated):
    """``verify_request`` refused a signed partner request; one code per reason."""
    http_status = 401


@registered
class Unavailable(UsersError, common.Unavailable):
    """A dependency (Keycloak, wallets) failed; the request may be retried."""
    http_status = 503


# ---------------------------------------------------------------- the codes

CODES: dict[str, tuple[type[UsersError], str]] = {
    # input
    "INVALID_REQUEST": (InvalidRequest, "a field is missing or malformed; message names it"),
    "WEAK_PASSWORD": (InvalidRequest, "the realm's password policy refused the password"),
    # identity
    "USERNAME_TAKEN": (Conflict, "a user (or a sign-up in flight) has this username"),
    "EMAIL_TAKEN": (Conflict, "a user (or a sign-up in flight) has this e-mail"),
    "SIGNUP_IN_PROGRESS": (Conflict, "this signup_id is being processed right now"),
    "SIGNUP_NOT_FOUND": (NotFound, "no sign-up with this id"),
    "SIGNUP_FAILED": (Unavailable, "a step failed; everything done so far was undone"),
    "SIGNUP_INCOMPLETE": (Unavailable, "the last step failed; recovery will complete it"),
    "IDENTITY_UNAVAILABLE": (Unavailable, "Keycloak did not answer as expected"),
    "WALLETS_UNAVAILABLE": (Unavailable, "the wallets service is not running or timed out"),
    "WALLETS_FAILED": (Unavailable, "the wallets service refused to open the accounts"),
    # tokens (the codes of services.common.tokens.InvalidToken)
    "TOKEN_MISSING": (Unauthenticated, "no access token was given"),
    "TOKEN_MALFORMED": (Unauthenticated, "not a JWT"),
    "TOKEN_ALGORITHM": (Unauthenticated, "not RS256 (alg=none, HS256 ... are refused)"),
    "TOKEN_UNKNOWN_KEY": (Unauthenticated, "kid not in the realm's JWKS, even after a refetch"),
    "TOKEN_EXPIRED": (Unauthenticated, "exp is in the past"),
    "TOKEN_NOT_YET_VALID": (Unauthenticated, "nbf is in the future"),
    "TOKEN_AUDIENCE": (Unauthenticated, "aud does not contain the API's audience"),
    "TOKEN_ISSUER": (Unauthenticated, "iss is not the realm"),
    "TOKEN_SIGNATURE": (Unauthenticated, "signature does not verify"),
    "TOKEN_INVALID": (Unauthenticated, "any other token defect"),
    # authorization
    "ROLE_REQUIRED": (Forbidden, "the token lacks the realm role the action needs"),
    "PERSON_REQUIRED": (Forbidden, "a service account's token where a person is expected"),
    "STRONG_AUTH_REQUIRED": (Forbidden, "the session did not pass OTP (no 'otp' in amr)"),
    "STRONG_AUTH_STALE": (Forbidden, "the OTP login is older than the allowed age"),
    "NOT_OWNER": (Forbidden, "the API key belongs to another user"),
    # accounts
    "USER_NOT_FOUND": (NotFound, "no local profile for this user id"),
    "USER_FROZEN": (AccountRestricted, "frozen by an admin: no trading, no withdrawals"),
    "USER_CLOSED": (AccountRestricted, "the account is closed"),
    "ACCOUNT_STATE_CONFLICT": (Conflict, "the transition is not allowed from the current state"),
    # API keys: management
    "APIKEY_NOT_FOUND": (NotFound, "no such API key"),
    "APIKEY_LIMIT_REACHED": (Conflict, "the user already has the maximum number of live keys"),
    "APIKEY_WITHDRAW_NEEDS_IP_ALLOWLIST": (InvalidRequest, "a key with withdraw needs an IP allow-list"),
    "APIKEY_ALREADY_REVOKED": (Conflict, "the key was revoked before"),
    # API keys: verify_request, one code per reason, in the order they are checked
    "RECV_WINDOW_INVALID": (ApiRequestRejected, "recvWindow is not an integer in 1..60000 ms"),
    "REQUEST_MALFORMED": (ApiRequestRejected, "timestamp or signature missing or not well formed"),
    "APIKEY_UNKNOWN": (ApiRequestRejected, "no such API key"),
    "APIKEY_REVOKED": (ApiRequestRejected, "the key was revoked"),
    "APIKEY_EXPIRED": (ApiRequestRejected, "the key's expiry has passed"),
    "APIKEY_IP_NOT_ALLOWED": (ApiRequestRejected, "the client IP is not in the key's allow-list"),
    "TIMESTAMP_IN_FUTURE": (ApiRequestRejected, "timestamp is 1000 ms or more ahead of the server"),
    "TIMESTAMP_STALE": (ApiRequestRejected, "server time - timestamp > recvWindow"),
    "PAYLOAD_MISMATCH": (ApiRequestRejected, "timestamp/recvWindow are not the ones in the signed payload"),
    "SIGNATURE_INVALID": (ApiRequestRejected, "HMAC-SHA256 of the payload does not match"),
    "APIKEY_PERMISSION_DENIED": (Forbidden, "the key lacks the permission the endpoint needs"),
}


def error(code: str, message: str = "") -> UsersError:
    """The error instance for ``code``, of the class the table assigns."""
    cls = CODES[code][0]
    return cls(code, message or CODES[code][1])
