"""Browser scenarios of the trader web client, run in a child process by
tests/e2e/browser/test_trader_client.py (Playwright cannot run inside the
eventlet-patched pytest process; see chromium.py). Each scenario takes a
JSON argument (gateway URL, traders, price) prepared by the test, asserts,
and exits non-zero on the first failure. Screenshots go to
run/artifacts/browser/trader_client/."""
from __future__ import annotations

import json
import re
import sys
from contextlib import contextmanager
from decimal import Decimal
from types import SimpleNamespace

from tests.e2e.browser import chromium

MARKET = "BTC-USDT"
QUANTITY = "0.0123"
WAIT_MS = 20_000


class Trader:
    def __init__(self, browser, gateway_url: str, who, name: str, shots,
                 timezone_id: str | None = None):
        # The page's CSP forbids eval, which Playwright's waits use. A time
        # zone (like "Asia/Tokyo") for a trader whose clock is not the machine's.
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                           bypass_csp=True, timezone_id=timezone_id)
        self.page = self.context.new_page()
        self.name = name
        self.who = who
        self.shots = shots
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.url = gateway_url

    def shot(self, step: str):
        self.page.screenshot(path=str(self.shots / f"{step}-{self.name}.png"), full_page=True)

    def sign_in(self):
        page = self.page
        # The page reads its sign-in configuration before it can sign in; a
        # click before that did nothing (a CI failure). Hold that read: the
        # button must be disabled meanwhile, then usable once it is answered.
        held = []
        page.route("**/app/config.json", lambda route: held.append(route))
        page.goto(self.url + "/", wait_until="commit")
        for _ in range(200):
            if held:
                break
            page.wait_for_timeout(100)
        assert held, "the page never asked for its sign-in configuration"
        assert page.is_disabled("#sign-in"), "Sign in is clickable before it can work"
        held[0].continue_()
        page.unroute("**/app/config.json")
        page.click("#sign-in")
        page.wait_for_selector("#username", timeout=WAIT_MS)  # Keycloak's login page
        self.shot("01-keycloak-login")
        page.fill("#username", self.who.username)
        page.fill("#password", self.who.password)
        page.click("#kc-login")
        # Null-safe: until Keycloak's redirect lands back on the client, the
        # page has no #who (a predicate that throws ends the wait at once).
        page.wait_for_function("(document.querySelector('#who')?.textContent || '').length > 0",
                               timeout=WAIT_MS)
        assert page.text_content("#who") == self.who.username
        page.wait_for_function("document.querySelector('#connection').textContent === 'live'",
                               timeout=WAIT_MS)
        page.select_option("#market-select", MARKET)
        page.wait_for_selector("#book-seq:not(:empty)", timeout=WAIT_MS)

    def place(self, side: str, price: str, quantity: str, tif: str = "GTC", post_only=False):
        page = self.page
        page.check(f"input[name=side][value={side}]")
        page.select_option("#order-type", "limit")
        page.fill("#order-price", price)
        page.fill("#order-quantity", quantity)
        page.select_option("#order-tif", tif)
        if post_only:
            page.check("#order-post-only")
        else:
            page.uncheck("#order-post-only")
        page.click("#order-submit")
        page.wait_for_function(
            "document.querySelector('#order-status').textContent.startsWith('Order ') || "
            "document.querySelector('#order-error').textContent.length > 0", timeout=WAIT_MS)
        assert page.text_content("#order-error") == "", page.text_content("#order-error")
        return int(re.search(r"Order (\d+)", page.text_content("#order-status")).group(1))

    def balance(self, asset: str) -> Decimal:
        text = self.page.text_content(f"#balances tr[data-asset={asset}] td:nth-child(2)")
        return Decimal(text)

    def wait_balance(self, asset: str, predicate):
        self.page.wait_for_selector(f"#balances tr[data-asset={asset}]", timeout=WAIT_MS)
        for _ in range(80):
            if predicate(self.balance(asset)):
                return
            self.page.wait_for_timeout(250)
        raise AssertionError(f"{self.name}: {asset} balance stayed {self.balance(asset)}")

    def wait_settled_fee(self, asset: str, received: str) -> str:
        """My trades' fee in ``asset`` as the ledger charged it (shown without
        "(pending)" once settled): what the ``received`` quantity lacks of the
        balance shown."""
        fee = self.page.wait_for_function(
            "a => [...document.querySelectorAll('#fills tbody tr')].map(tr => "
            "tr.children[5].textContent).find(t => t.endsWith(' ' + a))",
            arg=asset, timeout=WAIT_MS).json_value()
        assert Decimal(fee.split()[0]) == Decimal(received) - self.balance(asset) > 0, fee
        return fee

    def book_has(self, side: str, price: str):
        table = "#book-bids" if side == "buy" else "#book-asks"
        self.page.wait_for_function(
            "([t, p]) => [...document.querySelectorAll(t + ' tbody tr td:first-child')]"
            ".some(td => td.textContent === p)", arg=[table, price], timeout=WAIT_MS)

    def book_lacks(self, side: str, price: str):
        table = "#book-bids" if side == "buy" else "#book-asks"
        self.page.wait_for_function(
            "([t, p]) => ![...document.querySelectorAll(t + ' tbody tr td:first-child')]"
            ".some(td => td.textContent === p)", arg=[table, price], timeout=WAIT_MS)

    def tape_has(self, price: str, quantity: str):
        self.page.wait_for_function(
            "([p, q]) => [...document.querySelectorAll('#trades tbody tr')].some(tr => "
            "tr.children[0].textContent === p && tr.children[1].textContent === q)",
            arg=[price, quantity], timeout=WAIT_MS)

    def chart_covers(self, price: str):
        self.page.wait_for_function(
            "p => { const t = document.querySelector('#last-candle').textContent;"
            " const m = /high (\\S+) low (\\S+)/.exec(t); return m && Number(m[2]) <= Number(p)"
            " && Number(p) <= Number(m[1]); }", arg=price, timeout=WAIT_MS)
        assert self.page.locator("#chart canvas").count() > 0

    def close(self):
        self.context.close()


