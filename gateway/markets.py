"""The gateway's market catalogue: symbols, filters and asset precisions.

One place in the gateway for what a market allows, shared by both APIs:

* names: the exchange's ``BTC-USDT`` and Binance's ``BTCUSDT``;
* filters as Binance states them (``PRICE_FILTER``, ``LOT_SIZE``,
  ``NOTIONAL``), checked here before an order is sent, so a refusal carries
  the exact message ccxt maps (../shared/BINANCE_SUBSET.md section 4);
* asset precisions (decimals) and the markets' own fee schedule.

Source: the market registry (services/registry, read through
``services/common/catalogue.py``): markets with their grid, limits, fee
schedule and status, and the assets' precisions. While the registry cannot be
read, ``matching.list_markets()`` (the engines' configs) stands in, without
precisions (8 shown) or fees (0 shown). The catalogue is cached per process
for ``TTL_S`` and reloaded when older or when a symbol is not in it (a new
market shows without a restart); a failed reload keeps serving the previous
copy.

Numbers: ``Decimal`` only; ``fmt`` writes Binance's 8-decimal strings without
ever dropping a digit (an amount finer than 8 decimals is written in full).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Callable

from eventlet.semaphore import Semaphore

from gateway.errors import MSG_LOT_SIZE, MSG_NOTIONAL, MSG_PRICE_FILTER, ApiError
from services.matching.models import MarketConfig

log = logging.getLogger(__name__)

TTL_S = 10.0
EIGHT = Decimal("0.00000001")
ZERO = Decimal(0)



def fmt(value) -> str:
    """Binance's number format: at least 8 decimals (``"0.01000000"``), all of
    them when there are more, without the zeros after the eighth (an
    18-decimal asset's ``"20.000000000000000000"`` is ``"20.00000000"``);
    never rounded."""
    if value is None:
        return "0.00000000"
    sign, digits, exponent = Decimal(value).as_tuple()
    # The zeros dropped from the digits themselves: Decimal.normalize() would
    # round to the context's 28 digits.
    while exponent < -8 and digits[-1] == 0:
        digits, exponent = digits[:-1] or (0,), exponent + 1
    number = Decimal((sign, digits, exponent))
    if exponent >= -8:
        number = number.quantize(EIGHT)
    return format(number, "f")


def binance_symbol(symbol: str) -> str:
    return symbol.replace("-", "")


def filter_failure(message: str) -> ApiError:
    return ApiError(400, "FILTER_FAILURE", message, -1013, message)


def unknown_symbol(symbol) -> ApiError:
    return ApiError(400, "UNKNOWN_MARKET", f"unknown market {str(symbol)[:40]!r}", -1121,
                    "Invalid symbol.", field="symbol")


@dataclass(frozen=True)
class Market:
    symbol: str                  # BTC-USDT
    base: str
    quote: str
    tick: Decimal
    lot: Decimal
    min_qty: Decimal
    max_qty: Decimal | None
    min_notional: Decimal
    base_scale: int
    quote_scale: int
    maker_fee: Decimal
    taker_fee: Decimal
    status: str = "TRADING"      # Binance's: TRADING, PRE_TRADING, HALT, BREAK
    # The engine refuses a limit price farther than this from its reference
    # price (-1013 PERCENT_PRICE_BY_SIDE); None: no band.
    price_band_percent: Decimal | None = None

    @property
    def binance(self) -> str:
        return binance_symbol(self.symbol)

    @property
    def notional_unit(self) -> Decimal:
        return self.tick * self.lot

    # -- filters (raise ApiError with Binance's exact text) ------------------
    def check_price(self, price: Decimal) -> None:
        if price < self.tick or price % self.tick:
            raise filter_failure(MSG_PRICE_FILTER)

    def check_quantity(self, quantity: Decimal) -> None:
        if quantity < self.min_qty or quantity % self.lot or (
                self.max_qty is not None and quantity > self.max_qty):
            raise filter_failure(MSG_LOT_SIZE)

    def check_notional(self, notional: Decimal) -> None:
        if notional < self.min_notional:
            raise filter_failure(MSG_NOTIONAL)

    def commission(self, is_buyer: bool, rate: Decimal, quantity: Decimal,
                   quote_quantity: Decimal) -> tuple[Decimal, str]:
        """(amount, asset) of the fee at ``rate`` on one fill: on what the party
        receives, rounded down to the asset's minor unit (as wallets'
        settlement charges it)."""
        if is_buyer:
            amount, asset, scale = quantity * rate, self.base, self.base_scale
        else:
            amount, asset, scale = quote_quantity * rate, self.quote, self.quote_scale
        return amount.quantize(Decimal(1).scaleb(-scale), rounding="ROUND_FLOOR"), asset

    def engine_config(self) -> MarketConfig:
        """The market's grid and price band as the matching engine's config:
        what ``services/matching/verdict.py`` needs to ask a scratch engine
        about a limit price (POST /api/v3/order/test), the band being the
        engine's rule alone."""
        return MarketConfig(symbol=self.symbol, base_asset=self.base, quote_asset=self.quote,
                            tick_size=format(self.tick, "f"), lot_size=format(self.lot, "f"),
                            price_band_percent=None if self.price_band_percent is None
                            else format(self.price_band_percent, "f"))

    def _band_filter(self) -> list[dict]:
        """The engine's price band as Binance states one: a refusal names
        PERCENT_PRICE_BY_SIDE (gateway/errors.py), so the bot can read the
        rule it broke. The same band on both sides, around the engine's
        reference price (the last trade's, or the one an admin set):
        ``avgPriceMins`` 0, Binance's "the last price"."""
        if self.price_band_percent is None:
            return []
        up, down = (fmt(1 + self.price_band_percent / 100),
                    fmt(1 - self.price_band_percent / 100))
        return [{"filterType": "PERCENT_PRICE_BY_SIDE", "bidMultiplierUp": up,
                 "bidMultiplierDown": down, "askMultiplierUp": up, "askMultiplierDown": down,
                 "avgPriceMins": 0}]

    # -- Binance's exchangeInfo entry ------------------------------------------
    def exchange_info(self) -> dict:
        return {
            "symbol": self.binance,
            "status": self.status,
            "baseAsset": self.base,
            "baseAssetPrecision": self.base_scale,
            "quoteAsset": self.quote,
            "quotePrecision": self.quote_scale,
            "quoteAssetPrecision": self.quote_scale,
            "baseCommissionPrecision": self.base_scale,
            "quoteCommissionPrecision": self.quote_scale,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                # maxPrice 0: no fixed maximum (Binance's convention); the
                # engine's price band around the last price applies instead.
                {"filterType": "PRICE_FILTER", "minPrice": fmt(self.tick), "maxPrice": fmt(0),
                 "tickSize": fmt(self.tick)},
                {"filterType": "LOT_SIZE", "minQty": fmt(self.min_qty),
                 "maxQty": fmt(self.max_qty or 0), "stepSize": fmt(self.lot)},
                {"filterType": "MARKET_LOT_SIZE", "minQty": fmt(self.min_qty),
                 "maxQty": fmt(self.max_qty or 0), "stepSize": fmt(self.lot)},
                {"filterType": "NOTIONAL", "minNotional": fmt(self.min_notional),
                 "applyMinToMarket": True, "applyMaxToMarket": False, "avgPriceMins": 0},
                *self._band_filter(),
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_TAKER",
            "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER",
                                                "EXPIRE_BOTH"],
        }


