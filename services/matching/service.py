"""Nameko service `matching`: hosts one engine per market (see providers.py)
and answers admin and query RPCs. Orders reach the engines through the command
queues, not through RPC.

A market's status has one home, the registry (services/registry: operators
halt and resume there). Its engine follows: on ``market_updated`` with a
status change, a journaled ``halt`` (any status but ``trading``) or
``resume`` command goes into the market's command queue, so active engine,
standbys and replays agree (docs/matching-engine.md)."""
from __future__ import annotations

import logging
import uuid
import zlib

import eventlet

from services.common import catalogue, events, grammar, json_codec, rpc_replies
from services.common.deadlines import rpc
from services.common.errors import CodedError, InvalidInput
from services.common.metrics import ServiceMetrics
from services.common.outbox import OutboxRelay, enqueue_command
from services.common.postgres import PostgresPool
from services.common.principals import AdminPrincipal
from services.common.queues import replicated_event_handler

from .compiled import require_current_engine
from .errors import InvalidMarket, UnknownMarket
from .models import (
    MAX_PRICE_TICKS, Configure, Halt, InvalidValue, MarketConfig, Reason, Resume,
    SetReferencePrice, command_to_dict,
)
from .providers import OUTBOX_STREAM, RELAY_IN_FLIGHT, MarketEngines, command_queue_name

rpc_replies.install()
json_codec.install()
require_current_engine()
log = logging.getLogger(__name__)
REQUEUE_PAUSE_S = 1.0
# The registry's changeable market fields that the engine itself checks.
ENGINE_LIMITS = frozenset(Configure._fields)


def _argument(parse, value, field: str, **limits):
    """An RPC argument through the strict grammar; ``INVALID_MARKET`` naming
    the field otherwise."""
    try:
        return parse(value, field, **limits)
    except InvalidInput as exc:
        raise InvalidMarket(f"{field}: {exc.code}: {exc.message}") from None


def _symbol(market) -> str:
    return _argument(grammar.text, market, "market", max_len=32)


