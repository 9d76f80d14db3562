"""Withdrawals through /api/v1 with the one-time-password step-up, on the
demo realm's real login pages: a fresh trader turns on TOTP, signs in with
password + code (authorization code + PKCE, as the web client does), and
only that session's token may withdraw; the withdrawal holds amount + fee,
is idempotent by ref, is invisible to other users, and cancelling it
releases the hold."""
from decimal import Decimal

import pytest

from tests.e2e.gateway.native_testkit import (PASSWORD, Key, api, error_code, new_person,
                                              rpc_proxy, signed)
from tests.integration.users.users_keycloak import BrowserLogin, claims_of

ADDRESS = "0x" + "5a" * 20


@pytest.fixture(scope="module")
def otp_session(settings):
    """(the person with a password-only token, the token of an OTP login)."""
    person = new_person(settings, funds={"USDT": "500"}, prefix="otp")
    with rpc_proxy(settings) as rpc:
        assert rpc.users.enable_two_factor(person.token)["required_action"] == "CONFIGURE_TOTP"
    realm = settings["EXCHANGE_KEYCLOAK_REALM"]
    browser = BrowserLogin(settings, realm)
    device, done = browser.configure_totp(browser.password(browser.start(), person.username,
                                                            PASSWORD))
    browser.tokens(done)
    browser = BrowserLogin(settings, realm)
    page = browser.password(browser.start(), person.username, PASSWORD)
    strong = browser.tokens(browser.otp(page, device.code()))["access_token"]
    assert "otp" in claims_of(strong)["amr"]
    return person, strong


def usdt(settings, headers) -> tuple[Decimal, Decimal]:
    found = api(settings, None, "GET", "/api/v1/balances", headers=headers).json()["balances"]
    row = next(b for b in found if b["asset"] == "USDT")
    return Decimal(row["available"]), Decimal(row["locked"])


def test_only_an_otp_login_withdraws_and_a_cancel_releases_the_hold(settings, otp_session):
    person, strong = otp_session
    bearer = {"Authorization": f"Bearer {strong}"}
    request = {"asset": "USDT", "address": ADDRESS, "amount": "100", "ref": "native-w-1"}

    plain = api(settings, person, "POST", "/api/v1/withdrawals", json=request)
    assert plain.status_code == 403 and error_code(plain) == "STRONG_AUTH_REQUIRED"
    assert usdt(settings, bearer) == (Decimal("500"), Decimal("0"))

    me = api(settings, None, "GET", "/api/v1/me", headers=bearer).json()
    assert me["strong_auth"] is True
    created = api(settings, None, "POST", "/api/v1/withdrawals", json=request, headers=bearer)
    assert created.status_code == 201, created.text
    withdrawal = created.json()
    assert (withdrawal["status"], withdrawal["asset"]) == ("pending", "USDT")
    assert Decimal(withdrawal["amount"]) == 100
    held = Decimal(withdrawal["amount"]) + Decimal(withdrawal["fee"] or "0")
    assert usdt(settings, bearer) == (Decimal("500") - held, held)

    again = api(settings, None, "POST", "/api/v1/withdrawals", json=request, headers=bearer)
    assert again.status_code == 201 and again.json()["withdrawal_id"] == withdrawal["withdrawal_id"]
    listed = api(settings, None, "GET", "/api/v1/withdrawals", headers=bearer).json()
    assert [w["withdrawal_id"] for w in listed["withdrawals"]] == [withdrawal["withdrawal_id"]]
    path = f"/api/v1/withdrawals/{withdrawal['withdrawal_id']}"
    assert api(settings, None, "GET", path, headers=bearer).json()["status"] == "pending"

    stranger = new_person(settings, prefix="stranger")
    for method in ("GET", "DELETE"):
        refused = api(settings, stranger, method, path)
        assert refused.status_code == 404 and error_code(refused) == "WITHDRAWAL_NOT_FOUND"

    cancelled = api(settings, None, "DELETE", path, headers=bearer)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert usdt(settings, bearer) == (Decimal("500"), Decimal("0"))


def test_a_withdraw_key_made_in_an_otp_session_withdraws_from_its_allow_list(settings,
                                                                             otp_session):
    person, strong = otp_session
    bearer = {"Authorization": f"Bearer {strong}"}
    made = api(settings, None, "POST", "/api/v1/api-keys", headers=bearer,
               json={"label": "treasury", "permissions": ["withdraw"],
                     "ip_allowlist": ["127.0.0.1/32"]})
    assert made.status_code == 201, made.text
    key = Key(made.json()["api_key"], made.json()["secret"], made.json()["key_id"])
    plain_made = api(settings, person, "POST", "/api/v1/api-keys",
                     json={"label": "no", "permissions": ["withdraw"],
                           "ip_allowlist": ["127.0.0.1/32"]})
    assert plain_made.status_code == 403 and error_code(plain_made) == "STRONG_AUTH_REQUIRED"

    request = {"asset": "USDT", "address": ADDRESS, "amount": "50", "ref": "native-w-2"}
    created = signed(settings, key, "POST", "/api/v1/withdrawals", body=request)
    assert created.status_code == 201, created.text
    path = f"/api/v1/withdrawals/{created.json()['withdrawal_id']}"
    cancelled = signed(settings, key, "DELETE", path)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert usdt(settings, bearer) == (Decimal("500"), Decimal("0"))
