"""Fresh traders with funds and API keys for the /api/v3 e2e tests, and
ccxt / python-binance clients pointed at the running gateway
(../shared/BINANCE_SUBSET.md sections 1 and 5).

Everything goes through public interfaces of the running (demo) stack: a
trader is native_testkit's person (users.sign_up, the password grant,
wallets.credit_deposit as the chain watcher would) with a key from
users.create_api_key. Usernames are unique per run; the demo traders are
never touched.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode, urlparse

import ccxt
import requests

from tests.e2e.gateway import native_testkit
from tests.e2e.loopback import own_address, session_from
from tests.e2e.gateway.native_testkit import (  # noqa: F401 (the kit's own names too)
    PASSWORD, credit, new_person, password_token as access_token, rpc_proxy)

@dataclass
class Trader:
    username: str
    user_id: str
    token: str
    api_key: str
    secret: str


def new_trader(settings, funds: dict | None = None, permissions=("read", "trade"),
               ip_allowlist=None, prefix="gw") -> Trader:
    """A signed-up trader (native_testkit.new_person: sign-up, token, the
    given deposits credited) with one API key."""
    person = new_person(settings, funds, prefix)
    request = {"label": "e2e", "permissions": list(permissions)}
    if ip_allowlist:
        request["ip_allowlist"] = list(ip_allowlist)
    with rpc_proxy(settings) as rpc:
        key = rpc.users.create_api_key(person.token, request)
    return Trader(person.username, person.user_id, person.token, key["api_key"], key["secret"])


def another_key(settings, trader: Trader, **request) -> dict:
    with rpc_proxy(settings) as rpc:
        return rpc.users.create_api_key(trader.token, {"label": "e2e", **request})


def revoke(settings, trader: Trader, api_key: str) -> None:
    with rpc_proxy(settings) as rpc:
        rpc.users.revoke_api_key(trader.token, api_key)


# ------------------------------------------------------------------ clients

def binance_local(base_url, api_key=None, secret=None, timeout_ms=10000):
    """ccxt's binance class re-pointed at the gateway (BINANCE_SUBSET.md section 1)."""
    base = base_url.rstrip('/')
    api = {k: base + urlparse(u).path for k, u in ccxt.binance().urls['api'].items()}
    cfg = {
        'urls': {'api': api},
        'timeout': timeout_ms,
        'options': {
            'defaultType': 'spot',
            'fetchMarkets': {'types': ['spot']},
            'fetchCurrencies': False,
            'fetchMargins': False,
            'adjustForTimeDifference': False,
            'fetchOpenOrders': {'warnWithoutSymbol': False},
            'warnOnFetchOpenOrdersWithoutSymbol': False,
            'recvWindow': 10000,
        },
    }
    if api_key:
        cfg.update(apiKey=api_key, secret=secret)
    return ccxt.binance(cfg)


def binance_client(base_url, api_key=None, secret=None):
    """python-binance 1.0.37 pointed at the gateway (BINANCE_SUBSET.md section 5)."""
    from binance.client import Client
    client = Client(api_key, secret, ping=False)
    # Every URL it has (API_URL, MARGIN_API_URL for /sapi, futures...) at the
    # gateway, keeping its path, so no call can leave this machine.
    base = base_url.rstrip('/')
    for name in dir(client):
        value = getattr(client, name)
        if name.endswith('_URL') and isinstance(value, str) and value.startswith('http'):
            setattr(client, name, base + urlparse(value).path)
    assert client.API_URL == base + '/api' and client.MARGIN_API_URL == base + '/sapi'
    return client


def signed(trader: Trader, params: dict, secret: str | None = None) -> str:
    """A query string with timestamp, recvWindow and signature, as ccxt builds it."""
    query = urlencode({"timestamp": int(time.time() * 1000), "recvWindow": 10000, **params})
    signature = hmac.new((secret or trader.secret).encode(), query.encode(),
                         hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}"


def raw(settings, method: str, path: str, trader: Trader | None = None, params=None,
        body: bool = False, headers=None, session=None):
    """A hand-signed request (for what the SDKs cannot be made to send);
    ``session``: a requests session to send it with (e.g. one sending from
    a loopback address of its own: tests/e2e/loopback.py)."""
    send = (session or requests).request
    url = settings.gateway_url + path
    hdrs = dict(headers or {})
    if trader is not None:
        hdrs["X-MBX-APIKEY"] = trader.api_key
        payload = signed(trader, params or {})
    else:
        payload = urlencode(params or {})
    if body:
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        return send(method, url, data=payload, headers=hdrs, timeout=15)
    return send(method, f"{url}?{payload}" if payload else url, headers=hdrs, timeout=15)


