"""Throw-away assets and markets for integration tests, listed through the
registry's own listing code (validated, journaled, announced through the
outbox), as an operator's CLI call would, minus the token check that
tests/integration/registry covers. A market is delisted again after its test
(matching hosts no engine for a delisted market), so the shared test
database does not collect engines."""
from __future__ import annotations

import uuid
from contextlib import contextmanager

import psycopg

from services.common import catalogue
from services.registry import listing

ACTOR = "test:registry_kit"


def asset_spec(symbol: str, scale: int = 8, chain: str = "bitcoin", **overrides) -> dict:
    return {"symbol": symbol, "scale": scale, "chain": chain, "confirmations": 1,
            "withdrawal_fee": "0", "min_withdrawal": "0", "daily_withdrawal_limit": "1000000",
            **overrides}


def market_spec(symbol: str, tick: str = "0.01", lot: str = "0.0001", **overrides) -> dict:
    base, quote = symbol.split("-")
    return {"symbol": symbol, "base": base, "quote": quote, "tick_size": tick, "lot_size": lot,
            "maker_fee": "0.001", "taker_fee": "0.002", **overrides}


def list_asset(settings, spec: dict) -> dict:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        asset, _ = listing.list_asset(conn, ACTOR, spec)
    catalogue.load_from_settings(settings)
    return asset


def list_market(settings, spec: dict, base_asset: dict | None = None) -> dict:
    """List the market (and its base asset, given or a default 8-decimal one)."""
    with psycopg.connect(settings.postgres_dsn()) as conn:
        if base_asset is not None or catalogue.current().asset(spec["base"]) is None:
            listing.list_asset(conn, ACTOR, base_asset or asset_spec(spec["base"]))
        market, _ = listing.list_market(conn, ACTOR, spec)
    catalogue.load_from_settings(settings)
    return market


def change_market(settings, symbol: str, changes: dict) -> None:
    """Change the market in the registry (its one home: orders and the engine
    follow its ``market_updated``, which a registry container relays)."""
    with psycopg.connect(settings.postgres_dsn()) as conn:
        listing.update_market(conn, ACTOR, symbol, changes)
    catalogue.load_from_settings(settings)


def set_status(settings, symbol: str, status: str) -> None:
    change_market(settings, symbol, {"status": status})


def dropping_its_event(settings, symbol: str, change) -> int:
    """Run ``change(conn)`` (a listing or update of the market ``symbol``,
    through services.registry.listing) and delete the event it put in the
    outbox inside the same transaction: no relay can ever publish it (an
    event lost between the registry's commit and the broker). The version."""
    with psycopg.connect(settings.postgres_dsn()) as conn:
        change(conn)
        version = conn.execute("SELECT version FROM registry.markets WHERE symbol = %s",
                               (symbol,)).fetchone()[0]
        dropped = conn.execute("DELETE FROM outbox WHERE stream = %s AND message_id = %s",
                               (listing.OUTBOX_STREAM, f"registry:{version}")).rowcount
    assert dropped == 1, f"the change of {symbol} had its event in the outbox"
    return version


def delist(settings, symbol: str) -> None:
    set_status(settings, symbol, catalogue.DELISTED)


def new_symbol(quote: str = "USDT") -> str:
    return f"T{uuid.uuid4().hex[:8].upper()}-{quote}"


@contextmanager
def throwaway_market(settings, symbol: str | None = None, **market_overrides):
    symbol = symbol or new_symbol()
    list_market(settings, market_spec(symbol, **market_overrides))
    try:
        yield symbol
    finally:
        delist(settings, symbol)
