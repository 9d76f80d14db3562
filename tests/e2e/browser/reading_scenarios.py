"""Browser scenarios of what a trader reads and fills in (session 26), run
in a child process by test_trader_client_reading.py (see chromium.py): the
orders' statuses in words, the time of each of My trades, the withdrawal
form's own check before sending. Same conventions as trader_scenarios.py
(JSON argument, exit non-zero on the first failure, screenshots in
run/artifacts/browser/trader_client/)."""
from __future__ import annotations

import json
import sys
from decimal import Decimal

from tests.e2e.browser import chromium
from tests.e2e.browser.sweep_scenarios import BAND_FACTOR, submit, wait_error
from tests.e2e.browser.trader_scenarios import PART, QUANTITY, WAIT_MS, signed_in_pair

ABOVE_FACTOR = Decimal("1.1")   # an IOC sell this far above the book: nothing to take

# Every status cell of the open orders and the history, as [order id, text,
# data-status]. The API's words are lowercase with underscores
# ("partially_filled"); a trader's words are not.
STATUS_CELLS = ("() => [...document.querySelectorAll('#open-orders tbody tr, #order-history tbody tr')]"
                ".map(r => [r.cells[0].textContent, r.querySelector('td.status')?.textContent,"
                " r.querySelector('td.status')?.dataset.status])")


def shots():
    return chromium.artifacts_dir("browser/trader_client")


def wait_status(page, table: str, order_id: int, words: str, raw: str) -> None:
    """``table``'s row of ``order_id`` shows ``words`` (its whole status, or
    its start when ``words`` ends with ":") with the API's ``raw`` word in
    data-status."""
    page.wait_for_function(
        "([t, id, w, raw]) => [...document.querySelectorAll(t + ' tbody tr')].some(r => {"
        " const s = r.querySelector('td.status');"
        " return r.cells[0].textContent === String(id) && !!s && s.dataset.status === raw &&"
        " (w.endsWith(':') ? s.textContent.startsWith(w + ' ') : s.textContent === w); })",
        arg=[table, order_id, words, raw], timeout=WAIT_MS)


def no_raw_words(trader) -> None:
    cells = trader.page.evaluate(STATUS_CELLS)
    assert cells, "no status shown"
    raw = [c for c in cells if c[1] is None or c[1] == c[2] or c[1].islower() or "_" in c[1]]
    assert raw == [], f"{trader.name}: statuses in the API's words: {raw}"


def statuses_in_words(args):
    """The open orders and the history showed the API's words ("new",
    "partially_filled", "rejected: ..."). They must read as a person reads
    them, the reason of a refusal or an expiry in words, with the API's word
    kept in the cell's data-status: an open bid ("Open"), partly filled
    ("Partially filled"), being cancelled ("Cancelling", from the click until
    the engine ends it: the cancel's answer is held here), then
    "Cancelled"; the engine's refusal outside the price band ("Refused:
    ..."); the seller's IOC that took ("Filled") and one with nothing to
    take ("Expired: ...")."""
    price = Decimal(args["price"])
    with chromium.browser() as browser:
        buyer, seller = signed_in_pair(browser, args, "words-")
        try:
            page = buyer.page
            bid = buyer.place("buy", args["price"], QUANTITY, post_only=True)
            wait_status(page, "#open-orders", bid, "Open", "new")
            wait_status(page, "#order-history", bid, "Open", "new")
            taker = seller.place("sell", args["price"], PART, tif="IOC")
            wait_status(page, "#open-orders", bid, "Partially filled", "partially_filled")
            wait_status(seller.page, "#order-history", taker, "Filled", "filled")
            above = str((price * ABOVE_FACTOR).quantize(Decimal("0.01")))
            missed = seller.place("sell", above, PART, tif="IOC")
            wait_status(seller.page, "#order-history", missed,
                        "Expired: nothing more could be traded at once", "expired")
            # The engine's refusal of an order orders had accepted.
            far = str((price * BAND_FACTOR).quantize(Decimal("0.01")))
            submit(page, "buy", "limit", "0.0010", far)
            refused = int(wait_error(page).split()[1])
            wait_status(page, "#order-history", refused, "Refused:", "rejected")
            assert "too far" in page.text_content(
                f"xpath=//table[@id='order-history']//tr[td[1]='{refused}']/td[6]")
            # The cancel's answer held: the row says "Cancelling" meanwhile.
            held = []
            page.route("**/api/v1/orders/*", lambda route: held.append(route)
                       if route.request.method == "DELETE" else route.continue_())
            page.click(f"#open-orders tr[data-order='{bid}'] button")
            wait_status(page, "#open-orders", bid, "Cancelling", "cancel_requested")
            buyer.shot("20-statuses-cancelling")
            for _ in range(100):
                if held:
                    break
                page.wait_for_timeout(100)
            assert len(held) == 1, f"{len(held)} cancels sent"
            held[0].continue_()
            page.unroute("**/api/v1/orders/*")
            page.wait_for_selector(f"#open-orders tr[data-order='{bid}']", state="detached",
                                   timeout=WAIT_MS)
            wait_status(page, "#order-history", bid, "Cancelled", "cancelled")
            buyer.shot("21-statuses-in-words")
            seller.shot("21-statuses-in-words")
            for trader in (buyer, seller):
                no_raw_words(trader)
                assert trader.errors == [], f"{trader.name} console: {trader.errors}"
        finally:
            buyer.close()
            seller.close()


SCENARIOS = {"statuses_in_words": statuses_in_words}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]))
    print(f"scenario {sys.argv[1]}: ok")
