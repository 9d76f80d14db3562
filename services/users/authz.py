"""Authorization decisions on verified token claims (pure core).

Tokens are verified before they get here (services.common.tokens): these
functions only read claims. Roles are the realm roles in
``realm_access.roles`` (``trader``, ``admin``).

Strong authentication (withdrawals, API keys with ``withdraw``): the session
must have passed OTP. Keycloak's AMR protocol mapper writes the reference
values of the authenticators the session completed into the ``amr`` claim
(``["pwd", "otp"]``); the realm gives the OTP step a maximum age, after which
``otp`` drops out of newly issued tokens. This check also bounds the age of
the login itself with ``auth_time`` when ``max_age_s`` is given, so a token
without ``auth_time`` (a password grant) cannot prove freshness.
"""
from __future__ import annotations

from services.users.errors import error

TRADER = "trader"
ADMIN = "admin"
OTP_METHOD = "otp"


def roles_of(claims: dict) -> frozenset[str]:
    return frozenset((claims.get("realm_access") or {}).get("roles") or ())


def require_role(claims: dict, role: str) -> None:
    if role not in roles_of(claims):
        raise error("ROLE_REQUIRED", f"the {role!r} role is required")


def has_strong_auth(claims: dict) -> bool:
    amr = claims.get("amr") or ()
    if isinstance(amr, str):
        amr = (amr,)
    return OTP_METHOD in amr


def require_strong_auth(claims: dict, now_s: int, max_age_s: int | None = None) -> None:
    """Raise unless the token comes from a session that passed OTP.

    STRONG_AUTH_REQUIRED: no ``otp`` in ``amr``.
    STRONG_AUTH_STALE: ``max_age_s`` is set and ``auth_time`` is missing or
    older than ``now_s - max_age_s``: the client must step up (log in again
    with ``prompt=login``/``max_age``).
    """
    if not has_strong_auth(claims):
        raise error("STRONG_AUTH_REQUIRED",
                    "this action needs a session that passed the one-time password")
    if max_age_s is not None:
        auth_time = claims.get("auth_time")
        if not isinstance(auth_time, int) or now_s - auth_time > max_age_s:
            raise error("STRONG_AUTH_STALE",
                        f"log in again with the one-time password (max age {max_age_s} s)")
