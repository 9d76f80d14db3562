"""The Binance-compatible spot subset under ``/api/v3`` (../shared/BINANCE_SUBSET.md).

Unmodified ccxt (``binance`` class) and python-binance trade through it by
changing only the base URL. Symbols are Binance's (``BTCUSDT``), numbers are
decimal strings with 8 decimals, times epoch ms, errors ``{"code", "msg"}``.

Where each answer comes from:

* markets: ``gateway/markets.py`` (the market registry's catalogue);
* depth and book tickers: the matching engine itself (``matching.get_depth``,
  the freshest book; marketdata's copy trails it by the event pipeline and
  is unavailable until its first snapshot);
* trades (``trades``, ``historicalTrades``, ``aggTrades``), klines (and
  ``uiKlines``, the same), 24 h and rolling window (``ticker``) tickers and
  the average price: marketdata (Cassandra + Memcached); the 24 h ticker's
  bid/ask from the engine's book;
* orders: the orders service; balances: wallets; a user's fills: marketdata,
  with their commissions from wallets (``gateway/fees.py``: in ``myTrades``
  what the ledger charged, or for a fill not settled yet the user's rate,
  their fee tier's or the market's; in FULL ``fills`` the rate:
  ``fills_of``); ``/sapi/v1/asset/tradeFee`` (the one ``/sapi`` read, for
  ccxt's ``fetch_trading_fee(s)`` and python-binance's ``get_trade_fee``)
  and ``account/commission``: the user's rates from wallets;
* ``rateLimit/order`` (the caller's new-order counts): the rate limiter's
  counters in Memcached (``gateway/ratelimit.py``), the ones it refuses
  orders on, per ORDERS limit of exchangeInfo's ``rateLimits``.

An order is accepted (durably, funds held) before the engine matches it,
and its fills arrive asynchronously. For ``newOrderRespType`` RESULT and FULL
(FULL is the default for LIMIT and MARKET, as on Binance) the gateway polls
the order (``orders.get_order``, and ``matching.get_engine_order`` for one
that rests) until it is final or resting with its fills recorded, at most
``EXCHANGE_GATEWAY_ORDER_WAIT_MS``; FULL then reads the fills from
marketdata within the same budget. An answer cut by the budget shows the
order as it stands (``NEW``): query it for the rest. ACK answers at once.
Cancels likewise wait for ``CANCELED``. A waiting request holds no pooled RPC
proxy while it sleeps (``per_call``).

Differences from Binance, on purpose: trades are not aggregated (each
aggTrade is one trade: ``a = f = l``); klines come in marketdata's intervals
(1m 5m 15m 30m 1h 4h 1d 1w; others -1120), without empty buckets (``limit``
still counts klines: ``_candles``), and their
taker-buy volumes are "0" (not recorded); ``uiKlines`` are the klines
themselves; a ``timeZone`` is served when the stored candles make its
klines exactly (every offset in quarter hours up to 1d klines, and 1w
ones; an offset like "05:07" for 1m..4h only), else -1100, never UTC klines
for another zone (gateway/klines.py); a ticker's ``prevClosePrice`` is its
open and ``firstId``/``lastId`` are -1 (``ticker/24hr`` and ``ticker``);
``avgPrice`` averages the trades of the 1m candles opening at or after
now - 5 min floored (5 to 6 minutes); a MARKET SELL by ``quoteOrderQty`` is refused
(-1013, the engine sells by quantity); a MARKET order takes ``timeInForce``
IOC or FOK (Binance takes none; GTC is its -1106 here too); ``recvWindow`` is whole
milliseconds (Binance also takes 3 decimals, for microseconds: -1100 here,
gateway/auth.py); ``historicalTrades`` (MARKET_DATA: a valid key, no signature;
``auth.identify_key``) reads ``fromId`` as ``aggTrades`` does (below) and
ignores ``startTime``/``endTime`` as Binance does, and a refused key is not
audited (users audits signed requests only);
``aggTrades``' ``startTime``/``endTime`` are at most an hour apart
(-1127; Binance dropped that limit); ``account``'s ``makerCommission`` and
``takerCommission`` are 0, without ``commissionRates`` (rates are per market
here: ``account/commission``, ``/sapi/v1/asset/tradeFee``); the order rate
limits count an account's orders placed through the gateway (``rateLimit/order``'s
``count``; a refused one is given back and a first fill takes one off, as
on Binance: gateway/ratelimit.py), where Binance counts every order of the
account. The paging
reads (``klines``/``uiKlines``, ``aggTrades`` from ``startTime`` or ``fromId``,
``historicalTrades`` from ``fromId``, ``myTrades``; ``allOrders``) are
charged their Binance weight (2, 4, 25, 20; 20)
per call they made to marketdata (orders), not once: one request can make up
to 12, 33 (111 from ``fromId``) and 16 (10) calls (``ratelimit.Metered``);
the extra weight is charged after the answer, so the next request over the
limit is refused. ``aggTrades`` ``fromId`` is a trade number (numbers are 1,
2, 3, ... per market; 0 reads from the first): located with the candles'
trade counts (``_locate_trade``); with ``startTime``/``endTime`` too it is
-1128 (Binance does not define the combination). Of a minute holding more
than 4000 trades before ``fromId`` the answer can be empty.

``/myTrades`` pages marketdata's fills of all markets (``_user_fills``): of
a millisecond holding more than 1000 fills of one user (one order sweeping
over 1000 orders) only 1000 can be read, and at most ``USER_FILL_CALLS``
calls are made per request (an answer cut by them is short, even empty,
but never has a gap).
A ``newClientOrderId`` is unique among the user's open orders, as on
Binance (orders' ``reuse_client_order_id``): reusing one while its order is
open is -2010 "Duplicate order sent.", and once that order has ended the id
places a new order (a query or cancel by ``origClientOrderId`` names the open
order, else the latest). The native API keeps a client order id for good.
"""
from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import string
import time
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal

import eventlet
from flask import Blueprint, copy_current_request_context, current_app, g, jsonify

from gateway import batcher, fees, klines as zoned, ratelimit
from gateway.auth import (READ, TRADE, authenticate, bad_param, empty_param, identify_key,
                          missing_param, params)
from gateway.errors import (MSG_UNKNOWN_ORDER_CANCEL, MSG_UNKNOWN_ORDER_QUERY, TABLE,
                            ApiError, from_service_error)
from gateway.markets import Market, catalogue, filter_failure, fmt
from gateway.rpc import now_ms
from services.common import grammar
from services.common.errors import InvalidInput, code_of
from services.marketdata.candles import INTERVALS as MARKETDATA_INTERVALS
from services.marketdata.candles import DAY as DAY_MS
from services.marketdata.candles import MINUTE, floor_to
from services.marketdata.schemas import CANDLES_MAX_LIMIT, MAX_TIME_MS, MIN_TIME_MS
from services.marketdata.ticker import change_percent
from services.matching.verdict import limit_price_rejection

log = logging.getLogger(__name__)
blueprint = Blueprint("binance", __name__)
ratelimit.install(blueprint)
# The one /sapi/v1 read bots make of a spot account: its trade fees (ccxt's
# fetch_trading_fee(s), python-binance's get_trade_fee).
sapi = Blueprint("binance_sapi", __name__)
ratelimit.install(sapi)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
FINAL = {"filled", "cancelled", "expired", "rejected"}
OPEN = {"new", "partially_filled", "pending"}
INTERVALS = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")   # marketdata's
INTERVALS_MS = {name: MARKETDATA_INTERVALS[name].ms for name in INTERVALS}
RESP_TYPES = ("ACK", "RESULT", "FULL")
STP_MODES = ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH")
MAX_HISTORY_PAGES = 10
# /klines (_candles): calls to marketdata per request, buckets per call after
# the first (1000 x 1m = 16.7 h), the coarser candles that skip empty stretches.
KLINE_CALLS, KLINE_PAGE_BUCKETS, KLINE_PROBE_BUCKETS = 12, 1000, 1500
# /aggTrades from startTime (_first_trades): pages of 1000 trades, halvings.
# /myTrades (_user_fills): calls to marketdata; the hours one call reads at most
# (services/marketdata/storage.py MAX_TRADE_BUCKETS_PER_READ).
USER_FILL_CALLS, USER_FILL_HOURS = 16, 24
AGG_PAGES, AGG_HALVINGS = 4, 8
# /aggTrades from fromId (_trades_from_id): the candles that locate a trade
# number, and the rounds of locating and reading per request.
FROM_ID_LEVELS = (("1w", 604_800_000), ("1d", 86_400_000), ("1h", 3_600_000), ("1m", 60_000))
FROM_ID_ROUNDS = 3
AVG_PRICE_MINS = 5                       # /avgPrice: Binance's spot window
BINANCE_PERCENT_PLACES = 3               # ticker/24hr priceChangePercent ("-95.960")
# /myTrades and /allOrders: the longest startTime..endTime window (Binance's).
HISTORY_WINDOW_MS = 86_400_000
KLINES_EARLIEST_MS = MIN_TIME_MS          # marketdata's earliest time (2000-01-01)
COARSE_INTERVALS = (("1w", 604_800_000), ("1d", 86_400_000), ("1h", 3_600_000))
POLL_S = (0.005, 0.01, 0.02, 0.03, 0.05)
# Engine refusals that Binance reports as an order that expired unfilled.
EXPIRED_REJECTIONS = {"FOK_NOT_FILLABLE", "NO_LIQUIDITY"}