def signed_in_pair(browser, args, prefix: str = "",
                   timezone_id: str | None = None) -> tuple[Trader, Trader]:
    """The buyer (5000 USDT) and the seller (1 BTC) of ``args``, each in a
    browser context of their own, signed in, their balances shown; the
    buyer's clock in ``timezone_id`` when given."""
    shots = chromium.artifacts_dir("browser/trader_client")
    buyer = Trader(browser, args["url"], SimpleNamespace(**args["buyer"]), f"{prefix}buyer", shots,
                   timezone_id)
    seller = Trader(browser, args["url"], SimpleNamespace(**args["seller"]), f"{prefix}seller",
                    shots)
    try:
        buyer.sign_in()
        seller.sign_in()
        buyer.wait_balance("USDT", lambda v: v == Decimal("5000"))
        seller.wait_balance("BTC", lambda v: v == Decimal("1"))
    except BaseException:
        buyer.close()
        seller.close()
        raise
    return buyer, seller


def two_traders_trade(args):
    price = args["price"]
    with chromium.browser() as browser:
        buyer, seller = signed_in_pair(browser, args)
        try:
            buyer.shot("02-signed-in")
            seller.shot("02-signed-in")

            order_id = buyer.place("buy", price, QUANTITY, post_only=True)
            buyer.page.wait_for_selector(f"#open-orders tr[data-order='{order_id}']",
                                         timeout=WAIT_MS)
            buyer.book_has("buy", price)
            seller.book_has("buy", price)
            buyer.wait_balance("USDT", lambda v: v < Decimal("5000"))  # held for the bid
            buyer.shot("03-bid-resting")
            seller.shot("03-bid-in-book")

            seller.place("sell", price, QUANTITY, tif="IOC")
            for trader in (buyer, seller):
                trader.tape_has(price, QUANTITY)
                trader.chart_covers(price)
                trader.book_lacks("buy", price)
            # Less the trading fee, charged in what is received.
            buyer.wait_balance("BTC", lambda v: 0 < v <= Decimal(QUANTITY))
            seller.wait_balance("BTC", lambda v: v == Decimal("1") - Decimal(QUANTITY))
            seller.wait_balance("USDT", lambda v: v > 0)
            buyer.page.wait_for_selector(f"#open-orders tr[data-order='{order_id}']",
                                         state="detached", timeout=WAIT_MS)
            buyer.wait_settled_fee("BTC", QUANTITY)
            buyer.shot("04-traded")
            seller.shot("04-traded")

            for trader in (buyer, seller):
                assert trader.errors == [], f"{trader.name} console: {trader.errors}"
        finally:
            buyer.close()
            seller.close()


def refusals_and_phone(args):
    shots = chromium.artifacts_dir("browser/trader_client")
    account, url = SimpleNamespace(**args["trader"]), args["url"]
    with chromium.browser() as browser:
        trader = Trader(browser, url, account, "rules", shots)
        try:
            trader.sign_in()
            page = trader.page
            page.fill("#order-price", "30000.001")
            page.fill("#order-quantity", "0.01")
            page.click("#order-submit")
            assert "tick size" in page.text_content("#order-error")
            page.fill("#order-price", "30000")
            page.fill("#order-quantity", "0.00001")
            page.click("#order-submit")
            assert "lot size" in page.text_content("#order-error")
            page.fill("#order-price", "1")
            page.fill("#order-quantity", "0.0001")
            page.click("#order-submit")
            assert "at least" in page.text_content("#order-error")
            # The server's refusal in words: more than the balance.
            page.fill("#order-price", "30000")
            page.fill("#order-quantity", "1")
            page.click("#order-submit")
            page.wait_for_function("document.querySelector('#order-error').textContent.length > 0",
                                   timeout=WAIT_MS)
            assert "balance" in page.text_content("#order-error").lower()
            trader.shot("05-refusals")
            page.set_viewport_size({"width": 390, "height": 844})  # a phone
            trader.shot("06-phone")
            assert page.evaluate("document.documentElement.scrollWidth") <= 400
            # The one refusal provoked above is logged by the browser as a
            # failed load; anything else is an error.
            unexpected = [e for e in trader.errors
                          if "status of 400" not in e and "status of 422" not in e]
            assert unexpected == [], unexpected
        finally:
            trader.close()


