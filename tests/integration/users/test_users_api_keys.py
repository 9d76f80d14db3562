"""Partner API keys through the service on the real database: the secret is
shown once and stored encrypted, and ``verify_request`` accepts a correctly
signed request and refuses each kind of bad one with its own code (audited)."""
import time
import uuid

import pytest

from services.users.apikeys import sign
from services.users.errors import UsersError
from users_keycloak import PASSWORD, password_grant
from users_testkit import UsersEvents

CLIENT_IP = "203.0.113.10"


@pytest.fixture(scope="module")
def users_rpc(shared_users):
    return shared_users


@pytest.fixture(scope="module")
def owner(module_trader, users_rpc, settings):
    response = password_grant(settings, settings["EXCHANGE_KEYCLOAK_REALM"],
                              settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
                              settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"],
                              module_trader[0], PASSWORD)
    return module_trader[1], response.json()["access_token"]


@pytest.fixture(scope="module")
def trade_key(users_rpc, owner):
    return users_rpc.create_api_key(owner[1], {"label": "market maker",
                                               "permissions": ["trade"]})


def now_ms():
    return int(time.time() * 1000)


def signed(key, *, secret=None, ts=None, recv_window=None, body="symbol=BTC-USDT&side=BUY"):
    ts = now_ms() if ts is None else ts
    payload = body + (f"&recvWindow={recv_window}" if recv_window else "") + f"&timestamp={ts}"
    return dict(api_key=key["api_key"], signature=sign(secret or key["secret"], payload),
                payload=payload, timestamp=ts, recv_window=recv_window, client_ip=CLIENT_IP)


def verify(rpc, request, permission="read"):
    return rpc.verify_request(request["api_key"], request["signature"], request["payload"],
                              request["timestamp"], request["recv_window"],
                              request["client_ip"], permission)


def rejected(rpc, request, permission="read"):
    with pytest.raises(UsersError) as caught:
        verify(rpc, request, permission)
    return caught.value.code


def test_created_key_shows_its_secret_once_and_stores_it_encrypted(
        users_rpc, owner, trade_key, db):
    assert len(trade_key["api_key"]) == 64 and len(trade_key["secret"]) == 64
    assert trade_key["permissions"] == ["read", "trade"]
    listed = [k for k in users_rpc.list_api_keys(owner[1]) if k["key_id"] == trade_key["key_id"]]
    assert listed and listed[0]["status"] == "active" and "secret" not in listed[0]
    # a dump of the table does not contain the secret, in any encoding
    dump = db.execute("SELECT row_to_json(k)::text, encode(secret_ciphertext, 'hex'), "
                      "encode(secret_ciphertext, 'base64') FROM users.api_keys k "
                      "WHERE key_id = %s", (trade_key["key_id"],)).fetchone()
    secret = trade_key["secret"]
    assert all(secret not in text and secret.encode().hex() not in text for text in dump)
    audit = db.execute("SELECT details::text FROM users.audit_log WHERE action = "
                       "'api_key_created' AND details->>'key_id' = %s",
                       (trade_key["key_id"],)).fetchone()
    assert audit and secret not in audit[0]


def test_correctly_signed_request_is_accepted(users_rpc, owner, trade_key):
    result = verify(users_rpc, signed(trade_key), "trade")
    assert result == {"user_id": owner[0], "key_id": trade_key["key_id"],
                      "permissions": ["read", "trade"]}
    assert verify(users_rpc, signed(trade_key, recv_window=60000,
                                    ts=now_ms() - 50000))["user_id"] == owner[0]


def test_each_bad_request_is_refused_with_its_own_code_and_audited(
        users_rpc, owner, trade_key, db):
    first_audit = db.execute("SELECT coalesce(max(id), 0) FROM users.audit_log").fetchone()[0]
    cases = {
        "SIGNATURE_INVALID": (signed(trade_key, secret="x" * 64), "read"),
        "TIMESTAMP_STALE": (signed(trade_key, ts=now_ms() - 6000), "read"),
        "TIMESTAMP_IN_FUTURE": (signed(trade_key, ts=now_ms() + 3000), "read"),
        "RECV_WINDOW_INVALID": (signed(trade_key, recv_window=60001), "read"),
        "APIKEY_PERMISSION_DENIED": (signed(trade_key), "withdraw"),
        "APIKEY_IP_NOT_ALLOWED": (None, "read"),
        "APIKEY_UNKNOWN": ({**signed(trade_key), "api_key": "Z" * 64}, "read"),
    }
    ip_key = users_rpc.create_api_key(owner[1], {"label": "office only",
                                                 "ip_allowlist": ["198.51.100.0/24"]})
    cases["APIKEY_IP_NOT_ALLOWED"] = (signed(ip_key), "read")
    for code, (request, permission) in cases.items():
        assert rejected(users_rpc, request, permission) == code
    assert verify(users_rpc, {**signed(ip_key), "client_ip": "198.51.100.7"})
    audited = db.execute("SELECT details->>'code' FROM users.audit_log WHERE id > %s AND "
                         "action = 'api_request_rejected'", (first_audit,)).fetchall()
    assert set(cases) <= {row[0] for row in audited}


