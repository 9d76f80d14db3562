"""Browser scenarios of what a trader reads and fills in (session 26), run
in a child process by test_trader_client_reading.py (see chromium.py): the
orders' statuses in words, the time of each of My trades, the withdrawal
form's own check before sending; and (session 27) the withdrawals' statuses
in words, the order history's time, an address refused in words. Same conventions as trader_scenarios.py
(JSON argument, exit non-zero on the first failure, screenshots in
run/artifacts/browser/trader_client/)."""
from __future__ import annotations

import contextlib
import json
import sys
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from playwright.sync_api import Error as PlaywrightError

from tests.e2e.browser import chromium
from tests.e2e.browser.sweep_scenarios import BAND_FACTOR, submit, wait_error
from tests.e2e.browser.step_up_scenario import STEP_UP_WORDS
from tests.e2e.browser.trader_scenarios import PART, QUANTITY, WAIT_MS, Trader, signed_in_pair

ABOVE_FACTOR = Decimal("1.1")   # an IOC sell this far above the book: nothing to take

# Every status cell of the open orders and the history, as [order id, text,
# data-status]. The API's words are lowercase with underscores
# ("partially_filled"); a trader's words are not.
STATUS_CELLS = ("() => [...document.querySelectorAll("
                "'#open-orders tbody tr, #order-history tbody tr')]"
                ".map(r => [r.cells[0].textContent, r.querySelector('td.status')?.textContent,"
                " r.querySelector('td.status')?.dataset.status])")


def shots():
    return chromium.artifacts_dir("browser/trader_client")


def cancel_left(trader) -> None:
    """On the way out, even from a failure: the trader's open orders
    cancelled (a bid left inside the spread narrows it for every later run)."""
    with contextlib.suppress(PlaywrightError):
        trader.page.click("#cancel-all", timeout=5000)
        trader.page.wait_for_selector("#open-orders tbody tr", state="detached", timeout=5000)


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
            cancel_left(buyer)
            buyer.close()
            seller.close()


TOKYO = "Asia/Tokyo"  # 9 hours from UTC, the machine's zone: a time in UTC shows


def seconds_of_day(text: str) -> int:
    hours, minutes, seconds = (int(part) for part in text.split(":"))
    return hours * 3600 + minutes * 60 + seconds


# On a phone: [the right edges of My trades' time cells], the orders
# panel's right edge, and the status cells whose words break inside a word
# (a Range over each word: more than one box is a word split over lines).
ON_A_PHONE = """() => {
  const panel = document.querySelector('#orders-panel').getBoundingClientRect().right;
  const times = [...document.querySelectorAll('#fills tbody tr')]
    .map(r => r.cells[r.cells.length - 1].getBoundingClientRect().right);
  const split = [...document.querySelectorAll('td.status')].filter(td => {
    const text = td.firstChild;
    let at = 0;
    return !!text && td.textContent.split(' ').some(word => {
      const range = document.createRange();
      range.setStart(text, at);
      range.setEnd(text, at + word.length);
      at += word.length + 1;
      return range.getClientRects().length > 1;
    });
  }).map(td => td.textContent);
  return [times, panel, split];
}"""