def rpc():
    """One pooled proxy for the request's calls (views that do not wait)."""
    from gateway.app import rpc as lease
    return lease()


class _PerCall:
    """``services.orders.get_order(...)`` leasing a pooled proxy for each call
    only: a view that sleeps between calls (waiting for the engine) holds no
    proxy meanwhile, so waiting orders cannot use up the pool."""

    def __init__(self, service: str | None = None):
        self._service = service

    def __getattr__(self, name: str):
        if self._service is None:
            return _PerCall(name)
        service = self._service

        def call(*args, **kwargs):
            with rpc() as services:
                return getattr(getattr(services, service), name)(*args, **kwargs)
        return call


def per_call():
    """``with per_call() as services:`` for the views that wait."""
    return contextlib.nullcontext(_PerCall())


def ok(body):
    return jsonify(body)


# ================================================================ parameters

def param(name: str, required: bool = False):
    """The parameter's text; None when not sent. Sent empty: a mandatory one
    is -1102 (Binance's "was not sent, was empty/null"), any other -1105
    (auth.empty_param)."""
    value = params().get(name)
    if value is None:
        if required:
            raise missing_param(name)
        return None
    if value == "":
        raise missing_param(name) if required else empty_param(name)
    return value


def decimal_param(name: str, required: bool = False) -> Decimal | None:
    value = param(name, required)
    if value is None:
        return None
    try:
        return grammar.decimal(value, name)
    except InvalidInput:
        raise bad_param(name, f"Illegal characters found in parameter '{name}'; legal range "
                              "is '^([0-9]{1,20})(\\.[0-9]{1,18})?$'.") from None


def int_param(name: str, required: bool = False, minimum: int = 0,
              maximum: int = grammar.MAX_INT) -> int | None:
    value = param(name, required)
    if value is None:
        return None
    try:
        return grammar.integer(value, name, minimum=minimum, maximum=maximum)
    except InvalidInput:
        raise bad_param(name, f"Illegal characters found in parameter '{name}'; legal range "
                              f"is {minimum}..{maximum}.") from None


def bool_param(name: str) -> bool | None:
    """Binance's BOOLEAN: ``true`` or ``false``, in any case (python-binance
    sends ``str(True)``)."""
    value = param(name)
    if value is None:
        return None
    if value.lower() not in ("true", "false"):
        raise bad_param(name, f"Illegal characters found in parameter '{name}'; legal values "
                              "are true and false.")
    return value.lower() == "true"


def limit_param(default: int, maximum: int) -> int:
    value = int_param("limit", minimum=1, maximum=maximum)
    return default if value is None else value


def choice_param(name: str, allowed, code: int, message: str, required: bool = False):
    value = param(name, required)
    if value is not None and value not in allowed:
        raise ApiError(400, "INVALID_CHOICE", message, code, message, field=name)
    return value


def market_param(required: bool = True) -> Market | None:
    symbol = param("symbol", required)
    return None if symbol is None else catalogue().by_binance(symbol)


def client_id_param(name: str) -> str | None:
    """A client order id parameter (``newClientOrderId``, a cancel's own id):
    Binance's grammar, else -1100."""
    value = param(name)
    if value is not None and not grammar.CLIENT_ORDER_ID.fullmatch(value):
        raise bad_param(name)
    return value


CANCEL_ID_ALPHABET = string.ascii_letters + string.digits


def cancel_client_id(name: str | None = "newClientOrderId") -> str:
    """The id of a cancel request, as Binance answers it in ``clientOrderId``
    (the cancelled order's own id goes in ``origClientOrderId``): the one the
    request gives in ``name``, else (or ``name`` None: a request that names
    none, ``DELETE /openOrders``) one generated like Binance's (22 letters
    and digits)."""
    given = client_id_param(name) if name else None
    return given or "".join(secrets.choice(CANCEL_ID_ALPHABET) for _ in range(22))


def time_window(longest_ms: int | None = None) -> tuple[int | None, int | None]:
    """``startTime`` and ``endTime`` (each optional, ms) as Binance checks
    them: -1023 when the start is after the end; -1127 when both are sent
    and more than ``longest_ms`` apart (Binance's 24 hours of ``myTrades``
    and ``allOrders``). One sent alone is not bounded: Binance documents
    ``symbol + startTime`` (ccxt's ``since`` without ``until``) as a
    window from there on."""
    start, end = int_param("startTime"), int_param("endTime")
    if start is not None and end is not None:
        if start > end:
            raise bad_param("startTime", "Start time is greater than end time.", -1023)
        if longest_ms is not None and end - start > longest_ms:
            raise bad_param("endTime", f"More than {longest_ms // 3_600_000} hours between "
                                       "startTime and endTime.", -1127)
    return start, end


def readable(start: int | None, stop: int | None) -> tuple[int | None, int | None] | None:
    """``[start, stop)`` cut to the times marketdata keeps (``MIN_TIME_MS`` to
    ``MAX_TIME_MS``, a contract of its reads: it refuses any other time), or
    None when nothing can lie in it. Binance answers a window before its first
    trade or far ahead with what is in it (often nothing): ccxt's
    ``fetch_my_trades(symbol, since=0)``, a bot's "my whole history", reads
    from the first time there is (tests/e2e/gateway/test_partner_time_bounds.py)."""
    if start is not None:
        start = max(start, MIN_TIME_MS)
    if stop is not None:
        stop = min(stop, MAX_TIME_MS - 1)           # marketdata's end is below MAX_TIME_MS
    if (start is not None and start >= MAX_TIME_MS - 1) or \
            (stop is not None and stop <= MIN_TIME_MS) or \
            (start is not None and stop is not None and start >= stop):
        return None
    return start, stop


def epoch_ms(iso: str | None) -> int:
    if not iso:
        return 0
    return (datetime.fromisoformat(iso) - EPOCH) // timedelta(milliseconds=1)


def trade_number(trade_id: str) -> int:
    """``BTC-USDT-41`` -> 41 (trades are numbered per market)."""
    tail = str(trade_id).rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def book_ticker_weight() -> int:
    return 2 if param("symbol") else 4


# ================================================================ public

@blueprint.get("/ping")
def ping():
    return ok({})


@blueprint.get("/time")
def server_time():
    return ok({"serverTime": now_ms()})


@blueprint.get("/exchangeInfo")
@ratelimit.weight(20)
def exchange_info():
    markets = catalogue().markets()
    wanted = _symbols_filter()
    if wanted is not None:
        known = {m.binance for m in markets}
        for symbol in wanted:
            if symbol not in known:
                catalogue().by_binance(symbol)   # -1121
        markets = [m for m in markets if m.binance in wanted]
    limits = ratelimit.limiter().limits
    return ok({"timezone": "UTC", "serverTime": now_ms(),
               "rateLimits": limits.binance_rate_limits(), "exchangeFilters": [],
               "symbols": [m.exchange_info() for m in markets]})


def _symbols_filter() -> list[str] | None:
    """``symbol=X`` or ``symbols=["X","Y"]`` (compact JSON), else None."""
    single, many = param("symbol"), param("symbols")
    if single is not None and many is not None:
        raise ApiError(400, "INVALID_INPUT", "give symbol or symbols", -1106,
                       "Parameter 'symbols' sent when not required.")
    if single is not None:
        return [single]
    if many is None:
        return None
    try:
        wanted = json.loads(many)
    except ValueError:
        wanted = None
    if not isinstance(wanted, list) or not wanted or len(wanted) > 100 or \
            not all(isinstance(s, str) for s in wanted):
        raise bad_param("symbols", "Invalid symbols.")
    return wanted


def _depth_weight() -> int:
    try:
        limit = int(param("limit") or 100)
    except ValueError:
        limit = 100
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


@blueprint.get("/depth")
@ratelimit.weight(_depth_weight)
def depth():
    market = market_param()
    limit = limit_param(100, 5000)
    with rpc() as services:
        book = services.matching.get_depth(market.symbol, min(limit, 1000))
    return ok({"lastUpdateId": book["seq"],
               "bids": [[fmt(p), fmt(q)] for p, q in book["buy"][:limit]],
               "asks": [[fmt(p), fmt(q)] for p, q in book["sell"][:limit]]})


@blueprint.get("/trades")
@ratelimit.weight(25)
def recent_trades():
    market = market_param()
    limit = limit_param(500, 1000)
    with rpc() as services:
        page = services.marketdata.get_trades(market.symbol, limit)
    return ok([_trade_object(t) for t in reversed(page["trades"])])


@blueprint.get("/historicalTrades")
@ratelimit.weight(25)
def historical_trades():
    """Binance's "old trade lookup": ``/trades``' answer, or with ``fromId``
    the trades numbered from it on (``_trades_from_id``, as ``aggTrades``
    reads them: marketdata keeps every trade, so any number is reachable).
    MARKET_DATA security: a valid key, no signature (``identify_key``).
    Binance takes no ``startTime``/``endTime`` here; ccxt's ``fetch_trades``
    with ``fetchTradesMethod: publicGetHistoricalTrades`` sends them all the
    same for a ``since``, and Binance ignores them: so does this."""
    identify_key()
    market = market_param()
    limit = limit_param(500, 1000)
    from_id = int_param("fromId")
    with rpc() as services:
        if from_id is None:
            trades = list(reversed(services.marketdata.get_trades(market.symbol, limit)["trades"]))
        else:
            with ratelimit.Metered(services, "marketdata") as metered:
                trades = _trades_from_id(metered, market.symbol, from_id, limit)
    return ok([_trade_object(t) for t in trades])


