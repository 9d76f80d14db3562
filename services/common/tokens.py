"""Verify Keycloak access tokens locally against the realm's JWKS.

Signature (RS256 only: ``alg=none`` and HMAC confusion are refused), issuer,
audience, expiry and not-before are all checked. Keys are cached; a token
signed with an unknown key id triggers one refetch of the JWKS, so a Keycloak
key rotation is picked up without a restart.
"""
from __future__ import annotations

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


class TokenVerifier:
    ALGORITHMS = ["RS256"]

    def __init__(self, issuer: str, audience: str, jwks_url: str | None = None,
                 leeway: int = 0):
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.jwks = PyJWKClient(jwks_url or f"{issuer}/protocol/openid-connect/certs",
                                cache_keys=True, lifespan=3600, timeout=5)

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