def my_trades_show_their_time(args):
    """My trades had no time column. Each fill must show its time as the
    tape does (the trader's local time, hh:mm:ss for today's), newest first:
    a buyer in Tokyo, two fills of their bid 1.5 s apart. On a phone the
    times must be on screen, and the bid's status ("Partially filled")
    break between its words, not inside one ("Partiall|y")."""
    with chromium.browser() as browser:
        buyer, seller = signed_in_pair(browser, args, "time-", timezone_id=TOKYO)
        try:
            page = buyer.page
            buyer.place("buy", args["price"], QUANTITY, post_only=True)
            seller.book_has("buy", args["price"])
            seller.place("sell", args["price"], PART, tif="IOC")
            page.wait_for_selector("#fills tbody tr", timeout=WAIT_MS)
            page.wait_for_timeout(1500)
            seller.place("sell", args["price"], PART, tif="IOC")
            now = datetime.now(ZoneInfo(TOKYO))
            page.wait_for_function("document.querySelectorAll('#fills tbody tr').length === 2",
                                   timeout=WAIT_MS)
            page.wait_for_timeout(1500)                  # past the read after the pushes
            headers = page.eval_on_selector_all("#fills thead th",
                                                "hs => hs.map(h => h.textContent)")
            assert "Time" in headers, f"My trades' columns: {headers}"
            column = headers.index("Time")
            times = page.eval_on_selector_all(
                "#fills tbody tr", "(rs, i) => rs.map(r => r.cells[i]?.textContent)", column)
            buyer.shot("22-my-trades-time")
            assert len(times) == 2 and all(t and len(t) == 8 for t in times), times
            # Tokyo's wall clock of the second fill, within the test's own pace.
            late = (seconds_of_day(now.strftime("%H:%M:%S")) - seconds_of_day(times[0])) % 86400
            assert late <= 30 or late >= 86400 - 30, f"{times[0]} is not Tokyo's {now:%H:%M:%S}"
            apart = (seconds_of_day(times[0]) - seconds_of_day(times[1])) % 86400
            assert 1 <= apart <= 30, f"not newest first, or not 1.5 s apart: {times}"
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(500)
            buyer.shot("24-my-trades-on-a-phone")
            rights, panel, split = page.evaluate(ON_A_PHONE)
            assert rights and max(rights) <= min(390, panel), \
                f"the times' right edges {rights}, off the panel's {panel}"
            assert split == [], f"statuses broken inside a word: {split}"
            for trader in (buyer, seller):
                assert trader.errors == [], f"{trader.name} console: {trader.errors}"
        finally:
            cancel_left(buyer)
            buyer.close()
            seller.close()


ADDRESS = "0x" + "ab" * 20
# What the page can know is wrong with a withdrawal, for a trader holding
# 100 USDT and no BTC: (asset, address, amount, the field, words said under it).
# USDT has 6 decimals, BTC 8 (the markets' quote_precision, base_precision).
WRONG_WITHDRAWALS = [
    ("USDT", "", "10", "address", "Enter the address"),
    ("USDT", ADDRESS, "", "amount", "Enter an amount"),
    ("USDT", ADDRESS, "ten", "amount", "plain positive number"),
    ("USDT", ADDRESS, "-5", "amount", "plain positive number"),
    ("USDT", ADDRESS, "0", "amount", "above zero"),
    ("USDT", ADDRESS, "1.1234567", "amount", "at most 6 decimals"),
    ("USDT", ADDRESS, "100.01", "amount", "more than your available"),
    ("BTC", ADDRESS, "0.123456789", "amount", "at most 8 decimals"),
    ("BTC", ADDRESS, "0.5", "amount", "more than your available"),
]

# The problem said for a field of the withdrawal form: the field marked
# invalid, and the text that describes it shown right under it.
FIELD_PROBLEM = """([field, words]) => {
  const input = document.querySelector('#withdraw-' + field);
  const said = document.getElementById(input.getAttribute('aria-describedby') || '');
  if (!said || input.getAttribute('aria-invalid') !== 'true' ||
      !said.textContent.includes(words)) return null;
  const [a, b] = [input.getBoundingClientRect(), said.getBoundingClientRect()];
  return [said.textContent, b.top - a.bottom, b.left < a.right && a.left < b.right,
          document.activeElement === input];
}"""


def fee_and_minimum_cases(usdt: dict) -> list:
    """The withdrawals the asset's rules refuse, for a trader holding 100
    USDT, from the registry's USDT (``usdt``: its catalogue entry): one minor
    unit below the minimum, and one minor unit more than the available
    balance leaves once the fee is held on top."""
    unit = Decimal(1).scaleb(-usdt["scale"])
    fee, minimum = usdt["withdrawal_fee"], usdt["min_withdrawal"]
    assert Decimal(minimum) > 0 and Decimal(minimum) + Decimal(fee) < 100, usdt
    return [
        ("USDT", ADDRESS, str(Decimal(minimum) - unit), "amount",
         f"The minimum withdrawal is {minimum} USDT."),
        ("USDT", ADDRESS, str(100 - Decimal(fee) + unit), "amount",
         "Not enough available balance for this amount plus the withdrawal fee. "
         f"The fee is {fee} USDT"),
    ]


