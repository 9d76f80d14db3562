"""Access tokens through the users service, against the real Keycloak: the
web client's login (authorization code + PKCE), local verification, every
kind of bad token, a signing-key rotation picked up without a restart, and
brute-force protection."""
import base64
import json
import time
import uuid

import jwt
from nameko.exceptions import RemoteError
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.users.errors import UsersError
from users_keycloak import PASSWORD, BrowserLogin, b64url, claims_of, password_grant


def code_of(call, *args):
    with pytest.raises(UsersError) as caught:
        call(*args)
    return caught.value.code


@pytest.fixture(scope="module")
def users_rpc(shared_users):
    return shared_users


@pytest.fixture(scope="module")
def trader(module_trader):
    return module_trader


@pytest.fixture(scope="module")
def test_clients(master, settings):
    """Two throw-away confidential clients in realm exchange: one whose access
    tokens live 1 second (with the API audience), one without the audience."""
    realm = settings["EXCHANGE_KEYCLOAK_REALM"]
    audience = {"name": "audience", "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "config": {"included.custom.audience": settings["EXCHANGE_KEYCLOAK_AUDIENCE"],
                           "access.token.claim": "true"}}
    made = {}
    for kind, mappers, attributes in (("short", [audience], {"access.token.lifespan": "1"}),
                                      ("foreign", [], {})):
        client_id = f"users-test-{kind}-{uuid.uuid4().hex[:6]}"
        secret = uuid.uuid4().hex
        response = master.call("POST", f"/{realm}/clients", json={
            "clientId": client_id, "enabled": True, "publicClient": False, "secret": secret,
            "directAccessGrantsEnabled": True, "standardFlowEnabled": False,
            "protocolMappers": mappers, "attributes": attributes})
        made[kind] = (client_id, secret, master.created_id(response))
    yield made
    for _, _, internal_id in made.values():
        master.call("DELETE", f"/{realm}/clients/{internal_id}")


def grant(settings, username, client, base_url=None):
    response = password_grant(settings, settings["EXCHANGE_KEYCLOAK_REALM"], client[0], client[1],
                              username, PASSWORD, base_url=base_url)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


# ---------------------------------------------------------------- good tokens

def test_web_client_login_with_pkce_gives_a_token_the_service_accepts(
        users_rpc, trader, settings):
    browser = BrowserLogin(settings, settings["EXCHANGE_KEYCLOAK_REALM"])
    tokens = browser.tokens(browser.password(browser.start(), trader[0], PASSWORD))
    claims = claims_of(tokens["access_token"])
    assert claims["azp"] == settings["EXCHANGE_KEYCLOAK_WEB_CLIENT_ID"]
    principal = users_rpc.authenticate(tokens["access_token"])
    assert principal["user_id"] == trader[1] and principal["roles"] == sorted(
        claims["realm_access"]["roles"])
    assert "trader" in principal["roles"]


def test_web_client_requires_pkce(settings):
    response = requests.get(
        f"{settings.keycloak_issuer}/protocol/openid-connect/auth",
        params={"client_id": settings["EXCHANGE_KEYCLOAK_WEB_CLIENT_ID"], "response_type": "code",
                "scope": "openid", "state": "s",
                "redirect_uri": f"http://127.0.0.1:{settings['EXCHANGE_FRONTEND_PORT']}/cb"},
        allow_redirects=False, timeout=30)
    assert response.status_code in (302, 303)
    assert "code_challenge_method" in requests.utils.unquote(response.headers["Location"])


def test_bearer_prefix_is_accepted(users_rpc, trader, token_for):
    assert users_rpc.authenticate("Bearer " + token_for(trader[0]))["user_id"] == trader[1]


# ---------------------------------------------------------------- bad tokens

def test_expired_token_is_refused(users_rpc, trader, settings, test_clients):
    token = grant(settings, trader[0], test_clients["short"])
    claims = claims_of(token)
    assert claims["exp"] - claims["iat"] == 1
    time.sleep(max(0.0, claims["exp"] + 1.1 - time.time()))
    assert code_of(users_rpc.authenticate, token) == "TOKEN_EXPIRED"


def test_token_for_another_audience_is_refused(users_rpc, trader, settings, test_clients):
    token = grant(settings, trader[0], test_clients["foreign"])
    assert settings["EXCHANGE_KEYCLOAK_AUDIENCE"] not in (claims_of(token).get("aud") or [])
    assert code_of(users_rpc.authenticate, token) == "TOKEN_AUDIENCE"