@contextmanager
def held_bid(args, prefix: str):
    """The pair of ``args`` signed in, the buyer's post-only bid of QUANTITY
    at ``args["price"]`` in its open list, and the bid's orders row held by a
    transaction of the test (FOR NO KEY UPDATE: orders' consumer waits to
    update it, reads do not) until ``release()``, so that orders lags behind
    the pushes for certain. Yields the traders, the order id, its row's
    selector, ``look`` (a connection to read the row) and ``release``; the
    traders' consoles must stay free of errors."""
    import psycopg
    with chromium.browser() as browser:
        buyer, seller = signed_in_pair(browser, args, prefix)
        try:
            order_id = buyer.place("buy", args["price"], QUANTITY, post_only=True)
            row = f"#open-orders tr[data-order='{order_id}']"
            buyer.page.wait_for_selector(row, timeout=WAIT_MS)
            with psycopg.connect(args["dsn"]) as hold, \
                    psycopg.connect(args["dsn"], autocommit=True) as look:
                hold.execute("SELECT 1 FROM orders WHERE order_id = %s FOR NO KEY UPDATE",
                             (order_id,))
                yield SimpleNamespace(buyer=buyer, seller=seller, order_id=order_id, row=row,
                                      look=look, release=hold.rollback)
            for trader in (buyer, seller):
                assert trader.errors == [], f"{trader.name} console: {trader.errors}"
        finally:
            buyer.close()
            seller.close()


def filled_order_leaves_while_orders_lags(args):
    """The order pushes come from the engine's events, and orders records the
    same events in a consumer of its own, which can commit after the push has
    reached the browser: a read of the open orders made at the push then
    still lists a filled order (a CI rehearsal caught the row staying for
    good). Made certain here (``held_bid``): orders lists the bid as open for
    as long as its row is held. The filled order must still leave the open
    list."""
    price = args["price"]
    with held_bid(args, "lag-") as held:
        buyer, order_id, row = held.buyer, held.order_id, held.row
        held.seller.place("sell", price, QUANTITY, tif="IOC")
        buyer.tape_has(price, QUANTITY)
        buyer.page.wait_for_selector(row, state="detached", timeout=WAIT_MS)
        # ... while orders still had it open: the lag was real.
        status = held.look.execute("SELECT status FROM orders WHERE order_id = %s",
                                   (order_id,)).fetchone()[0]
        assert status == "new", f"orders recorded the fill already ({status})"
        held.release()
        buyer.shot("07-filled-while-orders-lagged")
        # Once orders has recorded it, it shows in the history as filled.
        buyer.page.wait_for_function(
            "id => [...document.querySelectorAll('#order-history tr')].some("
            "r => r.cells[0]?.textContent === String(id) && /filled/i.test(r.textContent))",
            arg=order_id, timeout=WAIT_MS)
        assert buyer.page.locator(row).count() == 0


PART = "0.0050"