def withdrawal_checked_before_sending(args):
    """The withdrawal form sent whatever it was given and left the server to
    refuse it. What the page can know must be said under the field before
    anything is sent (no address; an amount that is not a positive plain
    decimal, has more decimals than the asset, is below the asset's minimum,
    or is above the available balance with or without the fee held on top),
    the field focused; the asset's fee and minimum are shown before sending
    (GET /api/v1/assets: before it, a trader could not know them); a right
    request is still sent, and the server's refusal (no one-time password
    here) shows as before."""
    usdt = args["usdt"]
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "withdraw",
                        shots())
        try:
            trader.sign_in()
            trader.wait_balance("USDT", lambda v: v == Decimal("100"))
            page = trader.page
            posts = []
            page.on("request", lambda r: r.method == "POST" and "/api/v1/withdrawals" in r.url
                    and posts.append(r.url))
            page.select_option("#withdraw-asset", "USDT")
            terms = f"Fee {usdt['withdrawal_fee']} USDT · minimum {usdt['min_withdrawal']} USDT"
            page.wait_for_function("t => document.querySelector('#withdraw-terms')"
                                   ".textContent === t", arg=terms, timeout=WAIT_MS)
            for asset, address, amount, field, words in (WRONG_WITHDRAWALS
                                                         + fee_and_minimum_cases(usdt)):
                page.select_option("#withdraw-asset", asset)
                page.fill("#withdraw-address", address)
                page.fill("#withdraw-amount", amount)
                page.click("#withdraw-form button[type=submit]")
                said, gap, under, focused = page.wait_for_function(
                    FIELD_PROBLEM, arg=[field, words], timeout=5000).json_value()
                assert 0 <= gap <= 24 and under and focused, \
                    f"{amount!r}: {said!r} not under its field, focused: {gap}, {under}, {focused}"
                page.wait_for_timeout(300)                   # a request would have left by now
                assert posts == [], f"{asset} {address!r} {amount!r} was sent"
                assert page.text_content("#withdraw-error") == ""
            trader.shot("23-withdrawal-refused-before-sending")
            # Edited, the field's problem goes; a right request is sent, and
            # the server's refusal shows as it did.
            page.select_option("#withdraw-asset", "USDT")
            amount = usdt["min_withdrawal"]          # the minimum itself is allowed
            page.fill("#withdraw-amount", amount)
            assert page.text_content("#withdraw-amount-error") == ""
            assert page.get_attribute("#withdraw-amount", "aria-invalid") is None
            paid = Decimal(amount) + Decimal(usdt["withdrawal_fee"])
            assert page.text_content("#withdraw-terms") == f"{terms} · you pay {paid} USDT"
            page.click("#withdraw-form button[type=submit]")
            page.wait_for_function("document.querySelector('#withdraw-error').textContent",
                                   timeout=WAIT_MS)
            assert page.text_content("#withdraw-error") == STEP_UP_WORDS, \
                page.text_content("#withdraw-error")
            assert page.is_visible("#step-up") and len(posts) == 1, posts
            unexpected = [e for e in trader.errors if "status of 403" not in e]
            assert unexpected == [], unexpected
        finally:
            trader.close()


def withdrawals_disabled_said_before_sending(args):
    """An asset whose withdrawals the registry has disabled: the form says so
    as soon as the asset is chosen, and on submit says it under the asset,
    focused, sending nothing."""
    asset = args["asset"]
    words = f"Withdrawals of {asset} are disabled at the moment."
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "disabled",
                        shots())
        try:
            trader.sign_in()
            trader.wait_balance("USDT", lambda v: v == Decimal("100"))
            page = trader.page
            posts = []
            page.on("request", lambda r: r.method == "POST" and "/api/v1/withdrawals" in r.url
                    and posts.append(r.url))
            page.select_option("#withdraw-asset", asset)
            page.wait_for_function("t => document.querySelector('#withdraw-terms')"
                                   ".textContent === t", arg=words, timeout=WAIT_MS)
            page.fill("#withdraw-address", ADDRESS)
            page.fill("#withdraw-amount", "1")
            page.click("#withdraw-form button[type=submit]")
            said, gap, under, focused = page.wait_for_function(
                FIELD_PROBLEM, arg=["asset", words], timeout=5000).json_value()
            assert 0 <= gap <= 24 and under and focused, (said, gap, under, focused)
            page.wait_for_timeout(300)                   # a request would have left by now
            assert posts == [], posts
            trader.shot("23-withdrawals-disabled")
            assert trader.errors == [], trader.errors
        finally:
            trader.close()


# A withdrawal's every status (services/wallets: the state machine of
# functions/check_withdrawal_transition.sql) as the Withdrawals list words it.
WITHDRAWAL_WORDS = {
    "pending": "Waiting for approval",
    "approved": "Approved: being sent",
    "sent": "Sent",
    "rejected": "Rejected: the amount and its fee are back in your balance",
    "cancelled": "Cancelled: the amount and its fee are back in your balance",
}

