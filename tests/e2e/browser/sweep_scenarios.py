"""Browser scenarios of what a trader met in a sweep of the web client
(session 25), run in a child process by test_trader_client_sweep.py (see
chromium.py): refusals the engine makes after the order was accepted, the
tape after the live connection was lost, a phone's width with an open
order. Same conventions as trader_scenarios.py (JSON argument, exit non-zero
on the first failure, screenshots in run/artifacts/browser/trader_client/)."""
from __future__ import annotations

import json
import re
import sys
from decimal import Decimal
from types import SimpleNamespace

from tests.e2e.browser import chromium
from tests.e2e.browser.trader_scenarios import MARKET, QUANTITY, WAIT_MS, Trader, signed_in_pair

# A server code shown as it is (NOTIONAL_BELOW_MIN, PRICE_OUT_OF_BAND): not words.
RAW_CODE = re.compile(r"\b[A-Z]+(?:_[A-Z]+)+\b")
BAND_FACTOR = Decimal("0.6")    # outside the demo markets' 20 % price band
RESTING_FACTOR = Decimal("0.85")  # inside it, far below the book: never trades


def shots():
    return chromium.artifacts_dir("browser/trader_client")


def submit(page, side: str, order_type: str, quantity: str, price: str = "", post_only=False):
    """Fill the ticket and send it; the status and error lines once either says something."""
    page.evaluate("() => { for (const id of ['#order-error', '#order-status'])"
                  " document.querySelector(id).textContent = ''; }")
    page.check(f"input[name=side][value={side}]")
    page.select_option("#order-type", order_type)
    if order_type == "limit":
        page.fill("#order-price", price)
        page.select_option("#order-tif", "GTC")
        page.set_checked("#order-post-only", post_only)
    page.fill("#order-quantity", quantity)
    page.click("#order-submit")
    page.wait_for_function("document.querySelector('#order-status').textContent || "
                           "document.querySelector('#order-error').textContent", timeout=WAIT_MS)


def wait_error(page) -> str:
    page.wait_for_function("document.querySelector('#order-error').textContent.length > 0",
                           timeout=WAIT_MS)
    return page.text_content("#order-error")


def engine_refusals_in_words(args):
    """The engine refuses some orders after orders has accepted them (the
    price band, post-only that would take, FOK): the REST answer says "new"
    and the refusal comes as a ``command_rejected`` push. The trader must be
    told, in words, and the order's history row must say why; a refusal the
    REST call answers must be in words too, not the server's code."""
    price = Decimal(args["price"])
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "refusals",
                        shots())
        try:
            trader.sign_in()
            page = trader.page
            # Too small a market order: refused by the REST call itself.
            submit(page, "buy", "market", "0.0001")
            error = wait_error(page)
            assert not RAW_CODE.search(error), f"a code, not words: {error!r}"
            # Outside the price band: accepted by orders, refused by the engine.
            far = str((price * BAND_FACTOR).quantize(Decimal("0.01")))
            submit(page, "buy", "limit", "0.0010", far)
            error = wait_error(page)
            assert not RAW_CODE.search(error), f"a code, not words: {error!r}"
            assert "far" in error and "price" in error, error
            assert "accepted" not in page.text_content("#order-status"), \
                page.text_content("#order-status")
            order_id = re.search(r"\d+", error).group(0)
            page.wait_for_function(
                "id => [...document.querySelectorAll('#order-history tr')].some(r => "
                "r.cells[0]?.textContent === id && r.cells[5].dataset.status === 'rejected' && "
                "/far/.test(r.cells[5].textContent))", arg=order_id, timeout=WAIT_MS)
            # Post-only at the best ask: it would take, so the engine refuses it.
            best_ask = page.text_content("#book-asks tbody tr:last-child td:first-child")
            submit(page, "buy", "limit", "0.0002", best_ask, post_only=True)
            error = wait_error(page)
            assert "post-only" in error.lower() and not RAW_CODE.search(error), error
            trader.shot("10-engine-refusals")
            unexpected = [e for e in trader.errors if "status of 400" not in e]
            assert unexpected == [], unexpected
        finally:
            trader.close()


TAPE_COUNT = ("(p, q) => [...document.querySelectorAll('#trades tbody tr')].filter(tr => "
              "tr.children[0].textContent === p && tr.children[1].textContent === q).length")


