"""Listing and changing assets and markets: validate, journal, announce.

Every change runs in the caller's transaction: the registry's row, its
journal entry (``registry.changes``, append-only) and its event in the
outbox (stream ``registry``, exchange ``registry.events``) commit together.
Changes serialise on one advisory lock, so each validates against the
catalogue as it is.

The rules of a consistent catalogue live in services.common.catalogue; this
module adds the one that needs the engine: its ``MarketConfig`` must accept
the market's limits.
"""
from __future__ import annotations

import json
import logging
import uuid
import zlib

from psycopg.types.json import Jsonb

from services.common import catalogue, events, grammar
from services.common.catalogue import DELISTED, AssetInfo, MarketInfo
from services.common.errors import InvalidInput
from services.common.outbox import enqueue_event
from services.matching.models import ConfigError, MarketConfig

from .errors import (AssetExists, ImmutableField, InvalidMarket, InvalidStatusChange,
                     MarketExists, UnknownAsset, UnknownMarket)

log = logging.getLogger(__name__)

OUTBOX_STREAM = "registry"
LOCK = zlib.crc32(b"registry:changes")
MUTABLE = ("min_quantity", "max_quantity", "min_notional", "price_band_percent",
           "max_open_orders", "default_stp", "maker_fee", "taker_fee", "status")


def _locked_catalogue(conn) -> catalogue.Catalogue:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
    return catalogue.load(conn)