def test_revoked_key_is_refused_and_its_secret_wiped(users_rpc, owner, db, users_events):
    key = users_rpc.create_api_key(owner[1], {"label": "to revoke"})
    request = signed(key)
    assert verify(users_rpc, request)
    revoked = users_rpc.revoke_api_key(owner[1], key["api_key"])
    assert revoked["status"] == "revoked" and revoked["revoked_by"] == f"user:{owner[0]}"
    assert rejected(users_rpc, signed(key)) == "APIKEY_REVOKED"
    assert db.execute("SELECT secret_ciphertext FROM users.api_keys WHERE key_id = %s",
                      (key["key_id"],)).fetchone() == (None,)
    UsersEvents.wait_for("api_key_revoked", key_id=key["key_id"], user_id=owner[0])
    with pytest.raises(UsersError) as caught:
        users_rpc.revoke_api_key(owner[1], key["key_id"])
    assert caught.value.code == "APIKEY_ALREADY_REVOKED"


def test_expired_key_is_refused(users_rpc, owner):
    expires_at = now_ms() + 1500
    key = users_rpc.create_api_key(owner[1], {"label": "short", "expires_at": expires_at})
    assert verify(users_rpc, signed(key))
    time.sleep(max(0.0, (expires_at - now_ms()) / 1000 + 0.1))
    assert rejected(users_rpc, signed(key)) == "APIKEY_EXPIRED"
    assert [k["status"] for k in users_rpc.list_api_keys(owner[1])
            if k["key_id"] == key["key_id"]] == ["expired"]


def test_frozen_owner_keys_may_read_but_not_trade(users_rpc, sign_up, token_for,
                                                   admin_token):
    result, request = sign_up(users_rpc)
    token = token_for(request["username"])
    key = users_rpc.create_api_key(token, {"label": "bot", "permissions": ["trade"]})
    users_rpc.freeze_user(admin_token, result["user_id"], "investigation")
    assert verify(users_rpc, signed(key), "read")["user_id"] == result["user_id"]
    assert rejected(users_rpc, signed(key), "trade") == "USER_FROZEN"
    with pytest.raises(UsersError) as caught:
        users_rpc.create_api_key(token, {"label": "another"})
    assert caught.value.code == "USER_FROZEN"


def test_key_management_rules(users_rpc, owner, sign_up, token_for, admin_token):
    token = owner[1]

    def code(request):
        with pytest.raises(UsersError) as caught:
            users_rpc.create_api_key(token, request)
        return caught.value.code
    assert code({"label": "w", "permissions": ["withdraw"]}) == \
        "APIKEY_WITHDRAW_NEEDS_IP_ALLOWLIST"
    # withdraw also needs a session that passed OTP: a password login has not
    assert code({"label": "w", "permissions": ["withdraw"], "ip_allowlist": ["10.0.0.1"]}) == \
        "STRONG_AUTH_REQUIRED"
    assert code({"label": "x", "permissions": ["admin"]}) == "INVALID_REQUEST"
    assert code({"label": "x", "ip_allowlist": ["999.1.1.1"]}) == "INVALID_REQUEST"
    assert code({"label": "x", "expires_at": now_ms() - 1}) == "INVALID_REQUEST"
    assert code({"label": "x", "secret": "mine"}) == "INVALID_REQUEST"

    key = users_rpc.create_api_key(token, {"label": "mine"})
    other, request = sign_up(users_rpc)
    other_token = token_for(request["username"])
    with pytest.raises(UsersError) as caught:
        users_rpc.revoke_api_key(other_token, key["api_key"])
    assert caught.value.code == "APIKEY_NOT_FOUND"          # not even "exists"
    assert key["key_id"] not in {k["key_id"] for k in users_rpc.list_api_keys(other_token)}
    assert users_rpc.revoke_api_key(admin_token, key["key_id"])["revoked_by"].startswith(
        "admin:")
    with pytest.raises(UsersError) as caught:
        users_rpc.revoke_api_key(token, str(uuid.uuid4()))
    assert caught.value.code == "APIKEY_NOT_FOUND"


def test_changing_a_keys_allow_list_applies_and_is_announced(
        users_rpc, owner, sign_up, token_for, users_events):
    key = users_rpc.create_api_key(owner[1], {"label": "moves", "ip_allowlist": [CLIENT_IP]})
    assert verify(users_rpc, signed(key))
    changed = users_rpc.change_api_key(owner[1], key["api_key"],
                                       {"ip_allowlist": ["198.51.100.0/24"]})
    assert changed["ip_allowlist"] == ["198.51.100.0/24"]
    assert rejected(users_rpc, signed(key)) == "APIKEY_IP_NOT_ALLOWED"
    UsersEvents.wait_for("api_key_changed", key_id=key["key_id"], user_id=owner[0])
    material = users_rpc.verification_material(key["api_key"])
    assert (material["ip_allowlist"], material["secret"], material["revoked"]) == \
        (["198.51.100.0/24"], key["secret"], False)
    # another user's key is "not found"; a withdraw key keeps an allow-list
    other, request = sign_up(users_rpc)
    with pytest.raises(UsersError) as caught:
        users_rpc.change_api_key(token_for(request["username"]), key["key_id"],
                                 {"ip_allowlist": None})
    assert caught.value.code == "APIKEY_NOT_FOUND"
    users_rpc.revoke_api_key(owner[1], key["key_id"])
    assert users_rpc.verification_material(key["api_key"])["secret"] is None
    with pytest.raises(UsersError) as caught:
        users_rpc.change_api_key(owner[1], key["key_id"], {"ip_allowlist": None})
    assert caught.value.code == "APIKEY_ALREADY_REVOKED"
    assert users_rpc.verification_material("Z" * 64) is None