def tape_count(page, price: str, quantity: str) -> int:
    return page.evaluate(f"([p, q]) => ({TAPE_COUNT})(p, q)", [price, quantity])


def tape_catches_up_after_reconnect(args):
    """A trade made while the buyer's live connection was down (here: the
    buyer's own bid filled) must show in the buyer's trade tape once the page
    has reconnected by itself, as the book and the orders do, without a
    reload."""
    price = args["price"]
    with chromium.browser() as browser:
        buyer, seller = signed_in_pair(browser, args, "outage-")
        try:
            order_id = buyer.place("buy", price, QUANTITY, post_only=True)
            row = f"#open-orders tr[data-order='{order_id}']"
            buyer.page.wait_for_selector(row, timeout=WAIT_MS)
            # The tape may show earlier trades at this price and size (the
            # test's price is the same from run to run): one more is expected.
            before = tape_count(buyer.page, price, QUANTITY)
            # Chromium's offline mode cuts the open WebSocket and refuses
            # new connections and reads, as a gateway gone away would.
            buyer.context.set_offline(True)
            buyer.page.wait_for_function(
                "document.querySelector('#connection').textContent !== 'live'", timeout=WAIT_MS)
            seller.place("sell", price, QUANTITY, tif="IOC")
            seller.tape_has(price, QUANTITY)          # the trade happened
            buyer.page.wait_for_timeout(1000)
            buyer.context.set_offline(False)
            buyer.page.wait_for_function(
                "document.querySelector('#connection').textContent === 'live'", timeout=WAIT_MS)
            buyer.page.wait_for_selector(row, state="detached", timeout=WAIT_MS)
            buyer.page.wait_for_function(
                f"([p, q, n]) => ({TAPE_COUNT})(p, q) > n", arg=[price, QUANTITY, before],
                timeout=WAIT_MS)
            buyer.shot("11-tape-after-reconnect")
            # The tape stays newest first.
            times = buyer.page.eval_on_selector_all(
                "#trades tbody tr", "rs => rs.map(r => Number(r.dataset.at))")
            assert times == sorted(times, reverse=True), times
            for trader in (buyer, seller):
                unexpected = [e for e in trader.errors if "ERR_INTERNET_DISCONNECTED" not in e]
                assert unexpected == [], f"{trader.name} console: {unexpected}"
        finally:
            buyer.close()
            seller.close()


def phone_shows_cancel_of_an_open_order(args):
    """On a phone (390 px) with an open order, the page must not scroll
    sideways and the order's Cancel button must be on screen and work; no
    id, price or quantity may break over lines to fit (the history holds a
    refused order's long reason)."""
    price = Decimal(args["price"])
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "phone",
                        shots())
        try:
            trader.sign_in()
            page = trader.page
            # A refused order first: its history row carries a long reason.
            far = str((price * BAND_FACTOR).quantize(Decimal("0.01")))
            submit(page, "buy", "limit", "0.0010", far)
            wait_error(page)
            resting = str((price * RESTING_FACTOR).quantize(Decimal("0.01")))
            order_id = trader.place("buy", resting, "0.0010")
            row = f"#open-orders tr[data-order='{order_id}']"
            page.wait_for_selector(row, timeout=WAIT_MS)
            page.wait_for_selector(
                "#order-history td.status[data-status=rejected]:text-matches('far')",
                timeout=WAIT_MS)
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(500)
            trader.shot("12-phone-open-order")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page is {width} px wide on a 390 px phone"
            # In one evaluation: the open orders are drawn again at every re-read.
            right, edge = page.evaluate(
                "row => [document.querySelector(row + ' button').getBoundingClientRect().right,"
                " document.querySelector('#orders-panel').getBoundingClientRect().right]", row)
            assert right <= min(390, edge), f"Cancel is off screen: its right edge at {right}"
            # ... and not by breaking numbers over lines (a price split in two misreads).
            lines = page.evaluate(
                "() => [...document.querySelectorAll('#open-orders tbody tr, #order-history tbody tr')]"
                ".map(tr => [0, 2, 3, 4].map(i => { const r = document.createRange();"
                " r.selectNodeContents(tr.cells[i]); return r.getClientRects().length; }))")
            # At most one line: the history's id is not shown on a phone (no box).
            assert all(n <= 1 for row_lines in lines for n in row_lines), \
                f"lines of the ids, prices, quantities: {lines}"
            page.click(f"{row} button")
            page.wait_for_selector(row, state="detached", timeout=WAIT_MS)
            assert trader.errors == [], trader.errors
        finally:
            trader.close()


