"""Nameko service `registry`: the one owner of assets and markets.

Admin verbs (an access token of a person with the realm role ``admin``):
``list_asset``, ``list_market``, ``update_market``, ``halt_market`` and
``resume_market`` (a market's status has its one home here: orders and the
engine follow it), ``announce`` (publishes a current definition again:
docs/events.md). Each change validates, journals
and announces its change (``asset_listed``, ``market_listed``,
``market_updated`` on ``registry.events``, through the outbox) in one
transaction; listing the same definition again is a no-op. Reads:
``get_catalogue`` (public facts, as an exchange's ``exchangeInfo``) and
``journal`` (admin). Other services do not call this service to read the
catalogue: they load it through ``registry.catalogue()`` (services.common.
catalogue), so they start and trade while this process is down.
"""
from __future__ import annotations

from services.common import catalogue, grammar, json_codec, rpc_replies
from services.common.deadlines import rpc
from services.common.metrics import ServiceMetrics
from services.common.errors import CodedError
from services.common.outbox import OutboxRelay
from services.common.postgres import PostgresPool

from . import listing
from .admin import Admins, actor_of

rpc_replies.install()
json_codec.install()


class RegistryService:
    name = "registry"

    db = PostgresPool()
    relay = OutboxRelay(listing.OUTBOX_STREAM)
    admin = Admins()
    metrics = ServiceMetrics()

    @rpc
    def health(self):
        with self.db.transaction() as conn:
            version = conn.execute(catalogue.VERSION_SQL).fetchone()[0]
        return {"status": "ok", "version": version, "relay_active": self.relay.active}

    @rpc
    def get_catalogue(self):
        """``{version, assets: {symbol: spec}, markets: {symbol: spec}}``."""
        with self.db.transaction() as conn:
            return catalogue.load(conn).to_document()

    @rpc(expected_exceptions=CodedError)
    def list_asset(self, token, spec):
        """List an asset: ``{symbol, scale, chain, confirmations, withdrawal_fee,
        min_withdrawal, daily_withdrawal_limit[, deposit_enabled, withdraw_enabled]}``
        (amounts: decimal strings in whole units). Returns ``{asset, listed}``."""
        actor = actor_of(self.admin(token))
        with self.db.transaction() as conn:
            asset, listed = listing.list_asset(conn, actor, spec)
        return {"asset": asset, "listed": listed}

    @rpc(expected_exceptions=CodedError)
    def list_market(self, token, spec):
        """List a market between two listed assets: ``{symbol, base, quote,
        tick_size, lot_size, maker_fee, taker_fee[, min_quantity, max_quantity,
        min_notional, price_band_percent, max_open_orders, default_stp, status]}``.
        Returns ``{market, listed}``."""
        actor = actor_of(self.admin(token))
        with self.db.transaction() as conn:
            market, listed = listing.list_market(conn, actor, spec)
        return {"market": market, "listed": listed}

    @rpc(expected_exceptions=CodedError)
    def update_market(self, token, symbol, changes):
        """Change a market's limits, fees or status (not its symbol, assets,
        tick or lot); the market after the change."""
        actor = actor_of(self.admin(token))
        with self.db.transaction() as conn:
            return listing.update_market(conn, actor, symbol, changes)

    @rpc(expected_exceptions=CodedError)
    def halt_market(self, token, symbol):
        """Stop trading a market (status ``halted``): orders refuse new orders
        and amends with ``ORDER_REJECTED``/``MARKET_HALTED``, the engine
        follows (a journaled halt; cancels still work). The market after it."""
        return self.update_market(token, symbol, {"status": catalogue.HALTED})

    @rpc(expected_exceptions=CodedError)
    def resume_market(self, token, symbol):
        """Trade a halted or pre-trading market again (status ``trading``)."""
        return self.update_market(token, symbol, {"status": catalogue.TRADING})

    @rpc(expected_exceptions=CodedError)
    def announce(self, token, symbol):
        """Publish an asset's or a market's current definition again through
        the outbox (a lost ``market_listed``, a consumer that missed a
        change); changes and journals nothing. ``{symbol, event, version,
        message_id}``."""
        actor = actor_of(self.admin(token))
        with self.db.transaction() as conn:
            return listing.announce(conn, actor, symbol)

    @rpc(expected_exceptions=CodedError)
    def journal(self, token, limit=100):
        self.admin(token)
        limit = grammar.integer(limit, "limit", minimum=1, maximum=1000)
        with self.db.transaction() as conn:
            return listing.journal(conn, limit)