def _trade_object(t: dict) -> dict:
    """Binance's trade (``/trades``, ``/historicalTrades``)."""
    return {"id": trade_number(t["trade_id"]), "price": fmt(t["price"]),
            "qty": fmt(t["quantity"]), "quoteQty": fmt(t["quote_quantity"]),
            "time": t["executed_at"], "isBuyerMaker": t["taker_side"] == "sell",
            "isBestMatch": True}


@blueprint.get("/aggTrades")
@ratelimit.weight(4)
def aggregate_trades():
    market = market_param()
    limit = limit_param(500, 1000)
    from_id = int_param("fromId")
    start, end = int_param("startTime"), int_param("endTime")
    if from_id is not None and (start is not None or end is not None):
        raise ApiError(400, "INVALID_INPUT", "fromId cannot be combined with startTime/endTime",
                       -1128, "Combination of optional parameters invalid.")
    if start is not None and end is None:
        end = start + 3_600_000
    if start is not None and end is not None and not 0 <= end - start <= 3_600_000:
        raise bad_param("endTime", "startTime and endTime must be at most an hour apart.", -1127)
    window = readable(start, None if end is None else end + 1)
    if window is None:
        return ok([])
    start, stop = window
    with rpc() as services:
        if from_id is not None:
            with ratelimit.Metered(services, "marketdata") as metered:
                trades = _trades_from_id(metered, market.symbol, from_id, limit)
        elif start is None:
            page = services.marketdata.get_trades(market.symbol, limit, None, stop)
            trades = list(reversed(page["trades"]))[-limit:]
        else:
            with ratelimit.Metered(services, "marketdata") as metered:
                trades = _first_trades(metered, market.symbol, start, stop, limit)
    out = []
    for t in trades:
        number = trade_number(t["trade_id"])
        out.append({"a": number, "p": fmt(t["price"]), "q": fmt(t["quantity"]),
                    "f": number, "l": number, "T": t["executed_at"],
                    "m": t["taker_side"] == "sell", "M": True})
    return ok(out)


