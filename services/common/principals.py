"""Who is calling: the principal an admin verb requires.

An admin verb (approving a withdrawal, correcting a balance, ...) is done
for a person with the realm role ``admin``, proven by that person's Keycloak
access token. The caller puts the token in the call's Nameko context data
under ``access_token`` (the gateway from the request's bearer token, an
operator's tool from its login; ``ClusterRpcProxy(config,
context_data={"access_token": token})``), so the verbs keep their
signatures. The token is verified locally (services.common.tokens: RS256
signature against the realm's keys, issuer, audience, expiry).

Refusals (registered coded errors, services.common.errors):
* ``UNAUTHENTICATED`` -- no token, or a token that does not verify (the
  message starts with the verifier's code, e.g. ``TOKEN_EXPIRED``);
* ``PERSON_REQUIRED`` (Forbidden) -- a service account's token (the backend
  client's client-credentials token): a machine is not an admin;
* ``ADMIN_REQUIRED`` (Forbidden) -- a person without the ``admin`` role.

``admin_of`` is the pure decision; ``AdminPrincipal`` the provider.
"""
from __future__ import annotations

from nameko.extensions import DependencyProvider

from services.common.config import load_settings
from services.common.errors import Forbidden, Unauthenticated
from services.common.tokens import InvalidToken, Principal, TokenVerifier

ACCESS_TOKEN_CONTEXT_KEY = "access_token"
ADMIN_ROLE = "admin"
# Keycloak names every service-account user "service-account-<client id>"
# and refuses that prefix for other users.
SERVICE_ACCOUNT_PREFIX = "service-account-"


def is_service_account(claims: dict) -> bool:
    return (str(claims.get("preferred_username") or "").startswith(SERVICE_ACCOUNT_PREFIX)
            or "client_id" in claims or "clientId" in claims)


def admin_of(principal: Principal) -> Principal:
    """``principal`` when it is a person with the admin role; a coded refusal
    otherwise."""
    if is_service_account(principal.claims):
        raise Forbidden("PERSON_REQUIRED", "a service account's token cannot act as an admin")
    if not principal.has_role(ADMIN_ROLE):
        raise Forbidden("ADMIN_REQUIRED", "this action needs the realm role 'admin'")
    return principal


class Caller:
    """The worker's view of who called."""

    def __init__(self, verifier: TokenVerifier, worker_ctx):
        self.verifier = verifier
        self.worker_ctx = worker_ctx

    def principal(self) -> Principal:
        token = self.worker_ctx.data.get(ACCESS_TOKEN_CONTEXT_KEY)
        if not isinstance(token, str) or not token or len(token) > 16_384:
            raise Unauthenticated("UNAUTHENTICATED", "TOKEN_MISSING: this action needs the "
                                  "caller's access token in the call's context data")
        if token[:7].lower() == "bearer ":
            token = token[7:]
        try:
            return self.verifier.verify(token.strip())
        except InvalidToken as exc:
            raise Unauthenticated("UNAUTHENTICATED", f"{exc.code}: {exc}") from None

    def admin(self) -> Principal:
        """The calling admin, or UNAUTHENTICATED / PERSON_REQUIRED / ADMIN_REQUIRED."""
        return admin_of(self.principal())


class AdminPrincipal(DependencyProvider):
    def setup(self):
        self.verifier = TokenVerifier.from_settings(load_settings())

    def get_dependency(self, worker_ctx):
        return Caller(self.verifier, worker_ctx)
