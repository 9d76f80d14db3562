"""Trades of markets not (yet) in the registry's catalogue: parked in
Cassandra (``parked_trades``, cql/004) instead of dropped, and sent back to
the trade queue as soon as the catalogue lists their market.

A trade is parked before its message is acknowledged, so a crash redelivers
it.

Sent back, not recorded here: the candles of a market have one writer, the
active consumer of the trade queue (docs/marketdata.md), and no instance can
tell whether it is that one. So whichever instance sees a parked trade's
market listed (at start, at each catalogue change, and every
``RETRY_S``) sends its parked trades to the trade queue as engine batches of
the trades audience (``ENGINE_BATCH``, at most ``CHUNK`` trades a message),
and the active consumer ingests them exactly as it ingests live trades.

They go through an exchange of the queue's own (``parked_exchange``), bound
to that queue only: not ``matching.events``, where wallets and orders would
settle them again, and not RabbitMQ's default exchange, to which no principal
but the operator may publish (it reaches every queue: docs/security.md).
Marketdata's login owns ``marketdata.*`` (stack/rabbitmq_access.py).

Each message is confirmed by the broker before its rows are removed; the
removal carries the rows' write time (``USING TIMESTAMP``), so a trade parked
again meanwhile (a consumer whose catalogue was still behind) stays parked
for the next pass. A crash between the confirm and the removal, or two
instances sending the same rows after one catalogue change, puts a trade in
the queue twice: safe, as ingest is idempotent per trade id (trades are
upserted by id; a minute's candle is built from a bucket that holds each
trade id once, loaded from the trades table when not in memory; coarser
candles and the ticker are recomputed from the minutes, never added to).
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Iterator

from cassandra.concurrent import execute_concurrent_with_args
from kombu import Connection, Exchange

from services.common import catalogue
from services.common.events import ENGINE_BATCH, TRADE_EXECUTED, TRADES_AUDIENCE
from services.common.outbox import ConfirmedPublisher, PublishNotConfirmed, command_queue

log = logging.getLogger(__name__)

CHUNK = 200         # parked trades read, sent (one message, ~90 KB) and removed at a time
RETRY_S = 30.0      # a pass that failed, or a trade parked behind one, is taken up again
SEND_ATTEMPTS = 3   # a fresh quorum queue's first publish may be nacked (outbox.py)


def parked_exchange(queue: str) -> str:
    """The exchange parked trades go back to ``queue`` through (named after
    it: the service's login may declare and publish to it)."""
    return f"{queue}.parked"


@dataclass(frozen=True)
class Parked:
    trade_id: str
    body: dict
    written: int        # the row's write time (µs): its removal spares a later park


class ParkedTrades:
    def __init__(self, session):
        self.session = session
        self._park = session.prepare(
            "INSERT INTO parked_trades (market, trade_id, body, parked_at) "
            "VALUES (?, ?, ?, toTimestamp(now()))")
        self._take = session.prepare(
            "SELECT trade_id, body, WRITETIME(body) FROM parked_trades WHERE market = ?")
        self._remove = session.prepare(
            "DELETE FROM parked_trades USING TIMESTAMP ? WHERE market = ? AND trade_id = ?")

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

    def pages(self, market: str, size: int = CHUNK) -> Iterator[list[Parked]]:
        """The market's parked trades, ``size`` at a time; each row once per
        call, whatever is removed or parked again meanwhile (driver paging)."""
        statement = self._take.bind((market,))
        statement.fetch_size = size
        result = self.session.execute(statement)
        while True:
            page = [Parked(row[0], json.loads(row[1]), row[2]) for row in result.current_rows]
            if page:
                yield page
            if not result.has_more_pages:
                return
            result.fetch_next_page()

    def remove(self, market: str, parked: list[Parked]) -> None:
        """Each row as it was read: a park of the same trade since (a newer
        write) is kept."""
        execute_concurrent_with_args(
            self.session, self._remove, [(p.written, market, p.trade_id) for p in parked],
            concurrency=50, raise_on_first_error=True)


def engine_batch(market: str, bodies: list[dict]) -> dict:
    """``bodies`` (``trade_executed`` payloads of ``market``, checked) as the
    engine publishes a batch to the trades audience (services/matching/wire.py),
    the one message format the trade consumer reads batches in. ``at``: the
    last trade's execution (what the ingest lag is measured from)."""
    return ENGINE_BATCH.build(
        market=market, first_seq=min(b["seq"] for b in bodies),
        last_seq=max(b["seq"] for b in bodies), at=max(b["executed_at"] for b in bodies),
        events=[[TRADE_EXECUTED.name, b["trade_id"], b] for b in bodies])


class ParkedSender:
    """Sends parked trades to the trade queue ``queue``, each message confirmed
    by the broker. A context manager: one connection for a pass."""

    def __init__(self, amqp_uri: str, queue: str, timeout_s: float = 30.0):
        self.amqp_uri = amqp_uri
        self.queue = queue
        self.exchange = parked_exchange(queue)
        self.timeout_s = timeout_s
        self.amqp = None

    def __enter__(self) -> "ParkedSender":
        self.amqp = Connection(self.amqp_uri)
        self.amqp.connect()
        # The queue too, bound: a message sent before the consumer ever
        # declared it (a fresh deployment) waits there instead of being
        # dropped, its confirm notwithstanding.
        channel = self.amqp.default_channel
        exchange = Exchange(self.exchange, type="topic", durable=True)(channel)
        exchange.declare()
        queue = command_queue(self.queue)(channel)
        queue.declare()
        queue.bind_to(exchange, routing_key=TRADES_AUDIENCE)
        return self

    def __exit__(self, *exc) -> None:
        self.amqp.release()

    def send(self, market: str, bodies: list[dict]) -> None:
        """One message of ``bodies``; returns once the broker confirmed it.
        Raises PublishNotConfirmed after ``SEND_ATTEMPTS`` nacks (the rows
        then stay parked; a copy that did arrive is ingested once)."""
        body = json.dumps(engine_batch(market, bodies), separators=(",", ":"))
        for attempt in range(1, SEND_ATTEMPTS + 1):
            publisher = ConfirmedPublisher(self.amqp, self.timeout_s)   # a channel of its own
            try:
                publisher.publish(body, self.exchange, TRADES_AUDIENCE,
                                  f"parked:{market}:{uuid.uuid4().hex}")
                publisher.confirm()
                return
            except PublishNotConfirmed:
                if attempt == SEND_ATTEMPTS:
                    raise
                log.warning("parked trades of %s nacked; sending again", market)
            finally:
                try:
                    publisher.channel.close()
                except Exception:   # noqa: BLE001 -- a channel the broker closed already
                    pass