def _first_trades(services, symbol: str, start: int, stop: int, limit: int,
                  cut: bool = True) -> list:
    """The first trades of ``[start, stop)``, oldest first: at most ``limit``,
    and never a millisecond cut in two (unless it alone holds more than
    ``limit``), so that the next page from the last one's time + 1 misses
    nothing.

    marketdata pages trades newest first: asked for ``limit`` trades of the
    hour it answered the hour's LAST ones, and a bot paging with ``since``
    (ccxt's fetch_trades) skipped the others (tests/e2e/gateway/
    test_partner_trades.py). The window is first cut down with the 1m
    candles' trade counts to the minutes holding the first ``limit`` trades,
    then read whole (``next_end``), at most ``AGG_PAGES`` pages of 1000; a
    window holding more than that is halved (at most ``AGG_HALVINGS``
    times, keeping what was read of the shorter window and reading on from
    there): a shorter answer, never one with a gap. ``cut=False``: every
    trade read (whole minutes, at least the first ``limit`` when they fit in
    the pages), for a caller that picks by trade number."""
    counted = services.marketdata.get_candles(symbol, "1m", start, stop, 61)["candles"]
    total = 0
    for row in counted:
        total += row[7]
        if total >= limit:
            stop = min(stop, row[0] + 60_000)
            break
    found: list = []                                             # newest first
    end = stop
    for _ in range(AGG_HALVINGS):
        for _ in range(AGG_PAGES):
            page = services.marketdata.get_trades(symbol, 1000, start, end)
            found.extend(page["trades"])
            end = page.get("next_end")
            if end is None:
                break
        if end is None:
            break
        # Halved: what was read of [end, stop) before the new stop stays
        # (whole milliseconds: marketdata never splits one), the reading
        # goes on below it.
        stop = start + max((stop - start) // 2, 1)
        found = [t for t in found if t["executed_at"] < stop]
        end = min(end, stop)
    else:
        return []                           # unreachable in practice: no partial answer
    found.reverse()                                              # oldest first
    if cut and len(found) > limit:
        cut_at = found[limit]["executed_at"]
        whole = [t for t in found[:limit] if t["executed_at"] != cut_at]
        found = whole or found[:limit]
    return found


def _locate_trade(services, symbol: str, trade_no: int) -> tuple[int, int] | None:
    """(open time of the minute holding trade number ``trade_no``, trades of
    the market before that minute), or None when the market has no trade
    ``trade_no`` yet. Trade numbers are 1, 2, 3, ... per market in the
    engine's order (services/matching/engine.py trade_seq), so the candles'
    trade counts, summed oldest first, find its week, day, hour and minute:
    four marketdata calls."""
    before, start, stop = 0, KLINES_EARLIEST_MS, now_ms() + 60_000
    for interval, span in FROM_ID_LEVELS:
        rows = services.marketdata.get_candles(symbol, interval, start, stop,
                                               KLINE_PROBE_BUCKETS)["candles"]
        for row in rows:
            if before + row[7] >= trade_no:
                start, stop = row[0], row[0] + span
                break
            before += row[7]
        else:
            return None
    return start, before


def _trades_from_id(services, symbol: str, from_id: int, limit: int) -> list:
    """Trades numbered ``from_id`` (0 = the first) and on, oldest first, at
    most ``limit``, with no number missing: the answer stops before the
    first gap (a trade recorded out of time order, or a read cut short), so
    paging on from the last number + 1 never skips one. A round locates the
    next wanted number (``_locate_trade``) and reads from its minute
    (``_first_trades``, at most 4000 trades); a read holding only trades
    before it goes on after its last millisecond. At most ``FROM_ID_ROUNDS``
    rounds."""
    out: list = []
    wanted, start, before = max(from_id, 1), None, 0
    for _ in range(FROM_ID_ROUNDS):
        if start is None:
            located = _locate_trade(services, symbol, wanted)
            if located is None:
                break
            start, before = located
        need = (wanted - before - 1) + (limit - len(out))
        page = _first_trades(services, symbol, start, start + 3_600_000,
                             min(need, 1000 * AGG_PAGES), cut=False)
        numbered = sorted(((trade_number(t["trade_id"]), t) for t in page),
                          key=lambda nt: nt[0])
        added = 0
        for number, t in numbered:
            if number < wanted:
                continue
            if number != wanted or len(out) == limit:
                break
            out.append(t)
            wanted, added = wanted + 1, added + 1
        if len(out) == limit:
            break
        if added:
            start = None                    # the rest lies after this read: locate it
        elif numbered and numbered[-1][0] < wanted:
            # the read (whole milliseconds: marketdata never splits one)
            # stopped short of it: on from the millisecond after
            start, before = page[-1]["executed_at"] + 1, numbered[-1][0]
        else:
            break
    return out


@blueprint.get("/klines")
@ratelimit.weight(2)
def klines():
    market = market_param()
    interval = param("interval", required=True)
    if interval not in INTERVALS:
        raise ApiError(400, "INVALID_INTERVAL", "Invalid interval.", -1120, "Invalid interval.",
                       field="interval")
    offset, fetch = _time_zone(interval)
    limit = limit_param(500, 1000)
    start, end = time_window()
    with rpc() as services, ratelimit.Metered(services, "marketdata") as metered:
        if fetch == interval:
            rows, step = _candles(metered, market.symbol, interval, start, end, limit)
        else:
            rows, step = _zoned_candles(metered, market.symbol, interval, fetch, offset,
                                        start, end, limit)
    return ok([[row[0], fmt(row[1]), fmt(row[2]), fmt(row[3]), fmt(row[4]), fmt(row[5]),
                row[0] + step - 1, fmt(row[6]), row[7], fmt(0), fmt(0), "0"]
               for row in rows])


# Binance's uiKlines are klines "modified for presentation"; it documents no
# modification a client could rely on, and here they are the klines
# themselves (same parameters, weight, answer).
blueprint.add_url_rule("/uiKlines", "ui_klines", klines, methods=["GET"])


def _time_zone(interval: str) -> tuple[int, str]:
    """``timeZone`` (gateway/klines.py): (offset ms east of UTC, the stored
    interval its klines are merged from). Absent: UTC. Not one of Binance's
    forms or outside [-12:00, +14:00]: -1100; an offset whose klines of
    ``interval`` the stored candles cannot make exactly: -1100 naming why
    (never klines of another zone)."""
    text = param("timeZone")
    if text is None:
        return 0, interval
    offset = zoned.zone_offset_ms(text)
    if offset is None:
        raise bad_param("timeZone", "Illegal characters found in parameter 'timeZone'; legal "
                                    "range is [-12:00, +14:00], e.g. '+08:00', '-1:00', '8'.")
    fetch = zoned.fetch_interval(interval, offset)
    if fetch is None:
        raise bad_param("timeZone", f"timeZone '{text}' is not supported for interval "
                                    f"{interval}: its klines cannot be made exactly from the "
                                    "stored candles; use an offset in quarter hours.")
    return offset, fetch


def _zoned_candles(services, symbol: str, interval: str, fetch: str, offset: int,
                   start: int | None, end: int | None, limit: int) -> tuple[list, int]:
    """``_candles`` for klines in a zone that are not UTC ones: whole klines
    merged from ``fetch`` candles (gateway/klines.py), read by pages of whole
    klines (at most ``KLINE_PAGE_BUCKETS`` candles), skipping empty
    stretches as ``_candles`` does, within the same ``KLINE_CALLS``. The
    klines opening at or after ``startTime``, or the last ones opening at or
    before ``endTime`` (or now), as Binance; never a kline read in part,
    except the current one (as Binance shows it)."""
    span, step = INTERVALS_MS[interval], INTERVALS_MS[fetch]
    window = readable(start, now_ms() + 1 if end is None else end + 1)
    if window is None:
        return [], span
    start, stop = window
    page = max(1, KLINE_PAGE_BUCKETS * step // span) * span       # whole klines
    first_open = zoned.open_of(KLINES_EARLIEST_MS - 1, span, offset) + span
    last_end = min(zoned.open_of(stop - 1, span, offset) + span, MAX_TIME_MS - 1)
    calls = [0]

    def candles(iv, first, last, buckets):
        calls[0] += 1
        return services.marketdata.get_candles(symbol, iv, first, last, buckets)

    out: list = []
    if start is not None:
        cursor = zoned.open_of(start - 1, span, offset) + span     # opening at or after start
        while calls[0] < KLINE_CALLS and cursor < last_end:
            upto = min(cursor + page, last_end)
            out.extend(zoned.group(candles(fetch, cursor, upto, (upto - cursor) // step)
                                   ["candles"], span, offset))
            cursor = upto
            if len(out) >= limit or cursor >= last_end:
                break
            found = _next_traded(candles, fetch, cursor, last_end, calls)
            if found is None:
                break
            cursor = zoned.open_of(found, span, offset)
        return out[:limit], span
    stop_at = last_end
    while calls[0] < KLINE_CALLS and stop_at > first_open:
        since = max(stop_at - page, first_open)
        out[:0] = zoned.group(candles(fetch, since, stop_at, (stop_at - since) // step)
                              ["candles"], span, offset)
        stop_at = since
        if len(out) >= limit or stop_at <= first_open:
            break
        found = _previous_traded(candles, fetch, stop_at, calls)
        if found is None:
            break
        stop_at = zoned.open_of(found - 1, span, offset) + span
    return out[-limit:], span


def _candles(services, symbol: str, interval: str, start: int | None, end: int | None,
             limit: int) -> tuple[list, int]:
    """Up to ``limit`` klines: the first ones from ``startTime`` on, or else
    the last ones up to ``endTime`` (or now), as Binance counts them.

    marketdata's ``limit`` counts buckets of time and leaves the empty ones
    out, so one call over ``limit`` buckets can return fewer klines, or none,
    while later (earlier) ones exist: a bot paging with ``since`` (ccxt's
    fetch_ohlcv, python-binance's get_historical_klines) took a short answer
    for the end of the data and stopped (tests/e2e/gateway/
    test_partner_klines.py). The first call asks for ``limit`` buckets as
    before (a busy market: one call). While klines are missing:

    * from ``startTime`` on, an empty stretch ahead is skipped with the
      coarser candles (the first week, then day, then hour with a trade:
      ``_next_traded``), then the next ``KLINE_PAGE_BUCKETS`` buckets are
      read; a ``startTime`` before marketdata's earliest time (python-binance
      asks for ``startTime=0`` to find a market's first kline) starts there;
    * up to ``endTime``, likewise backwards (``_previous_traded``), the
      previous ``KLINE_PAGE_BUCKETS`` buckets each time.

    At most ``KLINE_CALLS`` calls to marketdata in all: an answer cut by that
    budget is short although more klines exist."""
    window = readable(start, now_ms() + 1 if end is None else end + 1)
    if window is None:
        return [], 0                                      # nothing can be there (yet)
    start, stop = window
    rows: list = []
    calls = [0]

    def candles(iv, first, last, buckets):
        calls[0] += 1
        return services.marketdata.get_candles(symbol, iv, first, last, buckets)

    step = 0
    buckets, cursor = limit, start
    while calls[0] < KLINE_CALLS:
        if start is not None:
            page = candles(interval, cursor, stop, buckets)
            rows.extend(page["candles"])
            step, cursor = page["interval_ms"], page["end"]
            if len(rows) >= limit or cursor >= stop:
                break
            cursor = _next_traded(candles, interval, cursor, stop, calls)
            if cursor is None:
                break
        else:
            page = candles(interval, None, stop, buckets)
            rows[:0] = page["candles"]
            step, stop = page["interval_ms"], page["start"]
            if len(rows) >= limit or stop <= KLINES_EARLIEST_MS:
                break
            stop = _previous_traded(candles, interval, stop, calls)
            if stop is None:
                break
        buckets = KLINE_PAGE_BUCKETS
    return (rows[:limit] if start is not None else rows[-limit:]), step


def _coarser(interval: str) -> list[tuple[str, int]]:
    return [(c, span) for c, span in COARSE_INTERVALS
            if INTERVALS.index(c) > INTERVALS.index(interval)]


def _next_traded(candles, interval: str, cursor: int, stop: int, calls: list) -> int | None:
    """Where the next trade at or after ``cursor`` (and before ``stop``) may
    be: ``cursor`` moved on to the open of the first week, then day, then
    hour (those coarser than ``interval``) with a trade; None: no trade
    until ``stop``. A coarser candle holding ``cursor`` may have traded only
    before it: when the finer candles after ``cursor`` show nothing (1500 of
    them span more than one of the coarser), the search goes on after them
    one level up. 1500 weeks reach back from now to marketdata's earliest
    time."""
    levels, i = _coarser(interval), 0
    while i < len(levels) and calls[0] < KLINE_CALLS:
        coarse, span = levels[i]
        # marketdata answers the candles opening at or after its start: from
        # a span before, the one holding ``cursor`` comes too
        page = candles(coarse, max(cursor - span + 1, KLINES_EARLIEST_MS), stop,
                       KLINE_PROBE_BUCKETS)
        if page["candles"]:
            cursor, i = max(cursor, page["candles"][0][0]), i + 1
        elif page["end"] >= stop:
            return None
        else:                       # none in [cursor, end): on from there, coarser
            cursor, i = page["end"], max(i - 1, 0)
    return cursor


def _previous_traded(candles, interval: str, stop: int, calls: list) -> int | None:
    """``_next_traded`` backwards: ``stop`` moved back to the end of the last
    week, then day, then hour with a trade before it; None: no trade before
    ``stop``."""
    levels, i = _coarser(interval), 0
    while i < len(levels) and calls[0] < KLINE_CALLS:
        coarse, span = levels[i]
        page = candles(coarse, None, stop, KLINE_PROBE_BUCKETS)   # holding stop - 1 too
        if page["candles"]:
            stop, i = min(stop, page["candles"][-1][0] + span), i + 1
        elif page["start"] <= KLINES_EARLIEST_MS:
            return None
        else:                       # none in [start, stop): back from there, coarser
            stop, i = page["start"], max(i - 1, 0)
    return stop


@blueprint.get("/avgPrice")
@ratelimit.weight(2)
def avg_price():
    """Binance's "current average price": the volume-weighted average price
    of the last ``AVG_PRICE_MINS`` minutes' trades, from marketdata's 1m
    candles (quote volume / volume) of the minutes opening at or after
    ``now - 5 min`` floored to the minute (5 to 6 minutes of trades), on the
    market's tick grid (half-even). No trade in them: the last trade's price;
    none ever: 0. ``closeTime``: the last trade's time (0 without one)."""
    market = market_param()
    now = now_ms()
    start = (now - AVG_PRICE_MINS * 60_000) // 60_000 * 60_000
    with rpc() as services:
        rows = services.marketdata.get_candles(market.symbol, "1m", start, now + 1,
                                               AVG_PRICE_MINS + 1)["candles"]
        last = services.marketdata.get_trades(market.symbol, 1)["trades"]
    volume = sum((Decimal(row[5]) for row in rows), Decimal(0))
    if volume > 0:
        quote = sum((Decimal(row[6]) for row in rows), Decimal(0))
        price = (quote / volume).quantize(market.tick, rounding=ROUND_HALF_EVEN)
    else:
        price = Decimal(last[0]["price"]) if last else Decimal(0)
    return ok({"mins": AVG_PRICE_MINS, "price": fmt(price),
               "closeTime": last[0]["executed_at"] if last else 0})


def _ticker_weight() -> int:
    if param("symbol"):
        return 2
    many = param("symbols")
    if many:
        count = many.count(",") + 1
        return 2 if count <= 20 else 40 if count <= 100 else 80
    return 80


def _wanted_markets() -> tuple[list[Market], bool]:
    """The markets asked for, and whether a single object is wanted."""
    wanted = _symbols_filter()
    cat = catalogue()
    if wanted is None:
        return cat.markets(), False
    return [cat.by_binance(s) for s in wanted], param("symbol") is not None


@blueprint.get("/ticker/24hr")
@ratelimit.weight(_ticker_weight)
def ticker_24hr():
    markets, single = _wanted_markets()
    now = now_ms()
    with rpc() as services:
        tickers = {t["market"]: t for t in services.marketdata.get_tickers()}
        out = []
        for market in markets:
            ticker = tickers.get(market.symbol) or services.marketdata.get_ticker(market.symbol)
            book = services.matching.get_depth(market.symbol, 1)
            last = services.marketdata.get_trades(market.symbol, 1)["trades"] \
                if ticker.get("last") is not None else []
            out.append(_ticker(market, ticker, book, last[0] if last else None, now))
    return ok(out[0] if single else out)


WINDOW_SIZE = re.compile(r"([0-9]{1,2})([mhd])")
WINDOW_UNITS = {"m": (59, MINUTE), "h": (23, 60 * MINUTE), "d": (7, DAY_MS)}
ROLLING_TYPES = ("FULL", "MINI")


def _rolling_weight() -> int:
    """Binance's: 4 per symbol, 200 once more than 50."""
    many = param("symbols")
    if many and not param("symbol"):
        count = many.count(",") + 1
        return 200 if count > 50 else 4 * count
    return 4


def _window_ms() -> int:
    """``windowSize``: 1m..59m, 1h..23h, 1d..7d; default 1d; else -1100."""
    text = param("windowSize")
    if text is None:
        return DAY_MS
    found = WINDOW_SIZE.fullmatch(text)
    most, unit = WINDOW_UNITS[found.group(2)] if found else (0, 0)
    if found is None or not 1 <= int(found.group(1)) <= most:
        raise bad_param("windowSize", "Invalid windowSize; legal values are 1m to 59m, 1h to "
                                      "23h and 1d to 7d.")
    return int(found.group(1)) * unit


@blueprint.get("/ticker")
@ratelimit.weight(_rolling_weight)
def ticker_rolling():
    """Binance's rolling window statistics: as Binance documents them, the
    window opens on the minute holding ``now - windowSize`` (``openTime``)
    and closes now (``closeTime``): up to 59.999 s wider than asked (the 24 h
    ticker's window is the 1440 minutes ending with the current one: one
    minute fewer than ``windowSize=1d`` here). Exact over that window: the
    1m candles of a window up to 25 h, else the 1m candles of its partial
    first and last UTC days and the 1d candles between (at most 3 calls per
    symbol, ``_window_rows``). ``lastPrice`` of a window without trades: the
    last trade's price (0 if none ever), its other prices 0; ``firstId`` and
    ``lastId`` -1, as in ``ticker/24hr``."""
    if param("symbol") is None and param("symbols") is None:
        text = "Param 'symbol' or 'symbols' must be sent, but both were empty/null!"
        raise ApiError(400, "MISSING_PARAMETER", text, -1102, text, field="symbol")
    markets, single = _wanted_markets()
    window = _window_ms()
    full = choice_param("type", ROLLING_TYPES, -1100,
                        "Invalid type; legal values are FULL and MINI.") != "MINI"
    now = now_ms()
    opened = floor_to(now - window, MINUTE)
    out = []
    with rpc() as services:
        tickers = {t["market"]: t for t in services.marketdata.get_tickers()}
        for market in markets:
            rows = _window_rows(services, market.symbol, opened, now)
            last = (tickers.get(market.symbol) or {}).get("last")
            out.append(_rolling(market, zoned.merge(rows) if rows else None, last, opened,
                                now, full))
    return ok(out[0] if single else out)


def _window_rows(services, symbol: str, opened: int, now: int) -> list:
    """The candle rows covering ``[opened, now]`` exactly, oldest first."""
    rows: list = []
    for interval, first, last in zoned.window_parts(opened, now + 1, CANDLES_MAX_LIMIT):
        buckets = -(-(last - first) // INTERVALS_MS[interval])
        rows.extend(services.marketdata.get_candles(symbol, interval, first, last,
                                                    buckets)["candles"])
    return rows


def _rolling(market: Market, row: list | None, last, opened: int, now: int,
             full: bool) -> dict:
    """One symbol's ``/ticker`` object from the window's merged candle row."""
    if row is None:
        row = [opened, 0, 0, 0, Decimal(last or 0), Decimal(0), Decimal(0), 0]
        change, open_price = Decimal(0), Decimal(0)
    else:
        open_price = row[1]
        change = row[4] - open_price
    volume, quote_volume = row[5], row[6]
    body = {"symbol": market.binance}
    if full:
        average = (quote_volume / volume).quantize(market.tick) if volume else Decimal(0)
        percent = change_percent(change, open_price, BINANCE_PERCENT_PLACES) if open_price \
            else Decimal("0.000")
        body.update({"priceChange": fmt(change), "priceChangePercent": format(percent, "f"),
                     "weightedAvgPrice": fmt(average)})
    body.update({"openPrice": fmt(open_price), "highPrice": fmt(row[2]),
                 "lowPrice": fmt(row[3]), "lastPrice": fmt(row[4]), "volume": fmt(volume),
                 "quoteVolume": fmt(quote_volume), "openTime": opened, "closeTime": now,
                 "firstId": -1, "lastId": -1, "count": row[7]})
    return body


def _change_percent(t: dict) -> Decimal:
    """Binance's 3 decimals ("-95.960"), from marketdata's change and open by
    its rule (its own ``change_percent`` has 2); no trade in the window: 0."""
    if t["change"] is None or not Decimal(t["open"] or 0):
        return Decimal("0.000")
    return change_percent(Decimal(t["change"]), Decimal(t["open"]), BINANCE_PERCENT_PLACES)


def _ticker(market: Market, t: dict, book: dict, last_trade: dict | None, now: int) -> dict:
    volume, quote_volume = Decimal(t["volume"] or 0), Decimal(t["quote_volume"] or 0)
    average = (quote_volume / volume).quantize(market.tick) if volume else Decimal(0)
    bid = book["buy"][0] if book["buy"] else ["0", "0"]
    ask = book["sell"][0] if book["sell"] else ["0", "0"]
    return {"symbol": market.binance, "priceChange": fmt(t["change"] or 0),
            "priceChangePercent": format(_change_percent(t), "f"),
            "weightedAvgPrice": fmt(average), "prevClosePrice": fmt(t["open"] or 0),
            "lastPrice": fmt(t["last"] or 0),
            "lastQty": fmt(last_trade["quantity"] if last_trade else 0),
            "bidPrice": fmt(bid[0]), "bidQty": fmt(bid[1]),
            "askPrice": fmt(ask[0]), "askQty": fmt(ask[1]),
            "openPrice": fmt(t["open"] or 0), "highPrice": fmt(t["high"] or 0),
            "lowPrice": fmt(t["low"] or 0), "volume": fmt(volume),
            "quoteVolume": fmt(quote_volume), "openTime": t["window_start"], "closeTime": now,
            "firstId": -1, "lastId": -1, "count": t["trade_count"]}


@blueprint.get("/ticker/price")
@ratelimit.weight(book_ticker_weight)
def ticker_price():
    markets, single = _wanted_markets()
    with rpc() as services:
        tickers = {t["market"]: t for t in services.marketdata.get_tickers()}
    out = [{"symbol": m.binance, "price": fmt((tickers.get(m.symbol) or {}).get("last") or 0)}
           for m in markets]
    return ok(out[0] if single else out)


@blueprint.get("/ticker/bookTicker")
@ratelimit.weight(book_ticker_weight)
def book_ticker():
    markets, single = _wanted_markets()
    out = []
    with rpc() as services:
        for market in markets:
            book = services.matching.get_depth(market.symbol, 1)
            bid = book["buy"][0] if book["buy"] else ["0", "0"]
            ask = book["sell"][0] if book["sell"] else ["0", "0"]
            out.append({"symbol": market.binance, "bidPrice": fmt(bid[0]), "bidQty": fmt(bid[1]),
                        "askPrice": fmt(ask[0]), "askQty": fmt(ask[1])})
    return ok(out[0] if single else out)


# ================================================================ private: views of orders

def status_of(order: dict) -> str:
    status, reason = order["status"], order.get("reason")
    if status == "rejected" and reason in EXPIRED_REJECTIONS:
        return "EXPIRED"
    if status == "expired" and reason == "SELF_TRADE":
        return "EXPIRED_IN_MATCH"
    return {"pending": "NEW", "new": "NEW", "partially_filled": "PARTIALLY_FILLED",
            "filled": "FILLED", "cancelled": "CANCELED", "expired": "EXPIRED",
            "rejected": "REJECTED"}.get(status, "NEW")


def order_type_of(order: dict) -> str:
    if order["order_type"] == "market":
        return "MARKET"
    return "LIMIT_MAKER" if order.get("post_only") else "LIMIT"


def order_object(order: dict, market: Market) -> dict:
    """Binance's order object (GET /order, /openOrders, /allOrders)."""
    created, updated = epoch_ms(order.get("created_at")), epoch_ms(order.get("updated_at"))
    status = status_of(order)
    return {"symbol": market.binance, "orderId": order["order_id"], "orderListId": -1,
            "clientOrderId": order.get("client_order_id") or "",
            "price": fmt(order.get("price") or 0), "origQty": fmt(order.get("quantity") or 0),
            "executedQty": fmt(order.get("filled_quantity") or 0),
            "cummulativeQuoteQty": fmt(order.get("filled_quote") or 0),
            "status": status, "timeInForce": order.get("time_in_force") or "GTC",
            "type": order_type_of(order), "side": order["side"].upper(),
            "stopPrice": fmt(0), "icebergQty": fmt(0), "time": created, "updateTime": updated,
            "isWorking": status in ("NEW", "PARTIALLY_FILLED"), "workingTime": created,
            "origQuoteOrderQty": fmt(order.get("quote_amount") or 0),
            "selfTradePreventionMode": order.get("stp_mode") or "EXPIRE_TAKER"}


def placed_object(order: dict, market: Market, resp_type: str, fills: list | None) -> dict:
    """The POST /order answer in the requested form."""
    transact = epoch_ms(order.get("updated_at") or order.get("created_at"))
    if resp_type == "ACK":
        return {"symbol": market.binance, "orderId": order["order_id"], "orderListId": -1,
                "clientOrderId": order.get("client_order_id") or "", "transactTime": transact}
    body = order_object(order, market)
    for name in ("time", "updateTime", "isWorking"):
        body.pop(name)
    body["transactTime"] = transact
    if resp_type == "FULL":
        body["fills"] = fills or []
    return body


def fill_object(trade: dict, fee: fees.Fee) -> dict:
    return {"price": fmt(trade["price"]), "qty": fmt(trade["quantity"]),
            "commission": fmt(fee.amount), "commissionAsset": fee.asset,
            "tradeId": trade_number(trade["trade_id"])}


# ================================================================ private: waiting on the engine

def _wait_budget_s() -> float:
    return current_app.config["SETTINGS"].int("EXCHANGE_GATEWAY_ORDER_WAIT_MS") / 1000


def settle(services, user: str, order: dict, market: Market, deadline: float) -> dict:
    """Poll until the order is final, or rests in the engine with its fills
    recorded, or the deadline passes; the order as last read."""
    polls = 0
    while True:
        if order["status"] in FINAL:
            return order
        if order.get("time_in_force") == "GTC" and order["status"] in OPEN:
            resting = services.matching.get_engine_order(market.symbol, order["order_id"])
            if resting is not None and \
                    Decimal(order["filled_quantity"]) == resting["filled_quantity"] * market.lot:
                return order
        if time.monotonic() >= deadline:
            return order
        eventlet.sleep(POLL_S[min(polls, len(POLL_S) - 1)])
        polls += 1
        order = batcher.get_order(user, order["order_id"])


def fills_of(services, user: str, order: dict, market: Market, deadline: float) -> list:
    """The order's fills from marketdata, waiting (until ``deadline``) for
    them to add up to its executed quantity, with their commissions at the
    user's rates: what their settlements charge, a moment before or after
    this answer (myTrades shows what the ledger charged). The rates are
    asked of wallets while marketdata is read: one call more, not one wait
    more (a wallets call after the fills added 5-7 ms to the p50 of a FULL
    IOC, bench/README.md). If wallets does not answer within the order's
    budget, the market's schedule (logged): the order is accepted and traded,
    and its answer must not become an error or a timeout that a bot would
    take for a failed order."""
    executed = Decimal(order.get("filled_quantity") or 0)
    if not executed:
        return []
    asked = eventlet.spawn(copy_current_request_context(services.wallets.trade_fees),
                           user, market.symbol, [])  # the rates only
    since = epoch_ms(order.get("created_at")) - 1
    polls = 0
    while True:
        trades = [t for t in services.marketdata.get_user_trades(user, 1000, since)["trades"]
                  if t["order_id"] == order["order_id"] and t["market"] == market.symbol]
        if sum(Decimal(t["quantity"]) for t in trades) >= executed or \
                time.monotonic() >= deadline:
            trades.sort(key=lambda t: (t["executed_at"], trade_number(t["trade_id"])))
            rates = None
            try:
                # A wallets that is down answers nothing until the RPC timeout
                # (10 s): wait no longer than the order's own budget.
                with eventlet.Timeout(max(0.0, deadline - time.monotonic()), False):
                    rates = fees.rates_of(asked.wait())
            except Exception:  # noqa: BLE001 - any failure to ask: see the docstring
                log.warning("order %s: wallets' fee rates failed", order["order_id"],
                            exc_info=True)
            if rates is None:
                log.warning("order %s: no fee rates from wallets, commissions at %s's "
                            "schedule", order["order_id"], market.symbol)
                rates = {"maker": market.maker_fee, "taker": market.taker_fee}
            return [fill_object(t, fees.fee_at(t, market, rates)) for t in trades]
        eventlet.sleep(POLL_S[min(polls, len(POLL_S) - 1)])
        polls += 1


def engine_refusal(reason: str) -> ApiError:
    """The engine's reason as Binance's error, through the one error table."""
    status, code, message = TABLE.get(reason, (400, -2010, None))
    message = message or f"Order rejected: {reason}."
    return ApiError(status, reason, message, code, message)


def refusal_after_acceptance(order: dict) -> ApiError | None:
    """An engine refusal that Binance would have answered as an error."""
    if order["status"] != "rejected" or order.get("reason") in EXPIRED_REJECTIONS:
        return None
    return engine_refusal(order.get("reason") or "ORDER_REJECTED")


# ================================================================ private: endpoints

@blueprint.get("/account")
@ratelimit.weight(20)
def account():
    who = authenticated(READ)
    omit_zeros = bool_param("omitZeroBalances")
    with rpc() as services:
        balances = services.wallets.balances(who.user_id)["balances"]
    if omit_zeros:
        balances = {asset: b for asset, b in balances.items()
                    if Decimal(b["available"]) or Decimal(b["locked"])}
    return ok({"makerCommission": 0, "takerCommission": 0, "buyerCommission": 0,
               "sellerCommission": 0, "canTrade": TRADE in who.permissions,
               "canWithdraw": "withdraw" in who.permissions, "canDeposit": True,
               "brokered": False, "requireSelfTradePrevention": False,
               "preventSor": False, "updateTime": now_ms(), "accountType": "SPOT",
               "balances": [{"asset": asset, "free": fmt(b["available"]),
                             "locked": fmt(b["locked"])}
                            for asset, b in sorted(balances.items())],
               "permissions": ["SPOT"], "uid": who.user_id})


@blueprint.get("/account/commission")
@ratelimit.weight(20)
def account_commission():
    """Binance's "Query Commission Rates" for one symbol: the caller's maker
    and taker rates as ``standardCommission`` (their fee tier's, or the
    market's schedule); no buyer/seller, special or tax commissions and no
    discount asset here (zeros, disabled)."""
    who = authenticated(READ)
    market = market_param()
    with rpc() as services:
        rates = services.wallets.trade_fees(who.user_id, market.symbol, [])["rates"]
    zero = fmt(0)
    none = {"maker": zero, "taker": zero, "buyer": zero, "seller": zero}
    return ok({"symbol": market.binance,
               "standardCommission": {**none, "maker": fmt(rates["maker"]),
                                      "taker": fmt(rates["taker"])},
               "specialCommission": none, "taxCommission": none,
               "discount": {"enabledForAccount": False, "enabledForSymbol": False,
                            "discountAsset": "", "discount": zero}})


@sapi.get("/asset/tradeFee")
@ratelimit.weight(1)
def trade_fee():
    """Binance's "Trade Fee": the caller's maker and taker rates per symbol
    (``symbol`` optional: all), as their next trade is charged (their fee
    tier's, or the market's schedule)."""
    who = authenticated(READ)
    market = market_param(required=False)
    with rpc() as services:
        rates = services.wallets.fee_rates(who.user_id)["rates"]
    markets = [market] if market else catalogue().markets()
    return ok([{"symbol": m.binance, "makerCommission": rates[m.symbol]["maker"],
                "takerCommission": rates[m.symbol]["taker"]}
               for m in markets if m.symbol in rates])


@blueprint.get("/rateLimit/order")
@ratelimit.weight(40)
def order_rate_limits():
    """Binance's "Query Unfilled Order Count": each ORDERS limit of
    exchangeInfo with the caller's count in its current window, read from
    the counters POST /order is refused on (``RateLimiter.order_counts``)."""
    who = authenticated(READ)
    return ok([limit.binance(count)
               for limit, count in ratelimit.limiter().order_counts(who.user_id)])


def authenticated(permission: str, orders: bool = False):
    """The verified caller; its key is charged the view's weight, and its
    account a new order when ``orders``."""
    who = authenticate(permission)
    ratelimit.limiter().charge_key(who.key_id, ratelimit.view_weight(), orders,
                                   account=who.user_id)
    return who


def order_request(market: Market) -> dict:
    """POST /order's parameters, checked against the market's filters, as
    orders.place_order arguments."""
    side = choice_param("side", ("BUY", "SELL"), -1100,
                        "Illegal characters found in parameter 'side'.", required=True)
    kind = choice_param("type", ("LIMIT", "LIMIT_MAKER", "MARKET"), -1116, "Invalid orderType.",
                        required=True)
    tif = choice_param("timeInForce", ("GTC", "IOC", "FOK"), -1115, "Invalid timeInForce.")
    stp = choice_param("selfTradePreventionMode", STP_MODES, -1100,
                       "Illegal characters found in parameter 'selfTradePreventionMode'.")
    for unsupported in ("stopPrice", "icebergQty", "trailingDelta", "strategyId"):
        if param(unsupported) is not None:
            raise ApiError(400, "INVALID_INPUT", f"{unsupported} is not supported", -1106,
                           f"Parameter '{unsupported}' sent when not required.",
                           field=unsupported)
    client_id = client_id_param("newClientOrderId")
    quantity, quote = decimal_param("quantity"), decimal_param("quoteOrderQty")
    price = decimal_param("price")
    args = {"market": market.symbol, "side": side.lower(), "stp_mode": stp,
            "client_order_id": client_id}
    if client_id is not None:
        # Binance's rule: unique among the user's open orders only.
        args["reuse_client_order_id"] = True
    if kind in ("LIMIT", "LIMIT_MAKER"):
        if kind == "LIMIT" and tif is None:
            raise missing_param("timeInForce")
        if kind == "LIMIT_MAKER" and tif not in (None, "GTC"):
            raise ApiError(400, "INVALID_INPUT", "LIMIT_MAKER takes no timeInForce", -1106,
                           "Parameter 'timeInForce' sent when not required.")
        if quantity is None:
            raise missing_param("quantity")
        if price is None:
            raise missing_param("price")
        if quote is not None:
            raise ApiError(400, "INVALID_INPUT", "quoteOrderQty is for MARKET orders", -1106,
                           "Parameter 'quoteOrderQty' sent when not required.")
        market.check_price(price)
        market.check_quantity(quantity)
        market.check_notional(price * quantity)
        args.update(type="limit", quantity=str(quantity), price=str(price),
                    time_in_force=tif or "GTC", post_only=kind == "LIMIT_MAKER")
        return args
    if price is not None:
        raise ApiError(400, "INVALID_INPUT", "MARKET orders take no price", -1106,
                       "Parameter 'price' sent when not required.")
    if tif == "GTC":
        # A market order never rests (orders refuses it, after /order/test has
        # passed it); IOC, its nature, and FOK are taken.
        raise ApiError(400, "INVALID_INPUT", "a MARKET order is IOC or FOK", -1106,
                       "Parameter 'timeInForce' sent when not required.", field="timeInForce")
    if (quantity is None) == (quote is None):
        text = "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!" \
            if quantity is None else "Only one of 'quantity' or 'quoteOrderQty' may be sent."
        raise ApiError(400, "INVALID_INPUT", text, -1102 if quantity is None else -1106, text)
    if quantity is not None:
        market.check_quantity(quantity)
        args.update(type="market", quantity=str(quantity), time_in_force=tif or "IOC")
        return args
    if side == "SELL":
        raise filter_failure("Filter failure: MARKET sell by quoteOrderQty is not supported; "
                             "send quantity.")
    if quote % market.notional_unit:
        raise ApiError(400, "TOO_PRECISE", "quoteOrderQty has too much precision", -1111,
                       "Parameter 'quoteOrderQty' has too much precision.")
    market.check_notional(quote)
    args.update(type="market", quote_amount=str(quote), time_in_force=tif or "IOC")
    return args


def _place(services, who, market: Market, args: dict, resp_type: str):
    # Accepted in this process's next batch of orders (gateway/batcher.py).
    order = batcher.place_order(who.user_id, **args)
    if resp_type == "ACK":
        return placed_object(order, market, "ACK", None)
    deadline = time.monotonic() + _wait_budget_s()
    order = settle(services, who.user_id, order, market, deadline)
    refused = refusal_after_acceptance(order)
    if refused is not None:
        raise refused
    fills = fills_of(services, who.user_id, order, market, deadline) \
        if resp_type == "FULL" else None
    return placed_object(order, market, resp_type, fills)


def _resp_type() -> str:
    found = choice_param("newOrderRespType", RESP_TYPES, -1100,
                         "Illegal characters found in parameter 'newOrderRespType'.")
    return found or "FULL"


@blueprint.post("/order")
@ratelimit.weight(1)
def place_order():
    who = authenticated(TRADE, orders=True)
    market = market_param()
    args = order_request(market)
    resp_type = _resp_type()
    with per_call() as services:
        return ok(_place(services, who, market, args, resp_type))


@blueprint.post("/order/test")
@ratelimit.weight(1)
def test_order():
    """POST /order's checks without placing anything, the engine's price band
    included (exchangeInfo's PERCENT_PRICE_BY_SIDE: -1013 as a real order
    gets): the engine's own verdict on the limit price around its current
    reference price (services/matching/verdict.py), not a copy of its rule."""
    authenticated(TRADE)
    market = market_param()
    args = order_request(market)
    _resp_type()
    if args["type"] == "limit" and market.price_band_percent is not None:
        with rpc() as services:
            reference = services.matching.get_depth(market.symbol, 1)["reference_price"]
        reason = limit_price_rejection(market.engine_config(), reference, args["side"],
                                       args["price"])
        if reason is not None:
            raise engine_refusal(reason)
    return ok({})


def _find_order(services, who, market: Market, unknown_code: int, unknown_msg: str,
                id_name: str = "orderId", client_name: str = "origClientOrderId",
                batched: bool = False) -> dict:
    """The order the request names, in its market. ``batched``: a read by
    ``orderId`` goes with the process's next batch of reads (one
    ``orders.get_orders`` call, gateway/batcher.py; the same answer as
    ``get_order``), for views that hold no pooled proxy (``per_call``: a
    view holding one while it waits for the batch could leave the batch
    none); by client order id it is ``get_order`` with the market."""
    order_id, client_id = int_param(id_name, minimum=1), param(client_name)
    if order_id is None and client_id is None:
        text = f"Param '{id_name}' or '{client_name}' must be sent, but both were empty/null!"
        raise ApiError(400, "MISSING_PARAMETER", text, -1102, text)

    def unknown():
        return ApiError(400, "UNKNOWN_ORDER", unknown_msg, unknown_code, unknown_msg)
    if client_id is not None and not grammar.CLIENT_ORDER_ID.fullmatch(client_id):
        raise unknown()
    try:
        if order_id is not None and batched:
            order = batcher.get_order(who.user_id, order_id)
        elif order_id is not None:
            order = services.orders.get_order(who.user_id, order_id=order_id)
        else:
            order = services.orders.get_order(who.user_id, client_order_id=client_id,
                                              market=market.symbol)
    except Exception as exc:
        if code_of(exc) == "UNKNOWN_ORDER":
            raise unknown() from None
        raise
    if order["market"] != market.symbol or (
            client_id is not None and order.get("client_order_id") != client_id):
        raise unknown()
    return order


@blueprint.get("/order")
@ratelimit.weight(4)
def get_order():
    who = authenticated(READ)
    market = market_param()
    with rpc() as services:
        order = _find_order(services, who, market, -2013, MSG_UNKNOWN_ORDER_QUERY)
    return ok(order_object(order, market))


def _cancel(who, order: dict, market: Market, deadline: float) -> dict:
    """Cancel with the process's next batch of orders (gateway/batcher.py:
    one ``orders.place_and_cancel`` call with the placements), then wait
    for the final order."""
    try:
        batcher.cancel_order(who.user_id, order["order_id"])
    except Exception as exc:
        if code_of(exc) in ("UNKNOWN_ORDER", "ORDER_NOT_OPEN"):
            raise ApiError(400, "UNKNOWN_ORDER", MSG_UNKNOWN_ORDER_CANCEL, -2011,
                           MSG_UNKNOWN_ORDER_CANCEL) from None
        raise
    return until_final(who.user_id, order, deadline)


def until_final(user: str, order: dict, deadline: float) -> dict:
    """Poll until a cancelled order is final or the deadline passes, backing
    off as ``settle`` does (a fixed 10 ms poll cost about ten ``get_order``
    calls per cancel under load), each read in the process's next batch of
    reads (gateway/batcher.py); the order as last read."""
    polls = 0
    while order["status"] not in FINAL and time.monotonic() < deadline:
        eventlet.sleep(POLL_S[min(polls, len(POLL_S) - 1)])
        polls += 1
        order = batcher.get_order(user, order["order_id"])
    return order


def cancelled_object(order: dict, market: Market, cancel_id: str) -> dict:
    """A cancelled order as Binance answers a cancel: the order's client id
    in ``origClientOrderId``, the cancel request's own (``cancel_client_id``)
    in ``clientOrderId``."""
    body = order_object(order, market)
    for name in ("time", "updateTime", "isWorking", "workingTime"):
        body.pop(name)
    body["origClientOrderId"] = body["clientOrderId"]
    body["clientOrderId"] = cancel_id
    body["transactTime"] = epoch_ms(order.get("updated_at"))
    return body


@blueprint.delete("/order")
@ratelimit.weight(1)
def cancel_order():
    who = authenticated(TRADE)
    market = market_param()
    cancel_id = cancel_client_id()
    deadline = time.monotonic() + _wait_budget_s()
    with per_call() as services:
        order = _find_order(services, who, market, -2011, MSG_UNKNOWN_ORDER_CANCEL,
                            batched=True)
        if order["status"] in FINAL:
            raise ApiError(400, "UNKNOWN_ORDER", MSG_UNKNOWN_ORDER_CANCEL, -2011,
                           MSG_UNKNOWN_ORDER_CANCEL)
        order = _cancel(who, order, market, deadline)
    return ok(cancelled_object(order, market, cancel_id))


def _open_orders_weight() -> int:
    return 6 if param("symbol") else 80


@blueprint.get("/openOrders")
@ratelimit.weight(_open_orders_weight)
def open_orders():
    who = authenticated(READ)
    market = market_param(required=False)
    cat = catalogue()
    with rpc() as services:
        orders = services.orders.open_orders(who.user_id, market.symbol if market else None)
    return ok([order_object(o, market or cat.by_symbol(o["market"])) for o in orders])


@blueprint.delete("/openOrders")
@ratelimit.weight(1)
def cancel_open_orders():
    who = authenticated(TRADE)
    market = market_param()
    deadline = time.monotonic() + _wait_budget_s()
    with per_call() as services:
        orders = services.orders.open_orders(who.user_id, market.symbol)
        if not orders:
            return ok([])
        services.orders.cancel_all(who.user_id, market.symbol)
        out = []
        for order in orders:
            order = until_final(who.user_id, order, deadline)
            out.append(cancelled_object(order, market, cancel_client_id(None)))
    return ok(out)


@blueprint.get("/allOrders")
@ratelimit.weight(20)
def all_orders():
    who = authenticated(READ)
    market = market_param()
    limit = limit_param(500, 1000)
    from_id = int_param("orderId", minimum=1)
    start, end = time_window(HISTORY_WINDOW_MS)
    found, cursor = [], None
    with rpc() as services, ratelimit.Metered(services, "orders") as metered:
        for _ in range(MAX_HISTORY_PAGES):
            page = metered.orders.order_history(who.user_id, cursor, 500)
            for order in page["orders"]:
                created = epoch_ms(order["created_at"])
                if order["market"] != market.symbol or (from_id and order["order_id"] < from_id) \
                        or (start is not None and created < start) \
                        or (end is not None and created > end):
                    continue
                found.append(order)
            cursor = page["next_cursor"]
            oldest = page["orders"][-1] if page["orders"] else None
            if cursor is None or oldest is None or (from_id and oldest["order_id"] < from_id) \
                    or (start is not None and epoch_ms(oldest["created_at"]) < start) \
                    or (from_id is None and start is None and len(found) >= limit):
                break
    found.sort(key=lambda o: o["order_id"])
    found = found[:limit] if (from_id or start is not None) else found[-limit:]
    return ok([order_object(o, market) for o in found])


@blueprint.get("/myTrades")
@ratelimit.weight(20)
def my_trades():
    who = authenticated(READ)
    market = market_param()
    limit = limit_param(500, 1000)
    start, end = time_window(HISTORY_WINDOW_MS)
    order_id, from_id = int_param("orderId", minimum=1), int_param("fromId")

    def wanted(t):
        return t["market"] == market.symbol and (order_id is None or t["order_id"] == order_id) \
            and (from_id is None or trade_number(t["trade_id"]) >= from_id)

    oldest_first = from_id is not None or start is not None
    window = readable(start, None if end is None else end + 1)
    if window is None:
        return ok([])
    with rpc() as services, ratelimit.Metered(services, "marketdata") as metered:
        trades = _user_fills(metered, who.user_id, *window, wanted, limit, oldest_first)
        trades.sort(key=lambda t: (t["executed_at"], trade_number(t["trade_id"])))
        trades = trades[:limit] if oldest_first else trades[-limit:]
        paid = fees.fill_fees(services, who.user_id, trades)
    out = []
    for t, fee in zip(trades, paid):
        out.append({"symbol": market.binance, "id": trade_number(t["trade_id"]),
                    "orderId": t["order_id"], "orderListId": -1, "price": fmt(t["price"]),
                    "qty": fmt(t["quantity"]), "quoteQty": fmt(t["quote_quantity"]),
                    "commission": fmt(fee.amount), "commissionAsset": fee.asset,
                    "time": t["executed_at"], "isBuyer": t["side"] == "buy",
                    "isMaker": t["role"] == "maker", "isBestMatch": True})
    return ok(out)


def _fill_key(t) -> tuple:
    return (t["trade_id"], t["role"])


def _read_fills(services, user_id: str, start, stop, budget: list,
                enough=lambda new: False) -> tuple[list, bool]:
    """The user's fills of ``[start, stop)``, newest first, read on from the
    oldest one seen (marketdata answers at most 1000 fills from at most
    ``USER_FILL_HOURS`` hours holding fills a call): (fills, complete).
    ``enough(new)``, called with each call's new fills, stops the reading
    early (an answer that has what it needs: not complete)."""
    found, seen, end = [], set(), stop
    while budget[0] > 0:
        budget[0] -= 1
        page = services.marketdata.get_user_trades(user_id, 1000, start, end)["trades"]
        new = [t for t in page if _fill_key(t) not in seen]
        if not new and len(page) >= 1000:
            end = min(t["executed_at"] for t in page)   # a millisecond of over 1000 fills
            continue                                    # (one sweep): the rest is unreadable
        if not new:
            return found, True
        found.extend(new)
        seen.update(_fill_key(t) for t in new)
        hours = {t["executed_at"] // 3_600_000 for t in page}
        if len(page) < 1000 and len(hours) < USER_FILL_HOURS - 2:
            return found, True          # neither cap reached (the end hours may show none)
        if enough(new):
            return found, False
        end = min(t["executed_at"] for t in new) + 1    # that millisecond again, deduplicated
    return found, False


def _user_fills(services, user_id: str, start, stop, wanted, limit: int,
                oldest_first: bool) -> list:
    """The user's fills that ``wanted`` keeps: the newest ``limit`` (or more)
    up to ``stop``, or, ``oldest_first``, the oldest from ``start`` on.

    marketdata has no market filter and pages newest first; one call of 1000
    fills used to be all: a user with 1000 fills of another market since saw
    none of this one, and one with a ``startTime`` further back than a page
    got the page's oldest, skipping the fills between startTime and them
    (tests/e2e/gateway/test_partner_my_trades.py). Oldest first, a window
    that cannot be read whole within the budget is halved; an empty window
    moves on to the rest. At most ``USER_FILL_CALLS`` calls: an answer cut by
    that is short (or empty), never one with a gap."""
    budget = [USER_FILL_CALLS]
    if not oldest_first:
        kept = [0]

        def enough(new) -> bool:
            kept[0] += sum(1 for t in new if wanted(t))
            return kept[0] >= limit
        fills, _complete = _read_fills(services, user_id, start, stop, budget, enough)
        return [t for t in fills if wanted(t)]
    low = start if start is not None else KLINES_EARLIEST_MS
    high = stop if stop is not None else now_ms() + 1
    out: list = []
    while budget[0] > 0 and low < high and len(out) < limit:
        window = high
        while budget[0] > 0:
            fills, complete = _read_fills(services, user_id, low, window, budget)
            if complete:
                out.extend(sorted((t for t in fills if wanted(t)),
                                  key=lambda t: (t["executed_at"], trade_number(t["trade_id"]))))
                low = window
                break
            if window - low <= 1:
                return out
            window = low + (window - low) // 2
    return out


MSG_REPLACE_FAILED = "Order cancel-replace failed."
MSG_REPLACE_PARTIAL = "Order cancel-replace partially failed."


def _refusal(exc: Exception) -> ApiError | None:
    """A half of cancelReplace refused as a client error (its Binance body goes
    in the answer's ``data``); None: anything else (a timeout, a failure), whose
    outcome is unknown and which answers as it would alone."""
    refused = exc if isinstance(exc, ApiError) else from_service_error(exc)
    return refused if refused is not None and refused.status < 500 else None


@blueprint.post("/order/cancelReplace")
@ratelimit.weight(1)
def cancel_replace():
    """Binance's "Cancel an Existing Order and Send a New Order": the order
    named by ``cancelOrderId`` / ``cancelOrigClientOrderId`` is cancelled,
    then the new order placed (STOP_ON_FAILURE: only if the cancel
    succeeded). Both succeed: 200. One half refused: Binance's 409 -2021
    (the other succeeded) or 400 -2022 (nothing did), with ``data`` naming
    each half's result and answer, so that a bot knows whether its old order
    is gone (tests/e2e/gateway/test_partner_cancel_replace.py)."""
    who = authenticated(TRADE, orders=True)
    market = market_param()
    mode = choice_param("cancelReplaceMode", ("STOP_ON_FAILURE", "ALLOW_FAILURE"), -1100,
                        "Illegal characters found in parameter 'cancelReplaceMode'.",
                        required=True)
    args = order_request(market)
    resp_type = _resp_type()
    cancel_id = cancel_client_id("cancelNewClientOrderId")
    deadline = time.monotonic() + _wait_budget_s()
    with per_call() as services:
        cancelled, cancel_body = True, None
        try:
            order = _find_order(services, who, market, -2011, MSG_UNKNOWN_ORDER_CANCEL,
                                "cancelOrderId", "cancelOrigClientOrderId", batched=True)
            if order["status"] in FINAL:
                raise ApiError(400, "UNKNOWN_ORDER", MSG_UNKNOWN_ORDER_CANCEL, -2011,
                               MSG_UNKNOWN_ORDER_CANCEL)
            order = _cancel(who, order, market, deadline)
            cancel_body = cancelled_object(order, market, cancel_id)
        except Exception as exc:
            refused = _refusal(exc)
            if refused is None:
                raise
            cancelled, cancel_body = False, refused.binance_body()
        placed, new_body = None, None
        if cancelled or mode == "ALLOW_FAILURE":
            try:
                new_body, placed = _place(services, who, market, args, resp_type), True
            except Exception as exc:
                refused = _refusal(exc)
                if refused is None:
                    raise
                new_body, placed = refused.binance_body(), False
    data = {"cancelResult": "SUCCESS" if cancelled else "FAILURE",
            "newOrderResult": {True: "SUCCESS", False: "FAILURE"}.get(placed, "NOT_ATTEMPTED"),
            "cancelResponse": cancel_body, "newOrderResponse": new_body}
    if cancelled and placed:
        return ok(data)
    # g.error_code: the native code the HTTP metrics count a refusal under
    # (gateway.app error_response sets it for the refusals it writes).
    if placed:
        ratelimit.orders_placed_despite_refusal()
    if cancelled or placed:
        g.error_code = "CANCEL_REPLACE_PARTIALLY_FAILED"
        response = ok({"code": -2021, "msg": MSG_REPLACE_PARTIAL, "data": data})
        response.status_code = 409
    else:
        g.error_code = "CANCEL_REPLACE_FAILED"
        response = ok({"code": -2022, "msg": MSG_REPLACE_FAILED, "data": data})
        response.status_code = 400
    return response
