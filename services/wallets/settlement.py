"""Settling the engines' trades: consumed in publish order from a quorum queue
with one active consumer, in batches, each batch in one ledger transaction
(PostgresLedger.settle_trades, idempotent per trade id), acknowledged after the
commit. A crash before the ack redelivers the batch and settles nothing twice.
"""
from __future__ import annotations

import logging

from services.common.config import load_settings
from services.common.consumer import BatchConsumerProvider
from services.common.postgres import make_pool
from services.wallets import schemas
from services.wallets.errors import InvalidInput
from services.wallets.providers import PostgresLedger

log = logging.getLogger(__name__)


class TradeSettlement(BatchConsumerProvider):
    queue = "wallets.settlement"
    exchange = "matching.events"
    routing_keys = ["trade_executed"]
    batch = 200

    def setup_consumer(self):
        settings = load_settings()
        self.pool = make_pool(settings, self.container.config.get("POSTGRES_DB"), min_size=1,
                              max_size=3, name="wallets-settlement")
        self.ledger = PostgresLedger(self.pool)

    def stop(self):
        super().stop()
        self.pool.close()

    kill = stop

    def handle(self, batch) -> None:
        trades = []
        for _key, message_id, body in batch:
            try:
                trades.append(schemas.load_trade({k: body.get(k) for k in schemas.TRADE_KEYS}))
            except InvalidInput as exc:
                # Not settleable by this ledger (e.g. a market it does not list):
                # retrying cannot help, so it is logged for the operator.
                log.error("trade %s cannot be settled: %s", message_id, exc)
        if trades:
            self.ledger.settle_trades(trades)
