"""The withdrawal step-up in the trader web client, run in a child process by
tests/e2e/browser/test_withdrawal_step_up.py (see chromium.py). The trader
has two-factor turned on (Keycloak's CONFIGURE_TOTP required action): the
first sign-in sets up the authenticator on Keycloak's page; a withdrawal from
that password-only session is refused in words with a button to confirm; the
confirmation is Keycloak's login again, where a wrong one-time password is
refused in words and the right one brings the trader back; the withdrawal
then shows as pending. Screenshots go to run/artifacts/browser/step_up/."""
from __future__ import annotations

import json
import sys
import time
from decimal import Decimal
from types import SimpleNamespace

from tests.e2e.browser import chromium
from tests.e2e.browser.trader_scenarios import WAIT_MS, Trader
from tests.integration.users.users_keycloak import OtpDevice, totp

ASSET = "ETH"
AMOUNT = "0.5"
ADDRESS = "0x52908400098527886e0f7030069857d2e4169ee7"
# The client's words for the refusal (frontend_api/static/app.js WORDS).
STEP_UP_WORDS = "Withdrawals need your one-time password: confirm and try again."
# ... and for a withdrawal the balance does not cover with its fee
# (decimal.js FEE_DOES_NOT_FIT: said before sending, and for wallets' refusal).
NOT_WITH_THE_FEE = "Not enough available balance for this amount plus the withdrawal fee."


def wrong_code(device: OtpDevice) -> str:
    """A code that none of the counters Keycloak accepts now would give."""
    now = int(time.time() // device.period)
    valid = {totp(device.secret, counter=c) for c in range(now - 2, now + 3)}
    return next(code for code in (f"{n:06d}" for n in range(0, 10 ** 6, 7919))
                if code not in valid)


def keycloak_password(page, who) -> None:
    """Keycloak's password form (asked again, it names the user and wants the
    password only)."""
    page.wait_for_selector("#password", timeout=WAIT_MS)
    if page.is_editable("#username") if page.locator("#username").count() else False:
        page.fill("#username", who.username)
    page.fill("#password", who.password)
    page.click("#kc-login")


def request_withdrawal(page, amount: str = AMOUNT) -> None:
    page.select_option("#withdraw-asset", ASSET)
    page.fill("#withdraw-address", ADDRESS)
    page.fill("#withdraw-amount", amount)
    page.click("#withdraw-form button[type=submit]")
    page.wait_for_function(
        "document.querySelector('#withdraw-status').textContent.length > 0 || "
        "document.querySelector('#withdraw-error').textContent.length > 0", timeout=WAIT_MS)


def withdrawal_step_up(args):
    shots = chromium.artifacts_dir("browser/step_up")
    who = SimpleNamespace(**args["trader"])
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], who, "trader", shots)
        page = trader.page
        try:
            # 1. Sign in: Keycloak makes the trader set up the authenticator.
            page.goto(args["url"] + "/")
            page.click("#sign-in")
            keycloak_password(page, who)
            page.wait_for_selector("#kc-totp-settings-form", timeout=WAIT_MS)
            trader.shot("01-keycloak-configure-totp")
            device = OtpDevice(page.get_attribute("input[name=totpSecret]", "value"))
            page.fill("#totp", device.code())
            if page.locator("#userLabel").count():
                page.fill("#userLabel", "test phone")
            page.click("#kc-totp-settings-form [type=submit]")
            # Null-safe (as trader_scenarios): until Keycloak's redirect lands
            # back on the client the page has no #who, and a predicate that
            # throws ends the wait at once (a CI rehearsal failed so).
            page.wait_for_function(f"document.querySelector('#who')?.textContent === "
                                   f"{json.dumps(who.username)}", timeout=WAIT_MS)

            # 2. That session passed no one-time password: refused, in words.
            request_withdrawal(page)
            assert page.text_content("#withdraw-error") == STEP_UP_WORDS, \
                page.text_content("#withdraw-error")
            assert page.text_content("#withdraw-status") == ""
            assert page.is_visible("#step-up")
            trader.shot("02-withdrawal-needs-otp")

            # 3. Confirm: Keycloak's login again, then its one-time password form.
            page.click("#step-up")
            keycloak_password(page, who)
            page.wait_for_selector("#kc-otp-login-form", timeout=WAIT_MS)
            page.fill("#otp", wrong_code(device))
            page.click("#kc-login")
            page.wait_for_selector("#kc-otp-login-form", timeout=WAIT_MS)
            refusal = page.inner_text("body")
            assert "Invalid authenticator code" in refusal, refusal[:500]
            trader.shot("03-keycloak-wrong-otp")
            page.fill("#otp", device.code())
            page.click("#kc-login")
            page.wait_for_function(f"document.querySelector('#who')?.textContent === "
                                   f"{json.dumps(who.username)}", timeout=WAIT_MS)

            # 4. The same request now goes through and shows as pending.
            request_withdrawal(page)
            assert page.text_content("#withdraw-error") == "", page.text_content("#withdraw-error")
            status = page.text_content("#withdraw-status")
            assert status.startswith("Withdrawal ") and \
                status.endswith("requested: waiting for approval."), status
            page.wait_for_function(
                "a => [...document.querySelectorAll('#withdrawals li')].some(li => "
                "li.textContent.includes(a) && li.querySelector('.status')?.dataset.status === "
                "'pending' && li.textContent.endsWith(': Waiting for approval'))",
                arg=ADDRESS, timeout=WAIT_MS)
            # Its amount as the balances show one: ETH's 18 decimals with the
            # zeros past the 8th left out.
            listed = page.evaluate(
                "a => [...document.querySelectorAll('#withdrawals li')]"
                ".find(li => li.textContent.includes(a)).textContent", ADDRESS)
            assert listed.startswith(f"0.50000000 {ASSET} → "), listed
            trader.shot("04-withdrawal-pending")

            # 5. All that is available: wallets holds the fee on top, so it
            # cannot go. The page knows the fee (GET /api/v1/assets) and says
            # so under the amount, in words of the withdrawal and its fee,
            # sending nothing (before, it sent it and wallets refused it).
            trader.wait_balance(ASSET, lambda v: v < 2 - Decimal(AMOUNT))  # the first one's hold
            all_of_it = page.text_content(f"#balances tr[data-asset={ASSET}] td:nth-child(2)")
            page.evaluate("document.querySelector('#withdraw-status').textContent = ''")
            posts = []
            page.on("request", lambda r: r.method == "POST" and "/api/v1/withdrawals" in r.url
                    and posts.append(r.url))
            page.fill("#withdraw-amount", all_of_it)
            page.click("#withdraw-form button[type=submit]")
            page.wait_for_function("w => document.querySelector('#withdraw-amount-error')"
                                   ".textContent.startsWith(w)", arg=NOT_WITH_THE_FEE,
                                   timeout=WAIT_MS)
            page.wait_for_timeout(300)                   # a request would have left by now
            assert posts == [] and page.text_content("#withdraw-status") == "", posts
            trader.shot("05-withdrawal-short-of-the-fee")
            # Chromium logs the deliberate refusal's response itself (step 2);
            # nothing else may reach the console.
            expected = ["Failed to load resource: the server responded with a status of "
                        "403 (FORBIDDEN)"]
            assert trader.errors == expected, f"console errors: {trader.errors}"
        finally:
            trader.close()


if __name__ == "__main__":
    {"withdrawal_step_up": withdrawal_step_up}[sys.argv[1]](json.loads(sys.argv[2]))
    print("ok")
