"""Fresh people, tokens and API keys for the /api/v1 e2e tests.

Everything goes through public interfaces of the running (demo) stack:
users.sign_up over RPC, Keycloak's password grant of the backend client (as
``python -m services.users.cli token`` does), the gateway's own
``/api/v1/api-keys``, and wallets.credit_deposit as the chain watcher would.
Usernames are unique per run; the demo traders are never touched.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import time
import uuid
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from urllib.parse import urlencode

import requests
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.identity import backend_openid

PASSWORD = "e2e-Native-password-local-dev-only-7"
RPC_TIMEOUT = 60
HTTP_TIMEOUT = 30
SIGNUP_ATTEMPTS = 3


@dataclass
class Person:
    username: str
    user_id: str
    token: str

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Key:
    api_key: str
    secret: str
    key_id: str


def rpc_proxy(settings):
    return ClusterRpcProxy(settings.nameko_config(), timeout=RPC_TIMEOUT)


def password_token(settings, username: str) -> str:
    return backend_openid(settings).token(username, PASSWORD)["access_token"]


def service_account_token(settings) -> str:
    """The backend client's own token (client credentials): not a person."""
    return backend_openid(settings).token(grant_type="client_credentials")["access_token"]


def new_person(settings, funds: dict | None = None, prefix: str = "nat") -> Person:
    """A signed-up trader with a fresh access token and the given deposits credited."""
    username = f"{prefix}-{uuid.uuid4().hex[:10]}"
    request = {"username": username, "email": f"{username}@example.test",
               "password": PASSWORD, "first_name": "Native", "last_name": "Tester"}
    with rpc_proxy(settings) as rpc:
        for attempt in range(SIGNUP_ATTEMPTS):
            try:
                signup = rpc.users.sign_up(request)
                break
            except Exception as exc:  # SIGNUP_FAILED says "try again later": a busy stack
                if "SIGNUP_FAILED" not in str(exc) or attempt == SIGNUP_ATTEMPTS - 1:
                    raise
                time.sleep(2)
        for asset, amount in (funds or {}).items():
            credit(rpc, signup["user_id"], asset, amount)
    return Person(username, signup["user_id"], password_token(settings, username))


def credit(rpc, user_id: str, asset: str, amount: str) -> str:
    address = rpc.wallets.deposit_address(user_id, asset)["address"]
    txid = "0x" + secrets.token_hex(32) if asset != "BTC" else secrets.token_hex(32)
    rpc.wallets.credit_deposit(asset, address, amount, txid, 100)
    return txid


def create_key(settings, person: Person, **request) -> Key:
    body = {"label": "e2e native", **request}
    response = requests.post(f"{settings.gateway_url}/api/v1/api-keys", json=body,
                             headers=person.headers, timeout=HTTP_TIMEOUT)
    assert response.status_code == 201, response.text
    created = response.json()
    return Key(created["api_key"], created["secret"], created["key_id"])


def signed(settings, key: Key, method: str, path: str, params: dict | None = None,
           body: dict | None = None, secret: str | None = None) -> requests.Response:
    """A request signed as on /api/v3: ``timestamp`` (and the given params)
    in the query, signature = HMAC-SHA256(secret, query + raw body) last."""
    query = urlencode({**(params or {}), "timestamp": int(time.time() * 1000)})
    raw = "" if body is None else json.dumps(body, separators=(",", ":"))
    signature = hmac.new((secret or key.secret).encode(), (query + raw).encode(),
                         hashlib.sha256).hexdigest()
    headers = {"X-MBX-APIKEY": key.api_key}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return requests.request(method, f"{settings.gateway_url}{path}?{query}&signature={signature}",
                            data=raw or None, headers=headers, timeout=HTTP_TIMEOUT)


def api(settings, person: Person | None, method: str, path: str, **kwargs) -> requests.Response:
    headers = {**(person.headers if person else {}), **kwargs.pop("headers", {})}
    return requests.request(method, f"{settings.gateway_url}{path}", headers=headers,
                            timeout=HTTP_TIMEOUT, **kwargs)


def error_code(response: requests.Response) -> str:
    return response.json()["error"]["code"]


def wait_for_order(settings, person: Person, order_id: int, statuses: set[str] | None = None,
                   until=None, timeout_s: float = 20.0) -> dict:
    """Poll the order until its status is one of ``statuses`` and ``until(order)``
    holds (bounded: returns the last answer after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        order = api(settings, person, "GET", f"/api/v1/orders/{order_id}").json()
        if (statuses is None or order.get("status") in statuses) and (until is None or until(order)):
            return order
        if time.monotonic() > deadline:
            return order
        time.sleep(0.2)


def quiet_price(settings, market: str, tick: Decimal = Decimal("0.01")) -> Decimal:
    """A random price strictly inside the book's spread and near the engine's
    reference price: an order there is crossed only by this test's own
    counter-order (others rest outside it) and stays within the price band
    (``price_inside_spread``)."""
    with rpc_proxy(settings) as rpc:
        book = rpc.matching.get_depth(market, 1)
    return price_inside_spread(book, tick)


def price_inside_spread(book: dict, tick: Decimal, pick=random.randint) -> Decimal:
    """A price on the ``tick`` grid above the best bid and below the best ask
    of ``book`` (``get_depth``'s answer), within 3 % of its reference price;
    ``pick(a, b)`` chooses among the candidates (inclusive). A spread of two
    ticks leaves one price (benches leave the dev stack's ETH-USDT so); one of
    a single tick leaves none: any price would cross someone else's order,
    and making room would cancel theirs, so this fails naming the book."""
    reference = Decimal(book["reference_price"] or "2000")
    low = (reference * Decimal("0.97") / tick).to_integral_value(ROUND_CEILING) * tick
    high = (reference * Decimal("1.03") / tick).to_integral_value(ROUND_FLOOR) * tick
    if book["buy"]:
        low = max(low, Decimal(book["buy"][0][0]) + tick)
    if book["sell"]:
        high = min(high, Decimal(book["sell"][0][0]) - tick)
    assert low <= high, f"no price inside the spread of this book: {book}"
    return (low + tick * pick(0, int((high - low) / tick))).quantize(tick)
