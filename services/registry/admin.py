"""Who may change the registry: a person holding the realm role ``admin``.

Tokens are verified locally (services.common.tokens: signature, issuer,
audience, expiry) and then: a client's service-account token is refused
(listing is a person's act, journaled under their name) and so is any
token without ``admin`` (a trader's).
"""
from __future__ import annotations

from nameko.extensions import DependencyProvider

from services.common import grammar
from services.common.config import load_settings
from services.common.principals import ADMIN_ROLE, is_service_account
from services.common.tokens import InvalidToken, Principal, TokenVerifier

from .errors import AdminRequired, ServiceAccountRefused, TokenRefused

MAX_TOKEN = 16384


def admin_principal(verifier: TokenVerifier, token) -> Principal:
    token = grammar.text(token, "token", max_len=MAX_TOKEN)
    try:
        principal = verifier.verify(token)
    except InvalidToken as exc:
        raise TokenRefused(exc.code, str(exc)) from None
    # The rule of services.common.principals.admin_of; the registry keeps
    # its own codes (SERVICE_ACCOUNT_REFUSED, ADMIN_REQUIRED) for its callers.
    if is_service_account(principal.claims):
        raise ServiceAccountRefused(message="a service account cannot change the registry")
    if not principal.has_role(ADMIN_ROLE):
        raise AdminRequired(message="the realm role 'admin' is required")
    return principal


def actor_of(principal: Principal) -> str:
    return f"admin:{principal.username or principal.subject}"


class Admins(DependencyProvider):
    """One TokenVerifier per container (its JWKS cache outlives workers)."""

    def setup(self):
        self.verifier = TokenVerifier.from_settings(load_settings())

    def get_dependency(self, worker_ctx):
        return lambda token: admin_principal(self.verifier, token)
