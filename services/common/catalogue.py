"""The catalogue of assets and markets, as every service and the gateway read it.

The registry service (services/registry) is the one owner of these facts: it
validates, journals and announces them. Everyone else reads them through this
module:

* value types -- ``AssetInfo``, ``MarketInfo``, ``FeeRates`` and the immutable
  ``Catalogue`` snapshot (``assets()``, ``markets()``, ``asset(s)``,
  ``market(s)``). The rules of a consistent catalogue (a lot fits the base
  asset's minor unit, tick x lot fits the quote's, fees in [0, 0.1), a market's
  assets are listed) live here, in ``Catalogue.with_asset``/``with_market``:
  the registry applies them when listing, readers when loading.
* ``load(conn)`` / ``load_from_settings(settings)`` -- the whole catalogue from
  the registry's declared SQL function ``registry.catalogue()``. SQL rather
  than an RPC to the registry: a service starts (and a Flask app loads) while
  the registry process is down, with no timeout to tune, and one statement
  gives a consistent snapshot with its version.
* ``CatalogueFollower`` -- a loader that follows the registry's events
  (``asset_listed``, ``market_listed``, ``market_updated`` on
  ``registry.events``) and reloads, calling listeners on every new version.
  Its queue is per *process* (exclusive, gone with the connection): every
  process keeps its own copy, so a per-service queue (one consumer of N
  processes gets each event) would leave the others stale. The queue is
  declared and bound *before* each (re)load, so a change committed after the
  load is always delivered, and one committed before is in the load.
  Usable from Flask: ``follower.run()`` in a thread or greenlet.
* ``RegistryCatalogue`` -- the Nameko DependencyProvider: loads at setup (a
  service does not start without its catalogue), follows in a managed thread,
  hands workers the follower (``.current`` is an immutable snapshot).
* ``current()`` -- the latest snapshot loaded in this process, for pure
  modules that look an asset up by code (wallets' amount formatting) without a
  worker context. Snapshots only move forward (by version).

Decimal fields are canonical decimal strings (``"0.01"``); derived integer
fields (``*_minor``) are what ledgers store. No floats.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Callable, Mapping, Optional

from services.common import events, grammar
from services.common.errors import InvalidInput

log = logging.getLogger(__name__)

# The registry's events, as services/common/events.py defines them.
EXCHANGE = events.ASSET_LISTED.exchange
ASSET_LISTED, MARKET_LISTED, MARKET_UPDATED = (
    events.ASSET_LISTED.name, events.MARKET_LISTED.name, events.MARKET_UPDATED.name)
EVENTS = (ASSET_LISTED, MARKET_LISTED, MARKET_UPDATED)

# Address / transaction-id format families wallets knows how to check.
BTC_CHAIN, EVM_CHAIN = "bitcoin", "ethereum"
CHAINS = (BTC_CHAIN, EVM_CHAIN)

PRE_TRADING, TRADING, HALTED, DELISTED = "pre_trading", "trading", "halted", "delisted"
STATUSES = (PRE_TRADING, TRADING, HALTED, DELISTED)
STP_MODES = ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH")

# Symbols become Cassandra partition keys, Memcached key parts and queue names.
ASSET_SYMBOL = re.compile(r"[A-Z0-9]{2,16}", re.ASCII)
MARKET_SYMBOL = re.compile(r"([A-Z0-9]{2,16})-([A-Z0-9]{2,16})", re.ASCII)
MAX_SCALE = 18
MAX_FEE = Decimal("0.1")


def _canonical(value: Decimal) -> str:
    """A decimal as plain digits, without exponent or superfluous zeros."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _minor(value: Decimal, scale: int, field_name: str, symbol: str) -> int:
    minor = value.scaleb(scale)
    if minor != minor.to_integral_value():
        raise InvalidInput("OFF_GRID", f"{symbol}: {field_name} {value} does not fit "
                           f"{scale} decimals", field_name)
    return int(minor)


# ---------------------------------------------------------------- assets


