"""The operations dashboard (GET /ops on the gateway): admins only, drawn from
Prometheus's and Alertmanager's HTTP APIs with lightweight-charts, checked in
headless Chromium (the trader client's browser set-up) with a screenshot in
run/artifacts/ops-dashboard/."""
import uuid

import pytest
import requests

from gateway.ops import PANELS
from services.common.identity import backend_admin, backend_openid
from tests.e2e.browser import chromium



@pytest.fixture(scope="module")
def admin(settings):
    """An operator of this test only: a realm user with the role admin."""
    username, password = f"obs-admin-{uuid.uuid4().hex[:8]}", f"Ops-{uuid.uuid4().hex}"
    keycloak = backend_admin(settings)
    user_id = keycloak.create_user({
        "username": username, "email": f"{username}@test.invalid", "firstName": "Obs",
        "lastName": "Admin", "enabled": True, "emailVerified": True,
        "credentials": [{"type": "password", "value": password, "temporary": False}]})
    keycloak.assign_realm_roles(user_id, [keycloak.get_realm_role("admin")])
    yield username, password
    keycloak.delete_user(user_id)


def dashboard(settings, token=None, minutes="15"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{settings.gateway_url}/api/v1/ops/dashboard", headers=headers,
                        params={"minutes": minutes}, timeout=30)


def test_the_dashboard_api_is_for_admins_only(settings, admin, stack_rpc):
    assert dashboard(settings).status_code == 401
    username, password = f"obs-{uuid.uuid4().hex[:10]}", f"Obs-{uuid.uuid4().hex}"
    stack_rpc.users.sign_up({"username": username, "email": f"{username}@test.invalid",
                             "password": password, "first_name": "Obs", "last_name": "Trader"})
    trader = backend_openid(settings).token(username, password)["access_token"]
    refused = dashboard(settings, trader)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "FORBIDDEN"

    token = backend_openid(settings).token(*admin)["access_token"]
    # "²" is a digit to str.isdigit() and not to int(): it was a 500.
    for minutes in ("0", "²", "1²", "-5", "abc", ""):
        refused = dashboard(settings, token, minutes=minutes)
        assert refused.status_code == 400, (minutes, refused.text)
    body = dashboard(settings, token).json()
    assert [p["name"] for p in body["panels"]] == [name for name, *_ in PANELS]
    assert body["problems"] == []
    calls = next(p for p in body["panels"] if p["name"] == "calls")
    assert {"orders", "wallets", "matching"} <= {s["label"] for s in calls["series"]}


@pytest.mark.skipif(not chromium.available(), reason="Debian chromium is not installed")
def test_an_admin_sees_the_signals_drawn_in_chromium(settings, admin):
    output = chromium.run_child("tests.integration.observability.ops_dashboard_browser",
                                settings.gateway_url, *admin, str(len(PANELS)), timeout=120)
    assert "ops dashboard drawn" in output
