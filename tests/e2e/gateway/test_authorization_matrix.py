"""Every private /api/v1 operation, taken from the running gateway's OpenAPI
document, against every way a caller may lack the right to it:

* no credentials; a forged, tampered, foreign or unsigned token; a service
  account's token (not a person);
* another user's order, API key or withdrawal id (with a valid token and key);
* a read-only key on operations whose ``x-permission`` is trade or withdraw;
* a key used from outside its IP allow-list; a revoked key;
* any key on token-only operations (API keys are managed with a token).

Each refusal is checked by status and code, and afterwards nothing moved:
the victim's order and key are unchanged, and the attacker has no new order,
key or withdrawal."""
import base64
import json
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.gateway.native_testkit import (api, create_key, error_code, new_person,
                                              rpc_proxy, service_account_token, signed,
                                              wait_for_order)

MARKET = "BTC-USDT"
PRICE = "25000.00"     # inside the band, below the demo book: rests
ORDER = {"market": MARKET, "side": "buy", "price": PRICE, "quantity": "0.001"}
NOT_ANY_WITHDRAWAL = 9_000_000_000_000_000_000


@pytest.fixture(scope="module")
def document(settings):
    return requests.get(f"{settings.gateway_url}/api/v1/openapi.json", timeout=30).json()


@pytest.fixture(scope="module")
def private_operations(document):
    found = [(method.upper(), path, operation["x-permission"])
             for path, item in document["paths"].items()
             for method, operation in item.items() if operation.get("security")]
    assert len(found) >= 20, found
    return found


@pytest.fixture(scope="module")
def victim(settings):
    person = new_person(settings, funds={"USDT": "100"}, prefix="victim")
    order = api(settings, person, "POST", "/api/v1/orders", json=ORDER).json()
    assert wait_for_order(settings, person, order["order_id"], {"new"})["status"] == "new"
    key = create_key(settings, person, permissions=["read", "trade"])
    return person, order, key


@pytest.fixture(scope="module")
def attacker(settings):
    person = new_person(settings, funds={"USDT": "100"}, prefix="attacker")
    order = api(settings, person, "POST", "/api/v1/orders", json=ORDER).json()
    assert wait_for_order(settings, person, order["order_id"], {"new"})["status"] == "new"
    keys = {
        "trade": create_key(settings, person, permissions=["read", "trade"]),
        "read_only": create_key(settings, person, permissions=["read"]),
        "outside_allow_list": create_key(settings, person, permissions=["read", "trade"],
                                         ip_allowlist=["203.0.113.0/24"]),
        "revoked": create_key(settings, person, permissions=["read", "trade"]),
        "spare": create_key(settings, person, permissions=["read"]),
    }
    assert api(settings, person, "DELETE",
               f"/api/v1/api-keys/{keys['revoked'].api_key}").status_code == 200
    return person, order, keys


def concrete(method: str, path: str, order_id, api_key: str):
    """The path, query and body of a request that only its credentials could refuse."""
    url = (path.replace("{order_id}", str(order_id)).replace("{asset}", "USDT")
           .replace("{withdrawal_id}", str(NOT_ANY_WITHDRAWAL)).replace("{api_key}", api_key))
    query = {"market": MARKET} if (method, path) == ("DELETE", "/api/v1/orders") else {}
    body = {("POST", "/api/v1/orders"): ORDER,
            ("POST", "/api/v1/orders/batch"): {"orders": [ORDER]},
            ("PATCH", "/api/v1/orders/{order_id}"): {"price": "25001.00"},
            ("POST", "/api/v1/withdrawals"): {"asset": "USDT", "address": "0x" + "ab" * 20,
                                              "amount": "10", "ref": "matrix-1"},
            ("POST", "/api/v1/api-keys"): {"label": "matrix", "permissions": ["read"]},
            }.get((method, path))
    return url, query, body


def with_token(settings, token, method, url, query, body):
    return requests.request(method, f"{settings.gateway_url}{url}", params=query, json=body,
                            headers={"Authorization": f"Bearer {token}"}, timeout=30)


# -- tokens that must not pass -------------------------------------------------------