def resting_order(trader, args) -> tuple[str, str, int]:
    """A buy far below the book (never trades) placed from the ticket: its
    price (with the tick's two decimals, ending in 0, which orders answers
    without), its open orders row's selector and its id."""
    price = (Decimal(args["price"]) * RESTING_FACTOR).quantize(Decimal("0.1"))
    price = f"{price:.2f}"
    order_id = trader.place("buy", price, "0.0010")
    row = f"#open-orders tr[data-order='{order_id}']"
    trader.page.wait_for_selector(row, timeout=WAIT_MS)
    return price, row, order_id


def order_numbers_read_like_the_book(args):
    """The open orders, the history and the fills write prices and
    quantities as the book and the tape do (the market's tick and lot
    decimals): orders answers "25491.6" and "0.001" for 25491.60 and 0.0010."""
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "numbers",
                        shots())
        try:
            trader.sign_in()
            page = trader.page
            price, row, order_id = resting_order(trader, args)
            page.wait_for_function(
                "([row, p]) => { const c = document.querySelector(row)?.cells; return !!c && "
                "c[2].textContent === p && c[3].textContent === '0.0010' && "
                "c[4].textContent === '0.0000'; }", arg=[row, price], timeout=WAIT_MS)
            page.wait_for_function(
                "([id, p]) => [...document.querySelectorAll('#order-history tbody tr')].some(r => "
                "r.cells[0].textContent === String(id) && r.cells[3].textContent === p && "
                "r.cells[4].textContent === '0.0010')", arg=[order_id, price], timeout=WAIT_MS)
            trader.shot("13-order-numbers")
            page.click(f"{row} button")
            page.wait_for_selector(row, state="detached", timeout=WAIT_MS)
            assert trader.errors == [], trader.errors
        finally:
            trader.close()


def keyboard_cancel_survives_a_re_read(args):
    """A trader on the keyboard tabs to an open order's Cancel; the open
    orders are read again meanwhile (here at the reconnection after a short
    loss of the network, as after any order push). The focus must stay on
    that Cancel (the table was drawn anew at every read: the focus fell back
    to the page, and Enter did nothing), and Enter must cancel the order."""
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "keyboard",
                        shots())
        try:
            trader.sign_in()
            page = trader.page
            _, row, order_id = resting_order(trader, args)
            page.wait_for_timeout(1500)                  # past the re-read after the push
            page.focus(f"{row} button")
            label = f"Cancel order {order_id}"
            with page.expect_response(lambda r: "/api/v1/orders?market=" in r.url,
                                      timeout=WAIT_MS):
                trader.context.set_offline(True)
                page.wait_for_function(
                    "document.querySelector('#connection').textContent !== 'live'",
                    timeout=WAIT_MS)
                trader.context.set_offline(False)
            page.wait_for_timeout(500)                   # drawn
            focused = page.evaluate("document.activeElement?.getAttribute('aria-label')")
            assert focused == label, f"the focus moved to {focused!r}"
            page.keyboard.press("Enter")
            page.wait_for_selector(row, state="detached", timeout=WAIT_MS)
            unexpected = [e for e in trader.errors if "ERR_INTERNET_DISCONNECTED" not in e]
            assert unexpected == [], unexpected
        finally:
            trader.close()


def times_read_in_the_traders_zone(args):
    """A trader in Tokyo (UTC+9) reads the tape's times in Tokyo time; the
    chart's last candle was labelled in UTC (and its axis drawn in UTC), 9
    hours apart from the tape it is made of. The last candle's minute must
    be the latest trade's (1m candles), as the page shows them."""
    with chromium.browser() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True,
                                      timezone_id="Asia/Tokyo")
        try:
            page = context.new_page()
            page.goto(args["url"] + "/")
            page.wait_for_selector("#trades tbody tr", timeout=WAIT_MS)
            # Read together (a trade may come in between two reads).
            page.wait_for_function(
                "() => { const m = /candle (\\d\\d:\\d\\d)/.exec("
                "document.querySelector('#last-candle').textContent);"
                " const t = document.querySelector('#trades tbody tr td:nth-child(3)');"
                " return m && t && t.textContent.startsWith(m[1]); }", timeout=WAIT_MS)
            page.screenshot(path=str(shots() / "14-tokyo.png"))
        finally:
            context.close()