class MatchingService:
    name = "matching"

    db = PostgresPool()
    engines = MarketEngines()
    # Pipelined (outbox.py): an engine batch's events, the live push's
    # among them, go out right after its commit, not after the previous
    # batch's confirm.
    relay = OutboxRelay(OUTBOX_STREAM, in_flight=RELAY_IN_FLIGHT)
    metrics = ServiceMetrics()
    caller = AdminPrincipal()

    @rpc
    def health(self):
        with self.db.transaction() as conn:
            conn.execute("SELECT 1")
        return {"status": "ok", "markets": {m: {"active": h.active, "seq": h.engine and h.engine.seq}
                                            for m, h in self.engines.hosts.items()}}

    # -- markets (admin) -------------------------------------------------------
    @rpc
    def list_markets(self):
        """The engines' configurations of the registry's markets (listing is
        the registry's: services/registry)."""
        markets = self.engines.catalogue.markets()
        return [markets[symbol].engine_config() for symbol in sorted(markets)]

    # requeue_on_error: Nameko acks a message whose worker raised unless told
    # otherwise, and a status change that failed (the database failing over,
    # say) was then lost: orders said trading while the engine stayed halted.
    # Handling it again is harmless (idempotent, below); a payload that cannot
    # be parsed is dropped with a log line instead, or it would come back
    # forever.
    @replicated_event_handler(events.MARKET_UPDATED.source, events.MARKET_UPDATED.name,
                              requeue_on_error=True)
    def follow_market_status(self, payload):
        """The engine follows the registry's status and limits of its market
        (the entrypoint keeps its first name: it names the queue). Handled by
        one process of the service; idempotent (each command's id is the
        catalogue version it follows, and the engine skips a journaled id)."""
        try:
            event = events.MARKET_UPDATED.parse(payload)
            symbol = event["symbol"]
        except (events.UnsupportedEvent, KeyError, TypeError):
            log.error("market_updated dropped, cannot be read: %.500r", payload)
            return
        changed = set(event.get("change") or {})
        status, limits = "status" in changed, bool(changed & ENGINE_LIMITS)
        if status or limits:
            try:
                self.follow_market(symbol, status=status, limits=limits)
            except Exception:
                eventlet.sleep(REQUEUE_PAUSE_S)   # requeued: not a hot loop while it fails
                raise

    def follow_market(self, symbol: str, status: bool, limits: bool) -> None:
        """Send the engine of ``symbol`` what the registry says now: ``halt``
        or ``resume`` (``status``), ``configure`` with every limit the engine
        checks (``limits``). Read under a per-market lock in the enqueuing
        transaction: two changes handled at once are enqueued in the
        registry's order, never the older last. Journaled commands, so the
        active engine, its standbys and every replay agree on when the market
        halted or its limits changed (a limit read from the registry at
        replay time would re-judge old orders by new rules)."""
        with self.db.transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)",
                         (zlib.crc32(f"matching:status:{symbol}".encode()),))
            current = catalogue.load(conn)
            market = current.market(symbol)
            if market is None or self.engines.market(symbol) is None:
                return
            commands = []
            if limits:
                commands.append((Configure.of(MarketConfig.from_dict(market.engine_config())),
                                 "configure"))
            if status:
                commands.append((Resume(), "resume") if market.tradable else (Halt(), "halt"))
            for command, verb in commands:
                enqueue_command(conn, OUTBOX_STREAM, command_queue_name(symbol),
                                f"registry:{current.version}:{verb}:{symbol}",
                                {"command": command_to_dict(command)})

    # Admin verbs: for a person with the realm role admin, whose access token
    # is in the call's context data (services.common.principals). Halting and
    # resuming are the registry's (the market's status), not these.
    @rpc(expected_exceptions=CodedError)
    def set_reference_price(self, market: str, price: str):
        """The price band's reference (trades move it too), e.g. when opening a market."""
        self.caller.admin()
        config = self._host(market).config
        try:
            ticks = config.price_to_ticks(price)
        except InvalidValue as exc:
            raise InvalidMarket(f"price: {exc}") from None
        if ticks > MAX_PRICE_TICKS:
            raise InvalidMarket(f"price: {Reason.INVALID_PRICE}: beyond the engine's range")
        return self._send(market, SetReferencePrice(ticks), "reference_price")

    # The admin sweep of a market's orders is orders' (orders.cancel_market_orders):
    # sent from here, by another stream than the places, it could overtake an
    # order acknowledged before it, and the book here lacks the orders still
    # on their way (docs/order-flow.md).

    def _send(self, market: str, command, verb: str):
        market = _symbol(market)
        if self.engines.market(market) is None:
            raise UnknownMarket(message=f"{str(market)[:40]!r} is not a listed market")
        with self.db.transaction() as conn:
            command_id = f"{verb}:{market}:{uuid.uuid4()}"
            enqueue_command(conn, OUTBOX_STREAM, command_queue_name(market), command_id,
                            {"command": command_to_dict(command)})
        return {"market": market, "command_id": command_id}

    # -- queries (from this process's engine: the active one, or a warm standby) --
    def _host(self, market: str):
        host = self.engines.host(_symbol(market))
        if host is None:
            raise UnknownMarket(message=f"{str(market)[:40]!r} is not a listed market")
        if host.engine is None:
            host.keep_warm()
        return host

    @rpc
    def get_depth(self, market: str, limit: int = 50):
        host = self._host(market)
        engine, config = host.engine, host.config
        depth = engine.depth(max(1, min(_argument(grammar.integer, limit, "limit"), 1000)))
        reference = engine.reference_price
        return {"market": market, "seq": engine.seq, "halted": engine.halted,
                "reference_price": None if reference is None else config.ticks_to_price(reference),
                **{side: [[config.ticks_to_price(p), config.lots_to_qty(q)] for p, q in levels]
                   for side, levels in depth.items()}}

    @rpc
    def get_engine_order(self, market: str, order_id: int):
        return self._host(market).engine.order(
            _argument(grammar.integer, order_id, "order_id", minimum=1))
