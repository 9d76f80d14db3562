"""Fresh traders with funds and API keys for the /api/v3 e2e tests, and
ccxt / python-binance clients pointed at the running gateway
(../shared/BINANCE_SUBSET.md sections 1 and 5).

Everything goes through public interfaces of the running (demo) stack:
users.sign_up, the password grant, users.create_api_key, and
wallets.credit_deposit as the chain watcher would. Usernames are unique per
run; the demo traders are never touched.
"""
from __future__ import annotations

import hashlib
import random
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode, urlparse

import ccxt
import requests
from nameko.standalone.rpc import ClusterRpcProxy

PASSWORD = "e2e-Password-local-dev-only-1"
RPC_TIMEOUT = 60


@dataclass
class Trader:
    username: str
    user_id: str
    token: str
    api_key: str
    secret: str


def rpc_proxy(settings):
    return ClusterRpcProxy(settings.nameko_config(), timeout=RPC_TIMEOUT)


def access_token(settings, username: str) -> str:
    from services.common.identity import backend_openid
    return backend_openid(settings).token(username, PASSWORD)["access_token"]


def new_trader(settings, funds: dict | None = None, permissions=("read", "trade"),
               ip_allowlist=None, prefix="gw") -> Trader:
    """A signed-up trader with one API key and the given deposits credited."""
    username = f"{prefix}-{uuid.uuid4().hex[:10]}"
    with rpc_proxy(settings) as rpc:
        signup = rpc.users.sign_up({"username": username, "email": f"{username}@example.test",
                                    "password": PASSWORD, "first_name": "Gateway",
                                    "last_name": "Tester"})
        user_id = signup["user_id"]
        token = access_token(settings, username)
        request = {"label": "e2e", "permissions": list(permissions)}
        if ip_allowlist:
            request["ip_allowlist"] = list(ip_allowlist)
        key = rpc.users.create_api_key(token, request)
        for asset, amount in (funds or {}).items():
            credit(rpc, user_id, asset, amount)
    return Trader(username, user_id, token, key["api_key"], key["secret"])


def credit(rpc, user_id: str, asset: str, amount: str) -> None:
    address = rpc.wallets.deposit_address(user_id, asset)["address"]
    txid = "0x" + secrets.token_hex(32) if asset != "BTC" else secrets.token_hex(32)
    rpc.wallets.credit_deposit(asset, address, amount, txid, 100)


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
    client.API_URL = base_url.rstrip('/') + '/api'
    return client


def signed(trader: Trader, params: dict, secret: str | None = None) -> str:
    """A query string with timestamp, recvWindow and signature, as ccxt builds it."""
    query = urlencode({"timestamp": int(time.time() * 1000), "recvWindow": 10000, **params})
    signature = hmac.new((secret or trader.secret).encode(), query.encode(),
                         hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}"


def raw(settings, method: str, path: str, trader: Trader | None = None, params=None,
        body: bool = False, headers=None):
    """A hand-signed request (for what the SDKs cannot be made to send)."""
    url = settings.gateway_url + path
    hdrs = dict(headers or {})
    if trader is not None:
        hdrs["X-MBX-APIKEY"] = trader.api_key
        payload = signed(trader, params or {})
    else:
        payload = urlencode(params or {})
    if body:
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        return requests.request(method, url, data=payload, headers=hdrs, timeout=15)
    return requests.request(method, f"{url}?{payload}" if payload else url, headers=hdrs,
                            timeout=15)


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
    """A price strictly inside the book's spread, near the reference price,
    so a maker order there is crossed only by this test's own taker (other
    tests' resting orders sit outside it) and stays within the price band."""
    with rpc_proxy(settings) as rpc:
        book = rpc.matching.get_depth(market, 1)
    bid = Decimal(book["buy"][0][0]) if book["buy"] else None
    ask = Decimal(book["sell"][0][0]) if book["sell"] else None
    reference = Decimal(book["reference_price"] or "2000")
    low = bid + TICK if bid is not None else reference * Decimal("0.97")
    high = ask - TICK if ask is not None else reference * Decimal("1.03")
    low, high = max(low, reference * Decimal("0.97")), min(high, reference * Decimal("1.03"))
    assert low < high, f"no room in the spread of {market}: {book}"
    ticks = int((high - low) / TICK)
    return (low + TICK * random.randint(1, max(1, ticks - 1))).quantize(TICK)


def far_bid(settings, market: str) -> Decimal:
    """A buy price 10 % under the reference: rests, nobody sells into it."""
    with rpc_proxy(settings) as rpc:
        book = rpc.matching.get_depth(market, 1)
    # A fresh stack's ETH-USDT has neither a reference price nor orders.
    reference = Decimal(book["reference_price"] or (book["buy"] and book["buy"][0][0])
                        or (book["sell"] and book["sell"][0][0]) or "2000")
    return (reference * Decimal("0.9")).quantize(TICK)