def a_reload_keeps_the_market(args):
    """A trader on ETH-USDT who reloads the page (or signs in again) is still
    on ETH-USDT: the page started on the first market whatever the trader was
    looking at."""
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "reload",
                        shots())
        try:
            trader.sign_in()
            page = trader.page
            page.select_option("#market-select", "ETH-USDT")
            page.reload()
            page.wait_for_function(
                "document.querySelector('#connection').textContent === 'live'", timeout=WAIT_MS)
            page.wait_for_selector("#book-seq:not(:empty)", timeout=WAIT_MS)
            market = page.eval_on_selector("#market-select", "s => s.value")
            assert market == "ETH-USDT", f"the reload opened {market}"
            assert page.text_content("#who") == trader.who.username
            assert trader.errors == [], trader.errors
        finally:
            trader.close()


def no_answer_is_said_in_words(args):
    """An order sent while the network is down gets no answer at all: the
    page showed the browser's "Failed to fetch". It must say in words that
    the exchange could not be reached and that the order's fate is unknown."""
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "offline",
                        shots())
        try:
            trader.sign_in()
            page = trader.page
            trader.context.set_offline(True)
            submit(page, "buy", "limit", "0.0010", "25000.00")
            error = wait_error(page)
            trader.context.set_offline(False)
            trader.shot("15-order-without-answer")
            assert "could not be reached" in error and "open orders" in error, error
            assert "fetch" not in error.lower(), error
        finally:
            trader.close()


def an_order_that_traded_at_once_says_so(args):
    """A market buy that fills at once: the ticket's status line said
    "Order N accepted (new)." for good, which reads as if it still waited.
    It must end saying the order filled. (The seller's ask inside the spread
    is the best one: the buy meets it, never the demo traders' asks.)"""
    price = args["price"]
    with chromium.browser() as browser:
        buyer, seller = signed_in_pair(browser, args, "market-")
        try:
            seller.place("sell", price, QUANTITY, post_only=True)
            buyer.book_has("sell", price)
            submit(buyer.page, "buy", "market", QUANTITY)
            assert buyer.page.text_content("#order-error") == "", \
                buyer.page.text_content("#order-error")
            buyer.page.wait_for_function(
                "/^Order \\d+ filled\\.$/.test(document.querySelector('#order-status').textContent)",
                timeout=WAIT_MS)
            buyer.shot("16-market-order-filled")
            for trader in (buyer, seller):
                assert trader.errors == [], f"{trader.name} console: {trader.errors}"
        finally:
            buyer.close()
            seller.close()


def balances_show_what_a_trader_can_use(args):
    """An asset listed with no market (``args["idle_asset"]``, listed by the
    test) has an account at zero for every trader: it is left out of the
    balances, while the assets of the markets are all shown."""
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "balances",
                        shots())
        try:
            trader.sign_in()
            trader.wait_balance("USDT", lambda v: v == Decimal("100"))
            shown = trader.page.eval_on_selector_all(
                "#balances tbody tr", "rs => rs.map(r => r.dataset.asset)")
            assert args["idle_asset"] not in shown, shown
            assert {"BTC", "ETH", "USDT"} <= set(shown), shown
            trader.shot("17-balances")
            assert trader.errors == [], trader.errors
        finally:
            trader.close()


