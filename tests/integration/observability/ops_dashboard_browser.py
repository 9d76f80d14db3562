"""The browser half of test_ops_dashboard.py, run unpatched in a child process
(chromium.run_child: Playwright's sync API does not run under eventlet):

    python -m tests.integration.observability.ops_dashboard_browser URL USER PASSWORD PANELS

Signs in on Keycloak's page, waits for the panels to be drawn, saves a
screenshot to run/artifacts/ops-dashboard/; exits non-zero on any failure or
console error."""
import sys

from tests.e2e.browser import chromium

WAIT_MS = 30_000


def main(url: str, username: str, password: str, panels: int) -> None:
    shots = chromium.artifacts_dir("ops-dashboard")
    errors = []
    with chromium.browser() as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/ops")
        page.click("#sign-in")
        page.wait_for_selector("#username", timeout=WAIT_MS)  # Keycloak's login page
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("#kc-login")
        # A selector, not wait_for_function: the page's CSP forbids eval.
        page.wait_for_selector("#status >> text=/^updated/", timeout=WAIT_MS)
        assert page.text_content("#who") == username, page.text_content("#who")
        assert page.locator(".panel").count() == panels
        assert page.locator(".panel[data-panel=calls] canvas").count() > 0
        legend = page.text_content(".panel[data-panel=calls] .legend")
        assert "orders" in legend and "wallets" in legend, legend
        page.screenshot(path=str(shots / "ops-dashboard.png"), full_page=True)
    assert errors == [], errors
    assert (shots / "ops-dashboard.png").stat().st_size > 10_000
    print("ops dashboard drawn:", shots / "ops-dashboard.png")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
