"""Trades of markets not (yet) in the registry's catalogue: parked in
Cassandra (``parked_trades``, cql/004) instead of dropped, and recorded as
soon as the catalogue lists their market.

A trade is parked before its message is acknowledged, so a crash redelivers
it; recording a parked trade is idempotent (trades are keyed by trade id), so
a crash between recording and deleting it records nothing twice.
"""
from __future__ import annotations

import json
import logging

from services.common import catalogue

log = logging.getLogger(__name__)


class ParkedTrades:
    def __init__(self, session):
        self.session = session
        self._park = session.prepare(
            "INSERT INTO parked_trades (market, trade_id, body, parked_at) "
            "VALUES (?, ?, ?, toTimestamp(now()))")
        self._take = session.prepare("SELECT trade_id, body FROM parked_trades WHERE market = ?")
        self._remove = session.prepare(
            "DELETE FROM parked_trades WHERE market = ? AND trade_id = ?")

    @staticmethod
    def parkable(body) -> bool:
        """A trade whose market could be listed one day (a market symbol)."""
        return (isinstance(body, dict) and isinstance(body.get("market"), str)
                and catalogue.MARKET_SYMBOL.fullmatch(body["market"]) is not None
                and isinstance(body.get("trade_id"), str) and 0 < len(body["trade_id"]) <= 200)

    def park(self, body: dict) -> None:
        self.session.execute(self._park, (body["market"], body["trade_id"], json.dumps(body)))

    def markets(self) -> list[str]:
        return [row.market for row in self.session.execute(
            "SELECT DISTINCT market FROM parked_trades")]

    def count(self) -> int:
        return self.session.execute("SELECT count(*) FROM parked_trades").one()[0]

    def take(self, market: str) -> list[tuple[str, dict]]:
        return [(row.trade_id, json.loads(row.body))
                for row in self.session.execute(self._take, (market,))]

    def remove(self, market: str, trade_ids: list[str]) -> None:
        for trade_id in trade_ids:
            self.session.execute(self._remove, (market, trade_id))
