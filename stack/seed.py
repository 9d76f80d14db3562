"""The demo `make up` seeds: two traders with balances, a small BTC-USDT book,
and an operator with the realm role admin (the assets and markets themselves
are the registry's seed migration).

Idempotent: sign-up ids, deposit txids and client order ids are derived from
the names, so a second run finds everything in place and adds nothing.
The password is a LOCAL-DEV DEFAULT, printed for the developer.
"""
from __future__ import annotations

import hashlib
import uuid

from nameko.exceptions import RemoteError
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.config import Settings

DEMO_PASSWORD = "demo-password-local-dev-only"
NAMESPACE = uuid.UUID("0f6f2f4e-5a52-4f0e-9d0b-6465d6f2a001")
TRADERS = {
    "demo-alice": {"BTC": "10", "USDT": "100000"},
    "demo-bob": {"BTC": "2", "USDT": "500000"},
}
MARKET, REFERENCE = "BTC-USDT", "30000"
BOOK = [  # (trader, side, price, quantity)
    ("demo-alice", "sell", "30010", "0.25"), ("demo-alice", "sell", "30025", "0.5"),
    ("demo-alice", "sell", "30050", "1"), ("demo-bob", "buy", "29990", "0.25"),
    ("demo-bob", "buy", "29975", "0.5"), ("demo-bob", "buy", "29950", "1"),
]


def _txid(username: str, asset: str) -> str:
    digest = hashlib.sha256(f"demo-deposit:{username}:{asset}".encode()).hexdigest()
    return digest if asset == "BTC" else "0x" + digest


DEMO_ADMIN = "demo-admin"


def seed_admin(settings: Settings) -> str:
    """A person with the realm role ``admin`` (registry listings:
    ``services.registry.cli --admin demo-admin``), created in Keycloak
    directly: an operator is not a trader and has no wallets."""
    from services.common.identity import backend_admin
    admin = backend_admin(settings)
    found = admin.get_users({"username": DEMO_ADMIN, "exact": True})
    user_id = found[0]["id"] if found else admin.create_user({
        "username": DEMO_ADMIN, "email": f"{DEMO_ADMIN}@demo.invalid", "firstName": "Demo",
        "lastName": "Admin", "enabled": True, "emailVerified": True,
        "credentials": [{"type": "password", "value": DEMO_PASSWORD, "temporary": False}]},
        exist_ok=True)
    if not any(r["name"] == "admin" for r in admin.get_realm_roles_of_user(user_id)):
        admin.assign_realm_roles(user_id, [admin.get_realm_role("admin")])
    return f"admin {DEMO_ADMIN} (password {DEMO_PASSWORD}, realm role admin)"


def admin_token(settings: Settings) -> str:
    """An access token of the demo admin (password grant of the backend
    client): matching's admin verbs need one (services.common.principals)."""
    import requests
    grant = {"grant_type": "password", "scope": "openid", "username": DEMO_ADMIN,
             "password": DEMO_PASSWORD,
             "client_id": settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
             "client_secret": settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"]}
    response = requests.post(f"{settings.keycloak_issuer}/protocol/openid-connect/token",
                             data=grant, timeout=30)
    response.raise_for_status()
    return response.json()["access_token"]


def seed(settings: Settings) -> list[str]:
    lines = [seed_admin(settings)]
    with ClusterRpcProxy(settings.nameko_config(), timeout=60,
                         context_data={"access_token": admin_token(settings)}) as rpc:
        ids = {}
        for username, balances in TRADERS.items():
            signup = rpc.users.sign_up({
                "username": username, "email": f"{username}@demo.invalid",
                "password": DEMO_PASSWORD, "first_name": "Demo",
                "last_name": username.split("-")[1].title(),
                "signup_id": str(uuid.uuid5(NAMESPACE, username))})
            ids[username] = user = signup["user_id"]
            for asset, amount in balances.items():
                address = rpc.wallets.deposit_address(user, asset)["address"]
                rpc.wallets.credit_deposit(asset, address, amount, _txid(username, asset), 1000)
            lines.append(f"trader {username} (password {DEMO_PASSWORD}, user id {user})")
        depth = rpc.matching.get_depth(MARKET, 1)
        if depth["reference_price"] is None:
            rpc.matching.set_reference_price(MARKET, REFERENCE)
        for n, (username, side, price, quantity) in enumerate(BOOK):
            try:
                rpc.orders.place_order(ids[username], MARKET, side, "limit", quantity=quantity,
                                       price=price, client_order_id=f"demo-book-{n}")
            except RemoteError as exc:
                if exc.exc_type != "DuplicateClientOrderId":
                    raise
        lines.append(f"{MARKET} book seeded around {REFERENCE}")
    return lines