BINANCE_STATUS = {"trading": "TRADING", "pre_trading": "PRE_TRADING", "halted": "HALT"}


def market_from_registry(info, scales: dict[str, int]) -> Market:
    """One market from the registry's ``MarketInfo`` (services/common/catalogue.py)."""
    lot = Decimal(info.lot_size)
    return Market(
        symbol=info.symbol, base=info.base, quote=info.quote, tick=Decimal(info.tick_size),
        lot=lot, min_qty=Decimal(info.min_quantity) if info.min_quantity else lot,
        max_qty=Decimal(info.max_quantity) if info.max_quantity else None,
        min_notional=Decimal(info.min_notional) if info.min_notional else ZERO,
        base_scale=scales.get(info.base, 8), quote_scale=scales.get(info.quote, 8),
        maker_fee=Decimal(info.maker_fee), taker_fee=Decimal(info.taker_fee),
        status=BINANCE_STATUS.get(info.status, "BREAK"),
        price_band_percent=Decimal(info.price_band_percent) if info.price_band_percent else None)


def market_from_engine_config(config: dict) -> Market:
    """One market from matching's config dict (``MarketConfig.to_dict``): the
    fallback source, without asset scales (8 assumed) or fees (0 shown)."""
    lot = Decimal(config["lot_size"])
    return Market(
        symbol=config["symbol"], base=config["base_asset"], quote=config["quote_asset"],
        tick=Decimal(config["tick_size"]), lot=lot,
        min_qty=Decimal(config["min_quantity"]) if config.get("min_quantity") else lot,
        max_qty=Decimal(config["max_quantity"]) if config.get("max_quantity") else None,
        min_notional=Decimal(config["min_notional"]) if config.get("min_notional") else ZERO,
        base_scale=8, quote_scale=8, maker_fee=ZERO, taker_fee=ZERO,
        status="HALT" if config.get("halted") else "TRADING",
        price_band_percent=Decimal(config["price_band_percent"])
        if config.get("price_band_percent") else None)