def market_row_keeps_the_focus_through_a_ticker(args):
    """A trader on the keyboard is on a market's row of the markets list; a
    trade moves that market's ticker, whose push draws the list again. The
    focus must stay on the row (it fell back to the page: the list was
    replaced at every ticker push)."""
    price = args["price"]
    with chromium.browser() as browser:
        buyer, seller = signed_in_pair(browser, args, "ticker-")
        try:
            page = buyer.page
            tickers = []              # the ticker frames the buyer's page receives

            def watch(ws):
                ws.on("framereceived", lambda payload: "ticker" in str(payload)
                      and MARKET in str(payload) and tickers.append(payload))

            page.on("websocket", watch)
            page.reload()             # the connection made from now on is watched
            page.wait_for_function(
                "document.querySelector('#connection').textContent === 'live'", timeout=WAIT_MS)
            buyer.place("buy", price, QUANTITY, post_only=True)
            seller.book_has("buy", price)
            row = "#market-list tbody tr[aria-selected=true]"
            page.focus(row)           # placing left the focus on the ticket
            name = page.text_content(f"{row} td:first-child")
            seen = len(tickers)
            seller.place("sell", price, QUANTITY, tif="IOC")
            buyer.tape_has(price, QUANTITY)
            for _ in range(100):      # the trade's ticker push (flushed each second)
                if len(tickers) > seen:
                    break
                page.wait_for_timeout(100)
            assert len(tickers) > seen, "no ticker push after the trade"
            page.wait_for_timeout(300)  # drawn
            focused = page.evaluate(
                "document.activeElement?.closest('#market-list tbody tr')?.cells[0].textContent")
            assert focused == name, f"the focus is on {focused!r}, not the row of {name}"
            for trader in (buyer, seller):
                assert trader.errors == [], f"{trader.name} console: {trader.errors}"
        finally:
            buyer.close()
            seller.close()


def a_double_click_sends_once(args):
    """A double click on *Place order* placed two orders, and on *Request
    withdrawal* sent two withdrawals (each with a reference of its own):
    one request per click burst, the button unusable while it is in flight."""
    price = Decimal(args["price"])
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "double",
                        shots())
        try:
            trader.sign_in()
            page = trader.page
            posts = []
            page.on("request", lambda r: r.method == "POST" and "/api/v1/" in r.url
                    and posts.append(r.url.split("/api/v1/")[1]))
            resting = str((price * RESTING_FACTOR).quantize(Decimal("0.01")))
            page.check("input[name=side][value=buy]")
            page.select_option("#order-type", "limit")
            page.fill("#order-price", resting)
            page.fill("#order-quantity", "0.0010")
            page.dblclick("#order-submit")
            page.wait_for_selector("#open-orders tbody tr", timeout=WAIT_MS)
            page.wait_for_timeout(2000)           # a second order would be listed by now
            orders = page.eval_on_selector_all("#open-orders tbody tr",
                                               "rs => rs.map(r => r.dataset.order)")
            page.click("#cancel-all")             # whatever was placed
            page.wait_for_selector("#open-orders tbody tr", state="detached", timeout=WAIT_MS)
            assert posts.count("orders") == 1 and len(orders) == 1, (posts, orders)
            page.select_option("#withdraw-asset", "USDT")
            page.fill("#withdraw-address", "0x" + "ab" * 20)
            page.fill("#withdraw-amount", "10")
            page.dblclick("#withdraw-form button[type=submit]")
            page.wait_for_function("document.querySelector('#withdraw-error').textContent || "
                                   "document.querySelector('#withdraw-status').textContent",
                                   timeout=WAIT_MS)
            page.wait_for_timeout(1000)
            assert posts.count("withdrawals") == 1, posts
            unexpected = [e for e in trader.errors if "status of 403" not in e]
            assert unexpected == [], unexpected
        finally:
            trader.close()


SCENARIOS = {"a_double_click_sends_once": a_double_click_sends_once,
"market_row_keeps_the_focus_through_a_ticker":
             market_row_keeps_the_focus_through_a_ticker,
"balances_show_what_a_trader_can_use": balances_show_what_a_trader_can_use,
"an_order_that_traded_at_once_says_so": an_order_that_traded_at_once_says_so,
"no_answer_is_said_in_words": no_answer_is_said_in_words,
"a_reload_keeps_the_market": a_reload_keeps_the_market,
"times_read_in_the_traders_zone": times_read_in_the_traders_zone,
"order_numbers_read_like_the_book": order_numbers_read_like_the_book,
             "keyboard_cancel_survives_a_re_read": keyboard_cancel_survives_a_re_read,
"engine_refusals_in_words": engine_refusals_in_words,
             "tape_catches_up_after_reconnect": tape_catches_up_after_reconnect,
             "phone_shows_cancel_of_an_open_order": phone_shows_cancel_of_an_open_order}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]))
    print(f"scenario {sys.argv[1]}: ok")
