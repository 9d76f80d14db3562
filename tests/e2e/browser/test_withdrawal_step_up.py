"""A trader with two-factor turned on requests a withdrawal in the web client
(headless Chromium): refused in words until they confirm with Keycloak's
one-time password (a wrong code is refused in words on Keycloak's page),
then the withdrawal shows as pending. Two-factor is turned on through the
users service (``enable_two_factor``: Keycloak's CONFIGURE_TOTP required
action); the authenticator is set up on Keycloak's own page in the browser
and its codes are computed from the secret that page holds (RFC 6238).
Screenshots: run/artifacts/browser/step_up/. The browser steps are in
step_up_scenario.py (run in a child process: see chromium.py)."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from services.common.config import load_settings
from tests.e2e.browser import chromium
from tests.e2e.push import kit

pytestmark = [pytest.mark.skipif(not chromium.available(), reason="Debian chromium is not installed"),
              pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def settings():
    return load_settings()


def test_withdrawal_needs_the_one_time_password_in_the_browser(settings):
    trader = kit.new_trader(settings, {"ETH": "2"}, prefix="otp")
    with kit.rpc_proxy(settings) as rpc:
        turned_on = rpc.users.enable_two_factor(kit.access_token(settings, trader.username))
    assert turned_on["required_action"] == "CONFIGURE_TOTP"
    chromium.run_child("tests.e2e.browser.step_up_scenario", "withdrawal_step_up",
                       json.dumps({"url": settings.gateway_url, "trader": asdict(trader)}))
