"""Verify Keycloak access tokens locally against the realm's JWKS.

Signature (RS256 only: ``alg=none`` and HMAC confusion are refused), issuer,
audience, expiry and not-before are all checked. Keys are cached; a token
signed with an unknown key id triggers a refetch of the JWKS (at most one per
10 s), so a Keycloak key rotation is picked up without a restart.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from jwt import PyJWKClient

from services.common.config import Settings


class InvalidToken(Exception):
    """Raised with a stable ``code`` when a token must be refused."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Principal:
    subject: str
    username: str | None
    roles: frozenset[str]
    claims: dict

    def has_role(self, role: str) -> bool:
        return role in self.roles


class _JWKClient(PyJWKClient):
    """PyJWKClient whose refetch on an unknown key id happens at most once per
    ``min_refresh`` seconds: a stream of tokens with made-up key ids must not
    turn into a stream of requests to Keycloak."""

    def __init__(self, url: str, min_refresh: float, **kwargs):
        super().__init__(url, **kwargs)
        self.min_refresh = min_refresh
        self.refreshed_at = float("-inf")

    def get_signing_key(self, kid: str):
        key = self.match_kid(self.get_signing_keys(), kid)
        if key is None and time.monotonic() - self.refreshed_at >= self.min_refresh:
            self.refreshed_at = time.monotonic()
            key = self.match_kid(self.get_signing_keys(refresh=True), kid)
        if key is None:
            raise jwt.PyJWKClientError(f"no signing key matches key id {kid!r}")
        return key


class TokenVerifier:
    ALGORITHMS = ["RS256"]

    def __init__(self, issuer: str, audience: str, jwks_url: str | None = None,
                 leeway: int = 0, min_refresh: float = 10.0, jwks_lifespan: int = 300):
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        # A key removed from the realm stays trusted until the JWKS is next
        # fetched: at most ``jwks_lifespan`` seconds.
        self.jwks = _JWKClient(jwks_url or f"{issuer}/protocol/openid-connect/certs",
                               min_refresh, cache_keys=True, lifespan=jwks_lifespan, timeout=5)

    @classmethod
    def from_settings(cls, settings: Settings) -> "TokenVerifier":
        return cls(settings.keycloak_issuer, settings["EXCHANGE_KEYCLOAK_AUDIENCE"])

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("TOKEN_MALFORMED", str(exc)) from None
        if header.get("alg") not in self.ALGORITHMS:
            raise InvalidToken("TOKEN_ALGORITHM", f"algorithm {header.get('alg')!r} not accepted")
        try:
            key = self.jwks.get_signing_key(header.get("kid", ""))
        except jwt.PyJWKClientError as exc:
            raise InvalidToken("TOKEN_UNKNOWN_KEY", str(exc)) from None
        try:
            claims = jwt.decode(token, key.key, algorithms=self.ALGORITHMS,
                                audience=self.audience, issuer=self.issuer, leeway=self.leeway,
                                options={"require": ["exp", "iat", "iss", "sub"]})
        except jwt.ExpiredSignatureError:
            raise InvalidToken("TOKEN_EXPIRED", "token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("TOKEN_NOT_YET_VALID", "token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("TOKEN_AUDIENCE", "token is not for this API") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("TOKEN_ISSUER", "token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("TOKEN_SIGNATURE", "signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken("TOKEN_INVALID", str(exc)) from None
        roles = frozenset(claims.get("realm_access", {}).get("roles", []))
        return Principal(claims["sub"], claims.get("preferred_username"), roles, claims)