def registry_markets(settings) -> list[Market]:
    """The registry's markets (delisted ones left out), read through its SQL
    function in an OS thread (psycopg's wait would block the eventlet hub)."""
    from eventlet import tpool
    from services.common import catalogue as registry
    snapshot = tpool.execute(registry.load_from_settings, settings)
    scales = {code: asset.scale for code, asset in snapshot.assets().items()}
    return [market_from_registry(info, scales) for info in snapshot.markets().values()
            if info.status != "delisted"]


class Reloaded:
    """A copy of what ``load`` returns, loaded again once it is ``ttl_s`` old
    (or when forced). A reload that fails keeps serving the previous copy (and
    is tried again after another ``ttl_s``); with no copy yet it raises.
    ``on_load`` receives each new copy. One reload at a time per process."""

    def __init__(self, load: Callable[[], list], on_load: Callable[[list], None],
                 what: str, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic):
        self._load = load
        self._on_load = on_load
        self._what = what
        self._ttl = ttl_s
        self._clock = clock
        self._lock = Semaphore(1)
        self.loaded_at: float | None = None

    def _fresh(self) -> bool:
        return self.loaded_at is not None and self._clock() - self.loaded_at < self._ttl

    def refresh(self, force: bool = False) -> None:
        if self._fresh() and not force:
            return
        with self._lock:
            if self._fresh() and not force:
                return
            try:
                found = self._load()
            except Exception:
                if self.loaded_at is None:
                    raise
                log.warning("reloading the %s failed; serving the cached copy", self._what,
                            exc_info=True)
                self.loaded_at = self._clock()
                return
            self._on_load(found)
            self.loaded_at = self._clock()

    def age(self) -> float | None:
        return None if self.loaded_at is None else self._clock() - self.loaded_at


class Catalogue:
    """The markets, cached; ``load`` returns them."""

    def __init__(self, load: Callable[[], list[Market]], ttl_s: float = TTL_S,
                 clock: Callable[[], float] = time.monotonic):
        self._by_symbol: dict[str, Market] = {}
        self._by_binance: dict[str, Market] = {}
        self._copy = Reloaded(load, self._index, "market catalogue", ttl_s, clock)
        self._refresh = self._copy.refresh

    def _index(self, markets: list[Market]) -> None:
        self._by_symbol = {m.symbol: m for m in markets}
        self._by_binance = {m.binance: m for m in markets}

    def markets(self) -> list[Market]:
        self._refresh()
        return sorted(self._by_symbol.values(), key=lambda m: m.symbol)

    def by_binance(self, symbol) -> Market:
        """The market of a Binance symbol (``BTCUSDT``); -1121 when unknown."""
        if not isinstance(symbol, str) or not symbol.isascii() or not symbol.isalnum() \
                or len(symbol) > 32:
            raise unknown_symbol(symbol)
        self._refresh()
        market = self._by_binance.get(symbol)
        if market is None and self._copy.loaded_at is not None:
            self._refresh(force=self._copy.age() > 1.0)
            market = self._by_binance.get(symbol)
        if market is None:
            raise unknown_symbol(symbol)
        return market

    def by_symbol(self, symbol) -> Market:
        """The market of an exchange symbol (``BTC-USDT``)."""
        self._refresh()
        market = self._by_symbol.get(symbol) if isinstance(symbol, str) else None
        if market is None:
            raise unknown_symbol(symbol)
        return market


def catalogue(app=None) -> Catalogue:
    """The app's catalogue, created on first use: the registry's when it
    answers, else matching's market configs (through the RPC pool)."""
    from flask import current_app
    app = app or current_app
    found = app.extensions.get("market_catalogue")
    if found is None:
        pool, settings = app.extensions["rpc_pool"], app.config["SETTINGS"]

        def load() -> list[Market]:
            try:
                return registry_markets(settings)
            except Exception:
                log.warning("market registry unavailable; using matching's market list",
                            exc_info=True)
            with pool.lease() as services:
                return [market_from_engine_config(c) for c in services.matching.list_markets()]

        found = app.extensions["market_catalogue"] = Catalogue(load)
    return found