@dataclass(frozen=True)
class AssetInfo:
    """One asset. ``scale``: its number of decimals (1 minor unit = 10**-scale).
    Amounts are whole units of the asset; ``*_minor`` the same in minor units."""

    symbol: str
    scale: int
    chain: str
    confirmations: int              # a deposit is credited once it has this many
    withdrawal_fee: str             # charged on top of the amount
    min_withdrawal: str
    daily_withdrawal_limit: str     # per user, rolling 24 hours
    deposit_enabled: bool = True
    withdraw_enabled: bool = True

    withdrawal_fee_minor: int = field(init=False, repr=False, compare=False)
    min_withdrawal_minor: int = field(init=False, repr=False, compare=False)
    daily_withdrawal_limit_minor: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        put("symbol", grammar.text(self.symbol, "symbol", max_len=16, pattern=ASSET_SYMBOL))
        put("scale", grammar.integer(self.scale, "scale", maximum=MAX_SCALE))
        put("chain", grammar.choice(self.chain, "chain", CHAINS))
        if self.chain is None:
            raise InvalidInput("INVALID_CHOICE", f"chain must be one of {', '.join(CHAINS)}",
                               "chain")
        put("confirmations", grammar.integer(self.confirmations, "confirmations",
                                             maximum=10_000))
        for name in ("withdrawal_fee", "min_withdrawal", "daily_withdrawal_limit"):
            value = grammar.decimal(getattr(self, name), name, positive=False)
            put(name, _canonical(value))
            put(f"{name}_minor", _minor(value, self.scale, name, self.symbol))
        for name in ("deposit_enabled", "withdraw_enabled"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInput("INVALID_FLAG", f"{name} must be true or false", name)

    @property
    def code(self) -> str:
        """The symbol (wallets' name for it)."""
        return self.symbol

    @property
    def unit(self) -> int:
        """Minor units in one whole unit."""
        return 10 ** self.scale

    def to_dict(self) -> dict:
        return {"symbol": self.symbol, "scale": self.scale, "chain": self.chain,
                "confirmations": self.confirmations, "withdrawal_fee": self.withdrawal_fee,
                "min_withdrawal": self.min_withdrawal,
                "daily_withdrawal_limit": self.daily_withdrawal_limit,
                "deposit_enabled": self.deposit_enabled, "withdraw_enabled": self.withdraw_enabled}

    @classmethod
    def from_dict(cls, spec: Mapping) -> "AssetInfo":
        return cls(**_fields(cls, spec))


# ---------------------------------------------------------------- fees


@dataclass(frozen=True)
class FeeRates:
    """Maker and taker fee rates as decimal strings (``"0.001"`` = 0.1 %)."""

    maker: str
    taker: str

    maker_ratio: tuple[int, int] = field(init=False, repr=False, compare=False)
    taker_ratio: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("maker", "taker"):
            rate = grammar.decimal(getattr(self, name), f"{name}_fee", positive=False)
            if rate >= MAX_FEE:
                raise InvalidInput("OUT_OF_RANGE", f"{name} fee {rate} must be below {MAX_FEE}",
                                   f"{name}_fee")
            object.__setattr__(self, name, _canonical(rate))
            object.__setattr__(self, f"{name}_ratio", rate.as_integer_ratio())

    def rate(self, is_maker: bool) -> tuple[int, int]:
        """The rate as an exact fraction ``(numerator, denominator)``."""
        return self.maker_ratio if is_maker else self.taker_ratio

    def as_dict(self) -> dict[str, str]:
        return {"maker": self.maker, "taker": self.taker}


# ---------------------------------------------------------------- markets


@dataclass(frozen=True)
class MarketInfo:
    """A spot market: the engine's grid and limits, the fee schedule, the status.

    ``tick_size`` is quote per base, ``lot_size`` base; optional limits are
    ``None`` when absent (``min_quantity`` defaults to one lot in the engine)."""

    symbol: str
    base: str
    quote: str
    tick_size: str
    lot_size: str
    maker_fee: str
    taker_fee: str
    min_quantity: Optional[str] = None
    max_quantity: Optional[str] = None
    min_notional: Optional[str] = None
    price_band_percent: Optional[str] = None
    max_open_orders: Optional[int] = None
    default_stp: str = "EXPIRE_TAKER"
    status: str = TRADING

    fees: FeeRates = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        symbol = grammar.text(self.symbol, "symbol", max_len=33, pattern=MARKET_SYMBOL)
        base, quote = MARKET_SYMBOL.fullmatch(symbol).groups()
        if (self.base, self.quote) != (base, quote) or base == quote:
            raise InvalidInput("INVALID_SYMBOL", f"{symbol}: the symbol is BASE-QUOTE of two "
                               "different assets", "symbol")
        for name in ("tick_size", "lot_size"):
            put(name, _canonical(grammar.decimal(getattr(self, name), name)))
        for name in ("min_quantity", "max_quantity", "min_notional", "price_band_percent"):
            value = grammar.optional_decimal(getattr(self, name), name)
            put(name, None if value is None else _canonical(value))
        if self.max_open_orders is not None:
            put("max_open_orders", grammar.integer(self.max_open_orders, "max_open_orders",
                                                   minimum=1, maximum=1_000_000))
        put("default_stp", grammar.choice(self.default_stp, "default_stp", STP_MODES,
                                          default="EXPIRE_TAKER"))
        put("status", grammar.choice(self.status, "status", STATUSES, default=TRADING))
        fees = FeeRates(self.maker_fee, self.taker_fee)
        put("fees", fees)
        put("maker_fee", fees.maker)
        put("taker_fee", fees.taker)

    @property
    def tradable(self) -> bool:
        return self.status == TRADING

    def engine_config(self) -> dict:
        """The matching engine's ``MarketConfig.from_dict`` input."""
        return {"symbol": self.symbol, "base_asset": self.base, "quote_asset": self.quote,
                "tick_size": self.tick_size, "lot_size": self.lot_size,
                "min_quantity": self.min_quantity, "max_quantity": self.max_quantity,
                "min_notional": self.min_notional, "price_band_percent": self.price_band_percent,
                "max_open_orders": self.max_open_orders, "default_stp": self.default_stp,
                "halted": self.status != TRADING}

    def to_dict(self) -> dict:
        return {"symbol": self.symbol, "base": self.base, "quote": self.quote,
                "tick_size": self.tick_size, "lot_size": self.lot_size,
                "min_quantity": self.min_quantity, "max_quantity": self.max_quantity,
                "min_notional": self.min_notional, "price_band_percent": self.price_band_percent,
                "max_open_orders": self.max_open_orders, "default_stp": self.default_stp,
                "maker_fee": self.maker_fee, "taker_fee": self.taker_fee, "status": self.status}

    @classmethod
    def from_dict(cls, spec: Mapping) -> "MarketInfo":
        return cls(**_fields(cls, spec))


def _fields(cls, spec) -> dict:
    if not isinstance(spec, Mapping):
        raise InvalidInput("INVALID_INPUT", f"{cls.__name__} must be an object")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise InvalidInput("UNKNOWN_FIELD", f"unknown field {unknown[0]!r}", str(unknown[0])[:64])
    required = {f.name for f in dataclasses.fields(cls)
                if f.init and f.default is dataclasses.MISSING}
    missing = sorted(required - set(spec))
    if missing:
        raise InvalidInput("MISSING_FIELD", f"{missing[0]} is required", missing[0])
    return dict(spec)


# ---------------------------------------------------------------- the catalogue


class Catalogue:
    """An immutable snapshot: assets and markets by symbol, and the registry's
    journal position (``version``) it reflects."""

    __slots__ = ("version", "_assets", "_markets")

    def __init__(self, version: int = 0, assets: Mapping[str, AssetInfo] = (),
                 markets: Mapping[str, MarketInfo] = ()):
        self.version = version
        self._assets = MappingProxyType(dict(assets))
        self._markets = MappingProxyType(dict(markets))

    def assets(self) -> Mapping[str, AssetInfo]:
        return self._assets

    def markets(self) -> Mapping[str, MarketInfo]:
        return self._markets

    def asset(self, symbol) -> Optional[AssetInfo]:
        return self._assets.get(symbol) if isinstance(symbol, str) else None

    def market(self, symbol) -> Optional[MarketInfo]:
        return self._markets.get(symbol) if isinstance(symbol, str) else None

    # -- the rules of a consistent catalogue (one home: here) --------------------
    def with_asset(self, asset: AssetInfo, version: Optional[int] = None) -> "Catalogue":
        return Catalogue(self.version if version is None else version,
                         {**self._assets, asset.symbol: asset}, self._markets)

    def with_market(self, market: MarketInfo, version: Optional[int] = None) -> "Catalogue":
        """The catalogue with ``market`` added or replaced; InvalidInput when
        its assets are not listed or its grid is finer than their minor units
        (every trade's base and quote amounts must be whole minor units)."""
        for role in ("base", "quote"):
            if getattr(market, role) not in self._assets:
                raise InvalidInput("UNKNOWN_ASSET", f"{market.symbol}: {role} asset "
                                   f"{getattr(market, role)} is not listed", role)
        base, quote = self._assets[market.base], self._assets[market.quote]
        lot, tick = Decimal(market.lot_size), Decimal(market.tick_size)
        _minor(lot, base.scale, "lot_size", market.symbol)
        _minor(tick * lot, quote.scale, "tick_size", market.symbol)
        for name in ("min_quantity", "max_quantity"):
            if getattr(market, name) is not None:
                _minor(Decimal(getattr(market, name)), base.scale, name, market.symbol)
        return Catalogue(self.version if version is None else version, self._assets,
                         {**self._markets, market.symbol: market})

    # -- the registry's document ---------------------------------------------
    @classmethod
    def from_document(cls, document: Mapping) -> "Catalogue":
        """``registry.catalogue()``'s JSON: ``{version, assets: {...}, markets: {...}}``."""
        catalogue = cls(int(document.get("version") or 0))
        for spec in (document.get("assets") or {}).values():
            catalogue = catalogue.with_asset(AssetInfo.from_dict(spec))
        for spec in (document.get("markets") or {}).values():
            catalogue = catalogue.with_market(MarketInfo.from_dict(spec))
        return catalogue

    def to_document(self) -> dict:
        return {"version": self.version,
                "assets": {s: a.to_dict() for s, a in sorted(self._assets.items())},
                "markets": {s: m.to_dict() for s, m in sorted(self._markets.items())}}


# ---------------------------------------------------------------- loading

CATALOGUE_SQL = "SELECT registry.catalogue()"
VERSION_SQL = "SELECT registry.catalogue_version()"


def load(conn) -> Catalogue:
    """The whole catalogue through the registry's declared SQL function."""
    return Catalogue.from_document(conn.execute(CATALOGUE_SQL).fetchone()[0])


def load_from_dsn(dsn: str) -> Catalogue:
    import psycopg
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        return install(load(conn))


def load_from_settings(settings, dbname: Optional[str] = None) -> Catalogue:
    """For non-Nameko callers (the Flask gateway, CLIs, tests)."""
    return load_from_dsn(settings.postgres_dsn(dbname))


_latest = Catalogue()
_latest_lock = threading.Lock()


def install(catalogue: Catalogue) -> Catalogue:
    """Make ``catalogue`` this process's ``current()`` unless a newer one is;
    returns the one that is current afterwards."""
    global _latest
    with _latest_lock:
        if catalogue.version >= _latest.version:
            _latest = catalogue
        return _latest


def current() -> Catalogue:
    """The newest snapshot loaded in this process (empty before any load)."""
    return _latest


_process_follower: Optional["CatalogueFollower"] = None


class LiveView(Mapping):
    """A read-only mapping over ``current()``'s assets or markets that, on a
    miss, asks this process's follower to refresh (a listing whose event has
    not arrived yet). For pure modules that look symbols up by name."""

    def __init__(self, kind: str):
        self.kind = kind  # "asset" or "market"

    def _all(self) -> Mapping:
        return current().assets() if self.kind == "asset" else current().markets()

    def __getitem__(self, symbol):
        found = self._all().get(symbol) if isinstance(symbol, str) else None
        if found is None and _process_follower is not None:
            found = getattr(_process_follower, self.kind)(symbol)
        if found is None:
            raise KeyError(symbol)
        return found

    def __contains__(self, symbol) -> bool:
        try:
            self[symbol]
        except KeyError:
            return False
        return True

    def __iter__(self):
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


# ---------------------------------------------------------------- following


class CatalogueFollower:
    """Keeps ``current`` up to date with the registry; calls ``listeners``
    (``fn(old, new)``) after each change. ``refresh()`` reloads when the
    registry's version moved; ``market(symbol)``/``asset(symbol)`` refresh on
    a miss (at most every ``MISS_INTERVAL`` s), which covers a listing whose
    event has not arrived yet."""

    MISS_INTERVAL = 0.1
    CHECK_EVERY = 10.0

    def __init__(self, dsn: str, amqp_uri: Optional[str] = None, consumer: str = "catalogue"):
        self.dsn = dsn
        self.amqp_uri = amqp_uri
        self.consumer = consumer
        self.current = Catalogue()
        self.listeners: list[Callable[[Catalogue, Catalogue], None]] = []
        self.running = True
        self.following = False
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    # -- loading -----------------------------------------------------------------
    def _connect(self):
        import psycopg
        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)

    def load(self) -> Catalogue:
        with self._connect() as conn:
            return self._take(load(conn))

    def refresh(self) -> Catalogue:
        """Reload if the registry's version differs from ours."""
        self._checked_at = time.monotonic()
        with self._connect() as conn:
            version = conn.execute(VERSION_SQL).fetchone()[0]
            if version != self.current.version:
                return self._take(load(conn))
        return self.current

    def _take(self, catalogue: Catalogue) -> Catalogue:
        with self._lock:
            old = self.current
            if catalogue.version < old.version:
                return old
            self.current = catalogue
        install(catalogue)
        if catalogue.version != old.version:
            for listener in list(self.listeners):
                try:
                    listener(old, catalogue)
                except Exception:
                    log.exception("catalogue listener %r failed", listener)
        return catalogue

    def _refresh_on_miss(self) -> None:
        if time.monotonic() - self._checked_at >= self.MISS_INTERVAL:
            try:
                self.refresh()
            except Exception:
                log.exception("catalogue refresh failed")

    def market(self, symbol) -> Optional[MarketInfo]:
        market = self.current.market(symbol)
        if market is None and isinstance(symbol, str) and MARKET_SYMBOL.fullmatch(symbol):
            self._refresh_on_miss()
            market = self.current.market(symbol)
        return market

    def asset(self, symbol) -> Optional[AssetInfo]:
        asset = self.current.asset(symbol)
        if asset is None and isinstance(symbol, str) and ASSET_SYMBOL.fullmatch(symbol):
            self._refresh_on_miss()
            asset = self.current.asset(symbol)
        return asset

    def assets(self) -> Mapping[str, AssetInfo]:
        return self.current.assets()

    def markets(self) -> Mapping[str, MarketInfo]:
        return self.current.markets()

    # -- following the events ----------------------------------------------------
    def run(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Follow the registry's events until ``stop()``; reconnects on failure."""
        from services.common.consumer import keep_consuming  # Nameko's: not at import
        keep_consuming(self._follow, lambda: self.running, self._lost, 1.0,
                       f"catalogue follower {self.consumer}", sleep)

    def _lost(self) -> None:
        self.following = False

    def _follow(self) -> None:
        from kombu import Connection, Consumer, Exchange, Queue
        exchange = Exchange(EXCHANGE, type="topic", durable=True)
        queue = Queue(f"registry.catalogue.{self.consumer}.{uuid.uuid4().hex[:12]}",
                      exchange=exchange, routing_key="#", exclusive=True, auto_delete=True,
                      durable=False)
        with Connection(self.amqp_uri, heartbeat=10) as amqp:
            channel = amqp.channel()
            exchange(channel).declare()
            queue(channel).declare()
            # Bound first, loaded second: no change can fall between the two.
            self.load()
            self.following = True
            arrived = []
            with Consumer(channel, [queue], callbacks=[lambda body, m: arrived.append(m)],
                          accept=["json"]):
                last_check = time.monotonic()
                while self.running:
                    amqp.heartbeat_check()
                    try:
                        amqp.drain_events(timeout=1.0)
                    except socket.timeout:
                        pass
                    if arrived:
                        self.refresh()
                        for message in arrived:
                            message.ack()
                        arrived.clear()
                        last_check = time.monotonic()
                    elif time.monotonic() - last_check >= self.CHECK_EVERY:
                        self.refresh()
                        last_check = time.monotonic()

    def stop(self) -> None:
        self.running = False


def follower_from_settings(settings, dbname: Optional[str] = None,
                           consumer: str = "gateway") -> CatalogueFollower:
    """A loaded follower for a non-Nameko process; run ``follower.run`` in a
    thread or greenlet to follow the events."""
    follower = CatalogueFollower(settings.postgres_dsn(dbname), settings.amqp_uri(), consumer)
    follower.load()
    return follower


try:
    from nameko.extensions import DependencyProvider
except ImportError:  # pragma: no cover - the gateway may not install Nameko
    DependencyProvider = object


def container_follower(container) -> CatalogueFollower:
    """A loaded follower for a Nameko container, made this process's
    refresher; call in a provider's ``setup`` and ``follow`` it in ``start``."""
    from services.common import green
    from services.common.config import load_settings
    green.install()
    config = container.config
    dsn = load_settings().postgres_dsn(config.get("POSTGRES_DB"))
    follower = CatalogueFollower(dsn, config["AMQP_URI"], container.service_name)
    follower.load()
    global _process_follower
    _process_follower = follower
    return follower


def follow_in(container, follower: CatalogueFollower):
    """Run ``follower`` in a managed thread of ``container``."""
    import eventlet
    return container.spawn_managed_thread(lambda: follower.run(sleep=eventlet.sleep))


class RegistryCatalogue(DependencyProvider):
    """Nameko provider: the catalogue loaded at setup and followed for the
    container's lifetime. Workers get the ``CatalogueFollower``; its
    ``current`` is an immutable snapshot. Container config: POSTGRES_DB."""

    def setup(self):
        self.follower = container_follower(self.container)

    def start(self):
        self.thread = follow_in(self.container, self.follower)

    def stop(self):
        self.follower.stop()
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.kill()

    kill = stop

    def get_dependency(self, worker_ctx):
        return self.follower