def _journal(conn, actor: str, kind: str, symbol: str, spec: dict, change: dict) -> int:
    version = conn.execute(
        "INSERT INTO registry.changes (actor, kind, symbol, spec, change) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (actor, kind, symbol, Jsonb(spec), Jsonb(change))).fetchone()[0]
    event = events.ALL[kind]
    enqueue_event(conn, OUTBOX_STREAM, event.source, event.name, f"registry:{version}",
                  event.build(version=version, symbol=symbol, spec=spec, change=change))
    return version


def _list(conn, actor: str, kind: str, found, listed, exists: type, insert: str,
          columns: tuple) -> tuple[dict, bool]:
    """List ``listed`` unless ``found`` (the same one already listed: a no-op,
    ``listed`` False; another definition: ``exists``). ``insert`` takes
    ``columns`` then the definition and its version."""
    if found is not None:
        if found != listed:
            raise exists(message=f"{listed.symbol} is listed with another definition")
        return found.to_dict(), False
    document = listed.to_dict()
    version = _journal(conn, actor, kind, listed.symbol, document, document)
    conn.execute(insert, (*columns, Jsonb(document), version))
    return document, True


def list_asset(conn, actor: str, spec) -> tuple[dict, bool]:
    """``(asset, listed)``: ``listed`` False when the same asset was listed
    already (idempotent); AssetExists when it differs."""
    asset = AssetInfo.from_dict(spec)
    current = _locked_catalogue(conn)
    return _list(conn, actor, catalogue.ASSET_LISTED, current.asset(asset.symbol), asset,
                 AssetExists, "INSERT INTO registry.assets (symbol, scale, spec, version) "
                 "VALUES (%s, %s, %s, %s)", (asset.symbol, asset.scale))


def _check_engine(market: MarketInfo) -> None:
    try:
        MarketConfig.from_dict(market.engine_config())
    except (ConfigError, ValueError) as exc:
        raise InvalidMarket(message=f"{market.symbol}: {exc}") from None


def list_market(conn, actor: str, spec) -> tuple[dict, bool]:
    """``(market, listed)``, idempotent as ``list_asset``."""
    market = MarketInfo.from_dict(spec)
    current = _locked_catalogue(conn)
    current.with_market(market)
    _check_engine(market)
    return _list(conn, actor, catalogue.MARKET_LISTED, current.market(market.symbol), market,
                 MarketExists, "INSERT INTO registry.markets (symbol, base, quote, status, spec, "
                 "version) VALUES (%s, %s, %s, %s, %s, %s)",
                 (market.symbol, market.base, market.quote, market.status))


def update_market(conn, actor: str, symbol, changes) -> dict:
    """Change a listed market's limits, fees or status; the market after it.
    A change to nothing is journaled nowhere and returns the market."""
    if not isinstance(changes, dict) or not changes:
        raise InvalidInput("INVALID_INPUT", "changes must be a non-empty object", "changes")
    for name in changes:
        if name not in MUTABLE:
            if name in MarketInfo.__dataclass_fields__:
                raise ImmutableField(message=f"{name} cannot change", field=name)
            raise InvalidInput("UNKNOWN_FIELD", f"unknown field {str(name)[:64]!r}",
                               str(name)[:64])
    current = _locked_catalogue(conn)
    existing = current.market(symbol)
    if existing is None:
        raise UnknownMarket(message=f"{str(symbol)[:40]!r} is not listed")
    market = MarketInfo.from_dict({**existing.to_dict(), **changes})
    if existing.status == DELISTED and market.status != DELISTED:
        raise InvalidStatusChange(message=f"{existing.symbol} is delisted", field="status")
    current.with_market(market)
    _check_engine(market)
    if market == existing:
        return existing.to_dict()
    document = market.to_dict()
    applied = {k: document[k] for k in changes}
    version = _journal(conn, actor, catalogue.MARKET_UPDATED, market.symbol, document, applied)
    conn.execute("UPDATE registry.markets SET status = %s, spec = %s, version = %s "
                 "WHERE symbol = %s", (market.status, Jsonb(document), version, market.symbol))
    return document


def announce(conn, actor: str, symbol) -> dict:
    """Publish an asset's or a market's current definition again, as the
    event of its last change (``asset_listed``, ``market_listed`` or
    ``market_updated``) with the catalogue version of that change: the
    operator's way to re-announce an event that was lost (docs/events.md).
    Its ``change`` is the whole definition, as a listing's is: a consumer
    acts on every field again (matching re-sends its engine the status,
    under an id it has journaled if it had it). Changes nothing and journals
    nothing: a follower that has the version already ignores it, one that
    missed it reloads. Each announcement is a new message (its own id), so
    no consumer's dedup swallows it.
    ``{symbol, event, version, message_id}``; UnknownAsset/UnknownMarket
    when nothing is listed under ``symbol``."""
    symbol = grammar.text(symbol, "symbol", max_len=33)
    current = _locked_catalogue(conn)
    found = current.market(symbol) or current.asset(symbol)
    if found is None:
        missing = UnknownMarket if catalogue.MARKET_SYMBOL.fullmatch(symbol) else UnknownAsset
        raise missing(message=f"{symbol[:40]!r} is not listed")
    table = "markets" if isinstance(found, MarketInfo) else "assets"
    version, kind = conn.execute(
        f"SELECT c.id, c.kind FROM registry.{table} t JOIN registry.changes c ON c.id = t.version "
        "WHERE t.symbol = %s", (symbol,)).fetchone()
    document = found.to_dict()
    event = events.ALL[kind]
    message_id = f"registry:{version}:announced:{uuid.uuid4().hex}"
    enqueue_event(conn, OUTBOX_STREAM, event.source, event.name, message_id,
                  event.build(version=version, symbol=symbol, spec=document, change=document))
    log.info("%s announced %s again (%s, version %s)", actor, symbol, kind, version)
    return {"symbol": symbol, "event": kind, "version": version, "message_id": message_id}


def journal(conn, limit: int = 100) -> list[dict]:
    rows = conn.execute("SELECT id, at, actor, kind, symbol, change FROM registry.changes "
                        "ORDER BY id DESC LIMIT %s", (limit,)).fetchall()
    return [{"version": i, "at": at.isoformat(), "actor": actor, "kind": kind, "symbol": s,
             "change": json.loads(json.dumps(change))} for i, at, actor, kind, s, change in rows]