def partial_fill_shows_while_orders_lags(args):
    """A partial fill's push reaches the browser before orders records it
    (``held_bid``): the open order must show the filled part and
    "partially_filled" from the fill pushed, and the history the same, not
    the read's 0 and "new" until some later read (before session 18 it
    stayed so for as long as orders lagged past the client's one re-read)."""
    filled_is = ("([row, q]) => { const r = document.querySelector(row); return !!r && "
                 "r.cells[4].textContent.replace(/0+$/, '') === q.replace(/0+$/, '') && "
                 "r.cells[5].dataset.status === 'partially_filled'; }")
    with held_bid(args, "part-") as held:
        buyer, order_id, row = held.buyer, held.order_id, held.row
        held.seller.place("sell", args["price"], PART, tif="IOC")
        # Past the client's first re-read (1 s after the push), so a client
        # showing only what orders answers would show 0 here.
        buyer.page.wait_for_timeout(2500)
        buyer.page.wait_for_function(filled_is, arg=[row, PART], timeout=WAIT_MS)
        # The fill pushed is in the fills table too.
        buyer.page.wait_for_function(
            "q => [...document.querySelectorAll('#fills tbody tr')].some(tr => "
            "tr.children[3].textContent.replace(/0+$/, '') === q.replace(/0+$/, ''))",
            arg=PART, timeout=WAIT_MS)
        # ... while orders still had it unfilled: the lag was real.
        status, filled = held.look.execute(
            "SELECT status, filled_quantity FROM orders WHERE order_id = %s",
            (order_id,)).fetchone()
        assert (status, Decimal(filled)) == ("new", 0), \
            f"orders recorded the fill already ({status}, {filled})"
        # The history's row says the same (its read says "new").
        buyer.page.wait_for_function(
            "id => [...document.querySelectorAll('#order-history tr')].some(r => "
            "r.cells[0]?.textContent === String(id) && "
            "r.cells[5].dataset.status === 'partially_filled')", arg=order_id, timeout=WAIT_MS)
        buyer.shot("08-partial-fill-while-orders-lagged")
        held.release()
        # Once orders has recorded it, its read says the same.
        for _ in range(100):
            status, = held.look.execute("SELECT status FROM orders WHERE order_id = %s",
                                        (order_id,)).fetchone()
            if status == "partially_filled":
                break
            buyer.page.wait_for_timeout(100)
        assert status == "partially_filled", status
        buyer.page.wait_for_timeout(1500)            # past a re-read of the lists
        buyer.page.wait_for_function(filled_is, arg=[row, PART], timeout=WAIT_MS)
        buyer.page.click(f"{row} button")            # the rest cancelled: the row leaves
        buyer.page.wait_for_selector(row, state="detached", timeout=WAIT_MS)


def fee_read_before_settlement_lands_after_it(args):
    """The fill push starts a read of the fills; when wallets settles the
    trade while that read is in flight, the read's answer (made before the
    settlement: the fee "pending") lands after the settlement's balances push.
    A client that re-reads only at a balances push that finds a fee pending
    then shows "(pending)" for good (session 20's CI caught it by chance).
    Made certain here: the buyer's wallet accounts are held by a transaction
    of the test (FOR NO KEY UPDATE: settlement waits to move them, reads do
    not), every fills read answered meanwhile is held back in the browser
    until the settlement's balances are shown, then delivered. The fee must
    still end settled."""
    import psycopg
    price = args["price"]
    with chromium.browser() as browser:
        buyer, seller = signed_in_pair(browser, args, "fee-")
        try:
            order_id = buyer.place("buy", price, QUANTITY, post_only=True)
            buyer.page.wait_for_selector(f"#open-orders tr[data-order='{order_id}']",
                                         timeout=WAIT_MS)
            buyer.wait_balance("USDT", lambda v: v < Decimal("5000"))  # the bid's hold
            # A flag, not page.unroute: unrouting handles the held routes too
            # ("Route is already handled" at their fulfil).
            stale, holding = [], [True]

            def fills_read(route):
                if not holding[0]:
                    route.continue_()
                    return
                # Answered by the gateway now, delivered to the page later.
                stale.append((route, route.fetch()))

            buyer.page.route("**/fills?*", fills_read)
            with psycopg.connect(args["dsn"]) as hold:
                hold.execute("SELECT 1 FROM wallets.accounts WHERE owner = %s FOR NO KEY UPDATE",
                             (buyer.who.user_id,))
                seller.place("sell", price, QUANTITY, tif="IOC")
                buyer.tape_has(price, QUANTITY)
                for _ in range(200):       # the fill push's read, answered and held
                    if stale:
                        break
                    buyer.page.wait_for_timeout(100)
                assert stale, "the fill push started no read of the fills"
                answered = [json.loads(response.text()) for _, response in stale]
                assert all(not f["fee"]["settled"] for page in answered for f in page["fills"]), \
                    f"a fee settled while the buyer's accounts were held: {answered}"
                holding[0] = False
                hold.rollback()            # settlement goes on: its balances push follows
            buyer.wait_balance("BTC", lambda v: v > 0)
            for route, response in stale:  # the reads made before it land after it
                route.fulfill(response=response)
            buyer.wait_settled_fee("BTC", QUANTITY)
            buyer.shot("09-fee-settled-after-a-stale-read")
            for trader in (buyer, seller):
                assert trader.errors == [], f"{trader.name} console: {trader.errors}"
        finally:
            buyer.close()
            seller.close()


SCENARIOS = {"two_traders_trade": two_traders_trade, "refusals_and_phone": refusals_and_phone,
             "filled_order_leaves_while_orders_lags": filled_order_leaves_while_orders_lags,
             "partial_fill_shows_while_orders_lags": partial_fill_shows_while_orders_lags,
             "fee_read_before_settlement_lands_after_it": fee_read_before_settlement_lands_after_it}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]))
    print(f"scenario {sys.argv[1]}: ok")