def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged_tokens(settings, real_token: str, victim_id: str) -> dict:
    header = jwt.get_unverified_header(real_token)
    claims = jwt.decode(real_token, options={"verify_signature": False})
    own_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    head, _, signature = real_token.split(".")
    return {
        # the realm's key id and the same claims, signed with another key
        "forged signature": ("TOKEN_SIGNATURE",
                             jwt.encode({**claims, "sub": victim_id}, own_key, "RS256",
                                        headers={"kid": header["kid"]})),
        # the real signature over claims changed to the victim's
        "tampered claims": ("TOKEN_SIGNATURE",
                            f"{head}.{b64({**claims, 'sub': victim_id})}.{signature}"),
        "unsigned (alg none)": ("TOKEN_ALGORITHM",
                                f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."),
        "expired, signed by another key": (
            "TOKEN_SIGNATURE", jwt.encode({**claims, "exp": int(time.time()) - 600}, own_key,
                                          "RS256", headers={"kid": header["kid"]})),
        "unknown key id": ("TOKEN_UNKNOWN_KEY",
                           jwt.encode(claims, own_key, "RS256", headers={"kid": "not-the-realm"})),
        "not a JWT": ("TOKEN_MALFORMED", "not-a-token"),
    }


def test_private_operations_refuse_requests_without_credentials(settings, private_operations,
                                                                 attacker):
    _, order, keys = attacker
    for method, path, _ in private_operations:
        url, query, body = concrete(method, path, order["order_id"], keys["spare"].key_id)
        response = requests.request(method, f"{settings.gateway_url}{url}", params=query,
                                    json=body, timeout=30)
        assert response.status_code == 401, (method, path, response.text)
        assert error_code(response) == "UNAUTHENTICATED"


def test_private_operations_refuse_forged_tampered_and_foreign_tokens(settings, private_operations,
                                                                      attacker, victim):
    person, order, keys = attacker
    tokens = forged_tokens(settings, person.token, victim[0].user_id)
    tokens["service account"] = ("PERSON_REQUIRED", service_account_token(settings))
    for method, path, _ in private_operations:
        url, query, body = concrete(method, path, order["order_id"], keys["spare"].key_id)
        for name, (code, token) in tokens.items():
            response = with_token(settings, token, method, url, query, body)
            expected = 403 if code == "PERSON_REQUIRED" else 401
            assert response.status_code == expected, (name, method, path, response.text)
            assert error_code(response) == code, (name, method, path, response.text)


def test_another_users_order_key_and_withdrawal_are_not_found(settings, attacker, victim):
    person, _, keys = attacker
    victim_person, victim_order, victim_key = victim
    order_path = f"/api/v1/orders/{victim_order['order_id']}"
    attempts = [("GET", order_path, None), ("PATCH", order_path, {"price": "25001.00"}),
                ("DELETE", order_path, None)]
    for method, path, body in attempts:
        by_token = api(settings, person, method, path, json=body)
        by_key = signed(settings, keys["trade"], method, path, body=body)
        for response in (by_token, by_key):
            assert response.status_code in (400, 404), (method, path, response.text)
            assert error_code(response) == "UNKNOWN_ORDER", response.text
    path = f"/api/v1/withdrawals/{NOT_ANY_WITHDRAWAL}"
    for response in (api(settings, person, "GET", path), api(settings, person, "DELETE", path),
                     signed(settings, keys["trade"], "GET", path)):  # (a trade key may not cancel)
        assert response.status_code in (400, 404), response.text
        assert error_code(response) == "WITHDRAWAL_NOT_FOUND", response.text
    for key_ref in (victim_key.api_key, victim_key.key_id):
        refused = api(settings, person, "DELETE", f"/api/v1/api-keys/{key_ref}")
        assert refused.status_code == 404 and error_code(refused) == "APIKEY_NOT_FOUND"

    still = api(settings, victim_person, "GET", order_path).json()
    assert (still["status"], still["price"]) == ("new", "25000")
    listed = api(settings, victim_person, "GET", "/api/v1/api-keys").json()["api_keys"]
    assert {k["key_id"]: k["status"] for k in listed}[victim_key.key_id] == "active"


def test_keys_are_refused_by_permission_allow_list_revocation_and_on_token_only_operations(
        settings, private_operations, attacker):
    person, order, keys = attacker
    for method, path, permission in private_operations:
        url, query, body = concrete(method, path, order["order_id"], keys["spare"].key_id)

        def by(key):
            return signed(settings, key, method, url, params=query, body=body)

        if permission == "token":
            for key in keys.values():
                response = by(key)
                assert response.status_code == 403, (method, path, response.text)
                assert error_code(response) == "TOKEN_REQUIRED"
            continue
        read_only = by(keys["read_only"])
        if permission == "read":  # passes authorization (a made-up withdrawal id: 404)
            assert read_only.status_code in (200, 404), (method, path, read_only.text)
        else:
            assert read_only.status_code in (401, 403), (method, path, read_only.text)
            assert error_code(read_only) == "APIKEY_PERMISSION_DENIED", (method, path)
        for name, code in (("outside_allow_list", "APIKEY_IP_NOT_ALLOWED"),
                           ("revoked", "APIKEY_REVOKED")):
            response = by(keys[name])
            assert response.status_code in (401, 403), (name, method, path, response.text)
            assert error_code(response) == code, (name, method, path, response.text)


def test_nothing_moved_for_the_attacker_either(settings, attacker):
    """Runs last in this module: every refused request above left no trace."""
    person, order, keys = attacker
    orders = api(settings, person, "GET", "/api/v1/orders").json()["orders"]
    assert [(o["order_id"], o["price"], o["status"]) for o in orders] == \
        [(order["order_id"], "25000", "new")]
    assert api(settings, person, "GET", "/api/v1/withdrawals").json()["withdrawals"] == []
    with rpc_proxy(settings) as rpc:
        statuses = sorted(k["status"] for k in rpc.users.list_api_keys(person.token))
    assert statuses == ["active"] * (len(keys) - 1) + ["revoked"]