def test_token_from_another_issuer_is_refused(users_rpc, trader, settings):
    # The same Keycloak and realm reached as "localhost": genuinely signed by
    # the realm's key, but the issuer is not the one this API trusts.
    base = settings.keycloak_url.replace("127.0.0.1", "localhost")
    backend = (settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
               settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"])
    token = grant(settings, trader[0], backend, base_url=base)
    assert claims_of(token)["iss"] != settings.keycloak_issuer
    assert code_of(users_rpc.authenticate, token) == "TOKEN_ISSUER"


def test_token_of_another_realm_is_refused(users_rpc, step_up_realm, settings, master):
    # a user of the scratch realm: its keys are not in realm exchange's JWKS
    username = f"ut-other-{uuid.uuid4().hex[:8]}"
    master.call("POST", f"/{step_up_realm}/users", json={
        "username": username, "email": f"{username}@example.test", "enabled": True,
        "firstName": "O", "lastName": "R",
        "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}]})
    response = password_grant(settings, step_up_realm,
                              settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
                              settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"],
                              username, PASSWORD)
    assert code_of(users_rpc.authenticate, response.json()["access_token"]) == \
        "TOKEN_UNKNOWN_KEY"


def forge(token: str, header_changes=None, claim_changes=None) -> tuple[dict, dict]:
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    claims = claims_of(token)
    header.update(header_changes or {})
    claims.update(claim_changes or {})
    return header, claims


def test_tampered_claims_are_refused(users_rpc, trader, token_for):
    token = token_for(trader[0])
    header, payload, signature = token.split(".")
    _, claims = forge(token, claim_changes={"realm_access": {"roles": ["trader", "admin"]}})
    tampered = ".".join([header, b64url(json.dumps(claims).encode()), signature])
    assert code_of(users_rpc.authenticate, tampered) == "TOKEN_SIGNATURE"


def test_token_signed_by_another_key_under_the_realms_key_id_is_refused(
        users_rpc, trader, token_for):
    token = token_for(trader[0])
    header, claims = forge(token, claim_changes={"realm_access": {"roles": ["admin"]}})
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, attacker, algorithm="RS256", headers={"kid": header["kid"]})
    assert code_of(users_rpc.authenticate, forged) == "TOKEN_SIGNATURE"
    unknown = jwt.encode(claims, attacker, algorithm="RS256", headers={"kid": "attacker-kid"})
    assert code_of(users_rpc.authenticate, unknown) == "TOKEN_UNKNOWN_KEY"


def test_unsigned_and_hmac_confused_tokens_are_refused(users_rpc, trader, token_for, settings):
    token = token_for(trader[0])
    header, claims = forge(token)
    unsigned = ".".join([b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode()),
                         b64url(json.dumps(claims).encode()), ""])
    assert code_of(users_rpc.authenticate, unsigned) == "TOKEN_ALGORITHM"
    # HS256 keyed with the realm's public key (the classic algorithm confusion)
    jwks = requests.get(f"{settings.keycloak_issuer}/protocol/openid-connect/certs",
                        timeout=30).json()
    public = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"])).key
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    confused = ".".join([b64url(json.dumps({"alg": "HS256", "typ": "JWT",
                                            "kid": header["kid"]}).encode()),
                         b64url(json.dumps(claims).encode())])
    import hashlib
    import hmac
    confused += "." + b64url(hmac.new(pem, confused.encode(), hashlib.sha256).digest())
    assert code_of(users_rpc.authenticate, confused) == "TOKEN_ALGORITHM"


@pytest.mark.parametrize("token,code", [(None, "TOKEN_MISSING"), ("", "TOKEN_MISSING"),
                                        ("not-a-jwt", "TOKEN_MALFORMED")])
def test_missing_or_garbage_tokens_are_refused(users_rpc, token, code):
    assert code_of(users_rpc.authenticate, token) == code


# ---------------------------------------------------------------- key rotation

def test_signing_key_rotation_is_picked_up_without_a_restart(
        users_rpc, trader, token_for, master, settings):
    realm = settings["EXCHANGE_KEYCLOAK_REALM"]
    before = token_for(trader[0])
    assert users_rpc.authenticate(before)["user_id"] == trader[1]   # JWKS now cached
    old_kid = jwt.get_unverified_header(before)["kid"]
    top = max(int(k.get("providerPriority", 0)) for k in master.call("GET", f"/{realm}/keys")[
        "keys"] if k.get("algorithm") == "RS256")
    realm_id = master.call("GET", f"/{realm}")["id"]
    response = master.call("POST", f"/{realm}/components", json={
        "name": f"users-test-rotation-{uuid.uuid4().hex[:6]}", "providerId": "rsa-generated",
        "providerType": "org.keycloak.keys.KeyProvider", "parentId": realm_id,
        "config": {"priority": [str(top + 100)], "keySize": ["2048"], "active": ["true"],
                   "enabled": ["true"], "algorithm": ["RS256"]}})
    component = master.created_id(response)
    try:
        after = token_for(trader[0])
        new_kid = jwt.get_unverified_header(after)["kid"]
        assert new_kid != old_kid
        # The same running service (its verifier cached the old JWKS) accepts it:
        # at once, or -- if another test's unknown key id refetched the JWKS in
        # the last 10 s (refetches are rate-limited) -- once that interval passed.
        deadline = time.monotonic() + 12
        while True:
            try:
                assert users_rpc.authenticate(after)["user_id"] == trader[1]
                break
            except Exception as exc:  # Unauthenticated (deserialised) or RemoteError
                assert "TOKEN_UNKNOWN_KEY" in str(exc) and time.monotonic() < deadline
                time.sleep(0.5)
        assert users_rpc.authenticate(before)["user_id"] == trader[1]
    finally:
        master.call("DELETE", f"/{realm}/components/{component}")


# ---------------------------------------------------------------- brute force

def test_brute_force_protection_locks_the_user_out(users_rpc, sign_up, settings, master):
    realm = settings["EXCHANGE_KEYCLOAK_REALM"]
    result, request = sign_up(users_rpc)
    trader = (request["username"], result["user_id"])

    def attempt(password):
        return password_grant(settings, realm, settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
                              settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"], trader[0],
                              password)
    # The realm locks a user for 60 s after failureFactor (5) failures, or
    # sooner when two come within its quick-login window (1 s). Only the
    # count is independent of how fast a loaded Keycloak answers (CI saw two
    # failures more than 1 s apart and no lock), so fail until locked, at
    # most failureFactor times.
    status = {}
    for n in range(5):
        assert attempt(f"wrong-password-{n}").status_code == 401
        status = master.call("GET", f"/{realm}/attack-detection/brute-force/users/{trader[1]}")
        if status["disabled"]:
            break
    assert status["disabled"] is True and status["numFailures"] >= 2
    assert attempt(PASSWORD).status_code == 401        # even the right password