# Every withdrawal the list shows, as [id, the status's text, data-status].
WITHDRAWAL_CELLS = ("() => [...document.querySelectorAll('#withdrawals li')]"
                    ".map(li => [li.dataset.withdrawal, li.querySelector('.status')?.textContent,"
                    " li.querySelector('.status')?.dataset.status])")


def withdrawal_statuses_in_words(args):
    """The Withdrawals list showed the API's word ("... → 0xab...: pending").
    Each status must read in words, the API's word kept in the status's
    data-status: a trader with one withdrawal in each status (``args
    ["withdrawals"]``: [id, status], made over RPC by the test)."""
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "withdrawals",
                        shots())
        try:
            trader.sign_in()
            page = trader.page
            expected = sorted([str(i), WITHDRAWAL_WORDS[status], status]
                              for i, status in args["withdrawals"])
            try:
                page.wait_for_function(
                    f"n => ({WITHDRAWAL_CELLS})().length === n", arg=len(expected),
                    timeout=WAIT_MS)
            finally:
                trader.shot("25-withdrawal-statuses")
            shown = sorted(page.evaluate(WITHDRAWAL_CELLS))
            assert shown == expected, f"shown {shown}, not {expected}"
            assert trader.errors == [], trader.errors
        finally:
            trader.close()


def withdrawal_approval_shows_without_a_reload(args):
    """An operator's approval moves no money, so no balances push came and
    the list said "Waiting for approval" until the page was loaded again.
    Approved over RPC (``args["operator"]``: an admin's token and name) while
    the page is open, it must show "Approved: being sent" within the page's
    re-read (15 s) and the test's own pace."""
    from nameko.standalone.rpc import ClusterRpcProxy  # unpatched here: no eventlet needed

    from services.common.config import load_settings
    withdrawal = args["withdrawal"]
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "approval",
                        shots())
        try:
            trader.sign_in()
            page = trader.page
            shown = ("([id, raw]) => document.querySelector("
                     "`#withdrawals li[data-withdrawal='${id}'] .status`)?.dataset.status === raw")
            page.wait_for_function(shown, arg=[withdrawal, "pending"], timeout=WAIT_MS)
            with ClusterRpcProxy(load_settings().nameko_config(), timeout=30, context_data={
                    "access_token": args["operator"]["token"]}) as rpc:
                rpc.wallets.approve_withdrawal(withdrawal, args["operator"]["name"])
            page.wait_for_function(shown, arg=[withdrawal, "approved"], timeout=40_000)
            assert page.text_content(f"#withdrawals li[data-withdrawal='{withdrawal}'] .status") \
                == WITHDRAWAL_WORDS["approved"]
            trader.shot("29-withdrawal-approved")
            assert trader.errors == [], trader.errors
        finally:
            trader.close()


def history_times(page) -> list:
    """The order history's Time column, top down."""
    headers = page.eval_on_selector_all("#order-history thead th",
                                        "hs => hs.map(h => h.textContent)")
    assert "Time" in headers, f"the order history's columns: {headers}"
    return page.eval_on_selector_all(
        "#order-history tbody tr", "(rs, i) => rs.map(r => [r.cells[0].textContent,"
        " r.cells[i]?.textContent, r.cells[i]?.title])", headers.index("Time"))


