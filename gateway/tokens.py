"""Keycloak access tokens as the gateway's credential for people (the web
client): ``Authorization: Bearer <token>`` on ``/api/v1``, and the Socket.IO
handshake.

A token is verified here, locally, against the realm's JWKS (signature,
issuer, audience, expiry; keys cached by ``services.common.tokens``) so a
forged or expired token never costs an RPC. A service account's token (the
backend client's client-credentials grant) is not a person and is refused
where a person is expected. What the token cannot tell (is the account
closed? does it have a trader profile?) comes from ``users.authenticate``.
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from gateway.errors import ApiError
from services.common.tokens import InvalidToken, TokenVerifier

SERVICE_ACCOUNT_PREFIX = "service-account-"
MAX_TOKEN_CHARS = 8192


@dataclass(frozen=True)
class Person:
    """A verified, signed-in trader."""

    user_id: str
    username: str | None
    roles: tuple[str, ...]
    strong_auth: bool      # the session passed the one-time password
    state: str             # active / frozen (closed accounts never get here)
    token: str             # for the users RPCs that act on the caller's token


def verifier() -> TokenVerifier:
    """One verifier (and JWKS cache) per app."""
    verifier = current_app.extensions.get("token_verifier")
    if verifier is None:
        verifier = TokenVerifier.from_settings(current_app.config["SETTINGS"])
        current_app.extensions["token_verifier"] = verifier
    return verifier


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthenticated("TOKEN_MALFORMED", "send Authorization: Bearer <access token>")
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise unauthenticated("TOKEN_MALFORMED", "the access token is not a JWT")
    return token


def is_service_account(claims: dict) -> bool:
    return str(claims.get("preferred_username") or "").startswith(SERVICE_ACCOUNT_PREFIX) \
        or "client_id" in claims


def authenticate(token: str) -> Person:
    """The person holding ``token``, or an ``ApiError``: 401 for a token that
    does not verify (its code says why: TOKEN_EXPIRED, TOKEN_SIGNATURE, ...),
    403 PERSON_REQUIRED for a service account or a realm user without a
    trader profile, 403 USER_CLOSED for a closed account."""
    try:
        principal = verifier().verify(token)
    except InvalidToken as exc:
        raise unauthenticated(exc.code, str(exc)) from None
    if is_service_account(principal.claims):
        raise person_required("a service account's token cannot act for a person")
    from gateway.app import rpc
    with rpc() as services:
        holder = services.users.authenticate(token)
    if holder["state"] is None:
        raise person_required("this login has no trader profile")
    return Person(holder["user_id"], holder["username"], tuple(holder["roles"]),
                  bool(holder["strong_auth"]), holder["state"], token)


def unauthenticated(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, -2015, headers={"WWW-Authenticate": "Bearer"})


def person_required(message: str) -> ApiError:
    return ApiError(403, "PERSON_REQUIRED", message, -2015)
