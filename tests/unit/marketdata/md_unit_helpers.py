"""Builders shared by the marketdata unit tests."""
from decimal import Decimal

from services.marketdata.candles import CandleAggregator, CandleChanges
from services.marketdata.models import Trade

T0 = 1_795_392_000_000  # 2026-11-23T00:00:00Z, a Monday: every interval starts here


def trade(n: int, at: int, price: str = "100.00", qty: str = "1.0000", market: str = "BTC-USDT",
          seq: int | None = None, trade_id: str | None = None) -> Trade:
    p, q = Decimal(price), Decimal(qty)
    return Trade(market, trade_id or f"{market}-{n}", n if seq is None else seq, p, q, p * q,
                 "buy", 1, "maker", 2, "taker", at)


class FakeTables:
    """The two tables the aggregator's state is loaded from, in memory: what a
    pipeline would have written to Cassandra, so tests can drive the
    missing -> load -> apply protocol the way providers.IngestPipeline does."""

    def __init__(self):
        self.trades: dict[tuple[str, str], Trade] = {}
        self.candles: dict[tuple[str, str, int], object] = {}
        self.by_minute: dict[tuple[str, int], list[Trade]] = {}

    def minute_trades(self, market: str, minute: int) -> list[Trade]:
        return self.by_minute.get((market, minute), [])

    def write(self, changes: CandleChanges) -> None:
        for c in changes.upserts:
            self.candles[(c.market, c.interval, c.open_time)] = c
        for key in changes.deletes:
            self.candles.pop(key, None)

    def load(self, aggregator: CandleAggregator, needs) -> None:
        from services.marketdata.candles import INTERVALS
        for market, minute in needs.minutes:
            aggregator.load_minute(market, minute, self.minute_trades(market, minute))
        for market, parent, start in needs.children:
            child = INTERVALS[parent].child
            step = INTERVALS[child].ms
            found = (self.candles.get((market, child, t))
                     for t in range(start, start + INTERVALS[parent].ms, step))
            aggregator.load_children(market, parent, start, [c for c in found if c])

    def ingest(self, aggregator: CandleAggregator, batch: list[Trade]) -> CandleChanges:
        from services.marketdata.candles import MINUTE, floor_to
        for t in batch:
            if (t.market, t.trade_id) not in self.trades:
                self.trades[(t.market, t.trade_id)] = t
                self.by_minute.setdefault((t.market, floor_to(t.executed_at, MINUTE)), []).append(t)
        self.load(aggregator, aggregator.missing(batch))
        changes = aggregator.apply(batch)
        self.write(changes)
        return changes