def order_history_shows_its_time(args):
    """The order history had no time column. Each order must show the time it
    was placed as My trades shows a fill's (the trader's local time,
    hh:mm:ss for today's, the date in its title): a
    trader in Tokyo places a bid, cancels it, and places a second 1.5 s
    later; the newer is on top. On a phone the times stay on screen."""
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "history-time",
                        shots(), timezone_id=TOKYO)
        try:
            trader.sign_in()
            page = trader.page
            first = trader.place("buy", args["price"], QUANTITY, post_only=True)
            cancel_left(trader)
            page.wait_for_timeout(1500)
            second = trader.place("buy", args["price"], QUANTITY, post_only=True)
            now = datetime.now(ZoneInfo(TOKYO))
            wait_status(page, "#order-history", second, "Open", "new")
            wait_status(page, "#order-history", first, "Cancelled", "cancelled")
            times = {order: (text, title) for order, text, title in history_times(page)}
            trader.shot("26-order-history-time")
            (late, late_title), (early, _) = times[str(second)], times[str(first)]
            assert all(t and len(t) == 8 for t in (late, early)), times
            # Tokyo's wall clock of the second order, within the test's own pace.
            behind = (seconds_of_day(now.strftime("%H:%M:%S")) - seconds_of_day(late)) % 86400
            assert behind <= 30 or behind >= 86400 - 30, f"{late} is not Tokyo's {now:%H:%M:%S}"
            apart = (seconds_of_day(late) - seconds_of_day(early)) % 86400
            assert 1 <= apart <= 30, f"not 1.5 s apart: {times}"
            assert str(now.year) in late_title, f"no full date as its title: {late_title!r}"
            # The title's clock is the cell's (a 12-hour locale said "1:05:09 PM").
            assert late_title.endswith(f" {late}"), f"title {late_title!r} is not on {late}'s clock"
            rows = [order for order, _, _ in history_times(page)]
            assert rows.index(str(second)) < rows.index(str(first)), rows
            # ETH has 18 decimals; this trader has none of it: eight zeros,
            # not eighteen (the value is the server's, only its last zeros go).
            eth = page.text_content("#balances tr[data-asset=ETH] td:nth-child(2)")
            assert eth == "0.00000000", f"an empty ETH balance reads {eth!r}"
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(500)
            trader.shot("27-order-history-on-a-phone")
            rights, panel = page.evaluate(
                "() => [[...document.querySelectorAll('#order-history tbody tr')]"
                ".map(r => r.cells[r.cells.length - 1].getBoundingClientRect().right),"
                " document.querySelector('#orders-panel').getBoundingClientRect().right]")
            assert rights and max(rights) <= min(390, panel), \
                f"the times' right edges {rights}, off the panel's {panel}"
            assert trader.errors == [], trader.errors
        finally:
            cancel_left(trader)
            trader.close()


# Characters no chain's address has: the gateway refuses them before wallets.
BAD_ADDRESS = "0x52908400098527886e0f7030069857d2e4169ee-"


def bad_address_said_in_words(args):
    """A withdrawal to an address with characters no address has was refused
    with the gateway's regular expression ("Address has characters that are
    not allowed ([A-Za-z0-9]{1,128})."). The trader must read that it is not
    a valid address of the asset, under the address field (focused), and
    nothing of a pattern."""
    usdt = args["usdt"]
    with chromium.browser() as browser:
        trader = Trader(browser, args["url"], SimpleNamespace(**args["trader"]), "bad-address",
                        shots())
        try:
            trader.sign_in()
            trader.wait_balance("USDT", lambda v: v == Decimal("100"))
            page = trader.page
            page.select_option("#withdraw-asset", "USDT")
            page.fill("#withdraw-address", BAD_ADDRESS)
            page.fill("#withdraw-amount", usdt["min_withdrawal"])
            page.click("#withdraw-form button[type=submit]")
            page.wait_for_function("document.querySelector('#withdraw-error').textContent ||"
                                   " document.querySelector('#withdraw-address-error').textContent",
                                   timeout=WAIT_MS)
            trader.shot("28-withdrawal-bad-address")
            said = page.text_content("#withdraw-address-error") or page.text_content(
                "#withdraw-error")
            assert "not a valid USDT address" in said, said
            assert not set("[]{}^$\\") & set(said), f"a pattern shown: {said!r}"
            said, gap, under, focused = page.wait_for_function(
                FIELD_PROBLEM, arg=["address", "not a valid USDT address"],
                timeout=5000).json_value()
            assert 0 <= gap <= 24 and under and focused, (said, gap, under, focused)
            assert page.text_content("#withdraw-error") == ""
            unexpected = [e for e in trader.errors if "status of 400" not in e]
            assert unexpected == [], unexpected
        finally:
            trader.close()


SCENARIOS = {"statuses_in_words": statuses_in_words,
             "my_trades_show_their_time": my_trades_show_their_time,
             "withdrawal_checked_before_sending": withdrawal_checked_before_sending,
             "withdrawals_disabled_said_before_sending": withdrawals_disabled_said_before_sending,
             "withdrawal_statuses_in_words": withdrawal_statuses_in_words,
             "order_history_shows_its_time": order_history_shows_its_time,
             "bad_address_said_in_words": bad_address_said_in_words,
             "withdrawal_approval_shows_without_a_reload":
                 withdrawal_approval_shows_without_a_reload}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]))
    print(f"scenario {sys.argv[1]}: ok")
