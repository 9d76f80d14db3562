"""Settling the engines' trades: consumed in publish order from a quorum queue
with one active consumer, up to ``batch`` messages at a time, settled in
ledger batches of ``ledger_batch`` trades, each in one ledger transaction
(PostgresLedger.settle_batches: idempotent per trade id, pipelined -- the next
ledger batch is built while the previous one commits -- and committed in
order), and acknowledged only after every one of them committed. A crash
before the ack redelivers the messages and settles nothing twice.
A trade the ledger refuses (locked funds short, an id reused with other
content) is parked in wallets.unsettled_trades, reported by audit(), and the
stream goes on; a trade of a market this ledger does not list is logged.
"""
from __future__ import annotations

import logging

from psycopg.types.json import Jsonb

from services.common.config import load_settings
from services.common.consumer import BatchConsumerProvider
from services.common.postgres import make_pool
from services.wallets import schemas
from services.wallets.errors import InvalidInput, WalletsError
from services.wallets.providers import PostgresLedger

log = logging.getLogger(__name__)


class TradeSettlement(BatchConsumerProvider):
    queue = "wallets.settlement"
    exchange = "matching.events"
    routing_keys = ["trade_executed"]
    batch = 1000  # messages per handle call (the prefetch), acked together
    ledger_batch = 100  # trades per ledger transaction

    def setup_consumer(self):
        settings = load_settings()
        self.pool = make_pool(settings, self.container.config.get("POSTGRES_DB"), min_size=2,
                              max_size=5, name="wallets-settlement")
        self.ledger = PostgresLedger(self.pool)

    def stop(self):
        super().stop()
        self.pool.close()

    kill = stop

    def handle(self, batch) -> None:
        trades = []
        for _key, message_id, body in batch:
            try:
                trades.append((body, schemas.load_trade({k: body.get(k) for k in schemas.TRADE_KEYS})))
            except InvalidInput as exc:
                # A market this ledger does not list (wallets' registry and the
                # engines' markets are separate today): logged for the operator.
                log.error("trade %s is not settleable here: %s", message_id, exc)
        if not trades:
            return
        bodies = {trade.key: body for body, trade in trades}
        settleable = [trade for _, trade in trades]

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

        self.ledger.settle_batches(
            [settleable[i:i + self.ledger_batch] for i in range(0, len(settleable), self.ledger_batch)],
            refused=refused)

    def park(self, body: dict, error: Exception) -> None:
        log.error("trade %s of %s cannot be settled: %s", body.get("trade_id"), body.get("market"),
                  error)
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO wallets.unsettled_trades (market, trade_id, trade, error) "
                         "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                         (str(body.get("market")), str(body.get("trade_id")), Jsonb(body),
                          str(error)[:500]))
