"""Settling the engines' trades: consumed in publish order from a quorum queue
with one active consumer, up to ``batch`` messages (one per engine batch) at
a time, settled in ledger batches of whole messages (at least
``ledger_batch`` trades unless the delivery has fewer), each in one ledger
transaction with the accounts locked in id order
(PostgresLedger.settle_batches: idempotent per trade id, pipelined -- the next
ledger batch is built while the previous one commits -- and committed in
order), and acknowledged only after every one of them committed. A crash
before the ack redelivers the messages and settles nothing twice.
A trade the ledger refuses (locked funds short, an id reused with other
content) is parked in wallets.unsettled_trades, reported by audit(), and the
stream goes on. A trade of a market the registry's catalogue does not list
(yet) is parked in wallets.parked_trades -- health() says degraded, audit()
reports it -- and settled when the catalogue changes and lists its market
(and at start); nothing is dropped.
"""
from __future__ import annotations

import logging

from psycopg.types.json import Jsonb

from services.common import catalogue
from services.common.config import load_settings
from services.common.consumer import BatchConsumerProvider
from services.common.events import TRADES_AUDIENCE, UnsupportedEvent, trade_executed, unpack
from services.common.postgres import make_pool
from services.wallets import schemas
from services.wallets.errors import InvalidInput, UnknownMarket, WalletsError
from services.wallets.providers import PostgresLedger

log = logging.getLogger(__name__)


class TradeSettlement(BatchConsumerProvider):
    queue = "wallets.settlement"
    exchange = "matching.events"
    # One message per engine batch with its trades (services/matching/wire.py);
    # "trade_executed" is the one-trade format before it (a queue may still
    # hold such, tools and tests send them).
    routing_keys = [TRADES_AUDIENCE, "trade_executed"]
    batch = 200  # messages per handle call (the prefetch), acked together
    # Trades per ledger transaction, at least: whole messages are put
    # together until they reach it, so an engine batch's trades always
    # settle in ONE transaction (of any size), never split over two.
    ledger_batch = 100

    def setup_consumer(self):
        settings = load_settings()
        self.pool = make_pool(settings, self.container.config.get("POSTGRES_DB"), min_size=2,
                              max_size=5, name="wallets-settlement")
        self.ledger = PostgresLedger(self.pool)

    def stop(self):
        if getattr(self, "catalogue", None) is not None:
            self.catalogue.stop()
        super().stop()
        self.pool.close()

    kill = stop

    def handle(self, deliveries) -> None:
        bodies, ledger_batches, current = {}, [], []
        for delivery in deliveries:
            try:
                events = unpack(*delivery)
            except UnsupportedEvent as exc:
                log.error("matching events %s are not settleable: %s", delivery[1], exc)
                continue
            for _name, event_id, body in events:
                trade = self._load(event_id, body)
                if trade is not None:
                    bodies[trade.key] = body
                    current.append(trade)
            if len(current) >= self.ledger_batch:
                ledger_batches.append(current)
                current = []
        if current:
            ledger_batches.append(current)
        if not ledger_batches:
            return

        def refused(batch, error):
            # One refused trade must not stop the stream: settle this ledger
            # batch one by one and park what the ledger refuses (audit()
            # reports it until resolved). Runs before the next batch is posted.
            for trade in batch:
                try:
                    self.ledger.settle_trades([trade])
                except WalletsError as exc:
                    self.park(bodies[trade.key], exc)
            return []

        self.ledger.settle_batches(ledger_batches, refused=refused)

    def _load(self, event_id, body):
        """A trade event as the ledger's Trade; None if it cannot be settled
        now (an unknown market's is parked, a malformed one logged)."""
        try:
            event = trade_executed(body)
        except UnsupportedEvent as exc:
            log.error("trade %s is not settleable: %s", event_id, exc)
            return None
        try:
            return schemas.trade_from_event(event)
        except UnknownMarket as exc:
            if catalogue.MARKET_SYMBOL.fullmatch(event.market):
                self.park_unknown_market(body, exc)
            else:  # not a market symbol at all: nothing will ever list it
                log.error("trade %s is not settleable: %s", event_id, exc)
        except InvalidInput as exc:
            # Malformed: no later knowledge makes it settleable.
            log.error("trade %s is not settleable: %s", event_id, exc)
        return None

    # -- trades of markets not (yet) in the catalogue ----------------------------
    def start(self):
        super().start()
        self.catalogue = catalogue.container_follower(self.container)
        self.catalogue.listeners.append(lambda old, new: self.settle_parked())
        self.catalogue_thread = catalogue.follow_in(self.container, self.catalogue)
        self.container.spawn_managed_thread(self.settle_parked)

    def park_unknown_market(self, body: dict, error: Exception) -> None:
        log.warning("trade %s of unknown market %s parked until it is listed",
                    body.get("trade_id"), body.get("market"))
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO wallets.parked_trades (market, trade_id, trade, reason) "
                         "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                         (str(body.get("market"))[:200], str(body.get("trade_id"))[:200],
                          Jsonb(body), str(error)[:500]))

    def settle_parked(self) -> int:
        """Settle the parked trades whose market the catalogue lists now (each
        idempotently, by its trade id); the number taken out of the parking."""
        markets = list(catalogue.current().markets())
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT market, trade_id, trade FROM wallets.parked_trades "
                                "WHERE market = ANY(%s) ORDER BY parked_at, trade_id",
                                (markets,)).fetchall()
        for market, trade_id, body in rows:
            try:
                trade = schemas.trade_from_event(trade_executed(body))
                self.ledger.settle_trades([trade])
            except (WalletsError, InvalidInput, UnsupportedEvent) as exc:
                self.park(body, exc)
            with self.pool.connection() as conn:
                conn.execute("DELETE FROM wallets.parked_trades WHERE market = %s AND "
                             "trade_id = %s", (market, trade_id))
            log.info("parked trade %s of %s settled", trade_id, market)
        return len(rows)

    def park(self, body: dict, error: Exception) -> None:
        log.error("trade %s of %s cannot be settled: %s", body.get("trade_id"), body.get("market"),
                  error)
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO wallets.unsettled_trades (market, trade_id, trade, error) "
                         "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                         (str(body.get("market")), str(body.get("trade_id")), Jsonb(body),
                          str(error)[:500]))