def eventually(probe, timeout_s: float = 10.0, interval_s: float = 0.1):
    """``probe()`` once it returns something truthy (market data and fills
    reach their stores asynchronously); fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, "nothing came within the time allowed"
        time.sleep(interval_s)


# ------------------------------------------------------------ prices
# (here, not in conftest.py: `from conftest import` is ambiguous in the full
# suite, where another directory's conftest may be the module of that name)

# BTC-USDT: the demo book leaves a wide spread (29,990 / 30,010) where only
# this test's own orders meet; ETH-USDT may carry other tests' busy books.
MARKET, SYMBOL, BINANCE = "BTC-USDT", "BTC/USDT", "BTCUSDT"
TICK = Decimal("0.01")


def quiet_price(settings, market: str = MARKET) -> Decimal:
    """A price strictly inside the book's spread, near the reference price
    (native_testkit.quiet_price on this market's tick)."""
    return native_testkit.quiet_price(settings, market, TICK)


def far_bid(settings, market: str) -> Decimal:
    """A buy price 10 % under the reference: rests, nobody sells into it."""
    with rpc_proxy(settings) as rpc:
        book = rpc.matching.get_depth(market, 1)
    # A fresh stack's ETH-USDT has neither a reference price nor orders.
    reference = Decimal(book["reference_price"] or (book["buy"] and book["buy"][0][0])
                        or (book["sell"] and book["sell"][0][0]) or "2000")
    return (reference * Decimal("0.9")).quantize(TICK)


# ------------------------------------------------------------ weights

HEADER = "X-MBX-USED-WEIGHT-1M"


def charged_weight(settings, path: str, params: dict, headers=None) -> int:
    """The weight the IP was charged for one GET of ``path``, both requests
    inside one minute's window (the gateway's windows are ``floor(now / 60)``
    on this machine's clock). A window turning between them is measured again,
    at most 3 times: from a fresh address it would show the read's weight less
    the ping's (2 - 1), which session 17's CI (stop 28) took for the read's charge."""
    session = session_from(own_address())
    for _ in range(3):
        window = int(time.time() // 60)
        before = session.get(settings.gateway_url + "/api/v3/ping", timeout=15)
        assert before.status_code == 200, before.text
        time.sleep(1.2)
        read = session.get(settings.gateway_url + path, params=params, headers=headers,
                           timeout=30)
        assert read.status_code == 200, read.text
        if int(time.time() // 60) == window:
            return int(read.headers[HEADER]) - int(before.headers[HEADER])
    raise AssertionError("a minute's window turned on every attempt")


# ------------------------------------------------------------ aggregate trades

def agg_trades(settings, **params) -> list[dict]:
    """GET /api/v3/aggTrades on BTCUSDT with ``params``; must answer 200."""
    response = raw(settings, "GET", "/api/v3/aggTrades", params={"symbol": BINANCE, **params})
    assert response.status_code == 200, response.text
    return response.json()


def crossed_trades(gateway_url, maker, taker, settings, count: int) -> list[tuple[int, int]]:
    """``count`` trades at a quiet price, one taker order each: [(aggregate
    trade id, time ms)], oldest first, once /aggTrades shows them all (the
    recent page, no startTime)."""
    ex_maker = binance_local(gateway_url, maker.api_key, maker.secret)
    ex_taker = binance_local(gateway_url, taker.api_key, taker.secret)
    price = float(quiet_price(settings))
    ex_maker.create_order(SYMBOL, "limit", "sell", 0.001 * count, price)
    fills = []
    for _ in range(count):
        bought = ex_taker.create_order(SYMBOL, "limit", "buy", 0.001, price,
                                       {"timeInForce": "IOC"})
        assert bought["status"] == "closed" and len(bought["trades"]) == 1
        fills.append(int(bought["trades"][0]["id"]))

    def shown():
        found = [t for t in agg_trades(settings, limit=1000) if t["a"] in fills]
        return found if len(found) == len(fills) else None
    return [(t["a"], t["T"]) for t in eventually(shown)]
