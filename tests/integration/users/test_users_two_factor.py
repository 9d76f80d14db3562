"""Two-factor authentication on the real Keycloak, in a scratch realm made of
the repo's realm JSON plus realm_step_up_patch.json (the change this service
asks for: an ``amr`` claim). A user enables TOTP through the service and
Keycloak's own pages; withdrawals (and withdraw-capable API keys) need a
session that passed OTP."""
import time

import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from services.users.errors import UsersError
from users_keycloak import PASSWORD, BrowserLogin, claims_of, password_grant
from users_testkit import RPC_TIMEOUT


def code_of(call, *args):
    with pytest.raises(UsersError) as caught:
        call(*args)
    return caught.value.code


def test_user_enables_totp_and_only_otp_sessions_may_withdraw(
        start_users, step_up_realm, sign_up, settings):
    realm = step_up_realm
    config = start_users(KEYCLOAK_REALM=realm)
    with ServiceRpcProxy("users", config, timeout=RPC_TIMEOUT) as users:
        result, request = sign_up(users, realm=realm)
        username, user_id = request["username"], result["user_id"]

        # 1. signed in with the password only
        browser = BrowserLogin(settings, realm)
        plain = browser.tokens(browser.password(browser.start(), username, PASSWORD))
        claims = claims_of(plain["access_token"])
        assert claims["amr"] == ["pwd"]
        assert users.authenticate(plain["access_token"])["strong_auth"] is False
        assert code_of(users.authorize_withdrawal, plain["access_token"]) == \
            "STRONG_AUTH_REQUIRED"
        assert users.get_profile(plain["access_token"])["two_factor_enabled"] is False

        # 2. the user asks for two-factor: Keycloak makes the next login set it up
        assert users.enable_two_factor(plain["access_token"]) == {
            "two_factor_enabled": False, "required_action": "CONFIGURE_TOTP"}
        browser = BrowserLogin(settings, realm)
        page = browser.password(browser.start(), username, PASSWORD)
        device, done = browser.configure_totp(page)
        set_up = browser.tokens(done)
        assert users.get_profile(set_up["access_token"])["two_factor_enabled"] is True
        assert users.enable_two_factor(set_up["access_token"])["two_factor_enabled"] is True

        # 3. from now on Keycloak asks for the code, and the token says so
        browser = BrowserLogin(settings, realm)
        page = browser.password(browser.start(), username, PASSWORD)
        strong = browser.tokens(browser.otp(page, device.code()))
        claims = claims_of(strong["access_token"])
        assert claims["amr"] == ["pwd", "otp"]
        assert abs(claims["auth_time"] - time.time()) < 60
        assert users.authenticate(strong["access_token"])["strong_auth"] is True
        assert users.authorize_withdrawal(strong["access_token"]) == {
            "user_id": user_id, "authorized": True}
        key = users.create_api_key(strong["access_token"], {
            "label": "treasury", "permissions": ["withdraw"], "ip_allowlist": ["203.0.113.0/24"]})
        assert key["permissions"] == ["read", "withdraw"]

        # 4. a password grant needs the code too, but cannot prove freshness
        # (no auth_time): not good enough for withdrawals
        grant = dict(realm=realm, client_id=settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
                     client_secret=settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"],
                     username=username, password=PASSWORD)
        assert password_grant(settings, **grant).status_code == 401
        time.sleep(1.1)   # a second failure within 1 s would trip brute-force protection
        response = password_grant(settings, otp=device.code(), **grant)
        assert response.status_code == 200, response.text
        direct = response.json()["access_token"]
        assert claims_of(direct)["amr"] == ["pwd", "otp"] and "auth_time" not in claims_of(direct)
        assert code_of(users.authorize_withdrawal, direct) == "STRONG_AUTH_STALE"
