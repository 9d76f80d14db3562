"""The services' events -> Socket.IO rooms.

Two consumers in every gateway process:

* **The market bridge** (``streams="market"``): the public book diffs and
  trades. Each process consumes the engine's push messages
  (``engine_batch.push``) from a queue of its own (exclusive, gone with the
  process) and emits them to its own connections only, as soon as its
  consumer has handled what the broker had delivered (``PUSH_EVERY`` spaces
  a busy market's frames). Every process pushes the same streams because
  every process gets every engine batch; the diffs' ``first_seq``/``last_seq``
  come from the engine's batches, which chain, so each process's diff stream
  is the engine's, gap-free and in order (a redelivered batch, ``seq`` not
  newer than the last one emitted, is dropped). A process that lost its
  queue (a reconnection) starts its next diff at the batch's own
  ``first_seq``: a client that missed batches sees the gap and re-syncs with
  a snapshot. Before session 6 these streams went through the one active
  bridge and Flask-SocketIO's message queue: a second trip through RabbitMQ
  (and a JSON round trip) before the other processes could write a frame.
* **The private bridge** (``streams="private"``): ONE is active across all
  gateway processes: every process consumes the same queue
  (``gateway.push.<channel>``, bound to the events it needs) and RabbitMQ's
  single-active-consumer hands the messages to exactly one of them. It emits
  through Flask-SocketIO's message queue (kombu, a fanout exchange on our
  RabbitMQ), so a user's connection on any process gets its fills, order
  updates, balances and disconnects. One consumer, not one per process,
  because the reads an event causes (a user's balances after
  ``balances_changed``, a market's ticker and candles after a trade) are
  then made once, not once per gateway process. When the active gateway
  dies (kill -9 included) the broker hands the queue to a standby within the
  connection's loss; messages it had not acknowledged are redelivered. It
  acknowledges a message only once the flush after it has run (``flush``:
  the orders' first-fill take-offs, the balances read): a process killed
  in between leaves those to the standby, which gets the message again,
  instead of losing them with its memory (session 27; before, up to a
  flush's worth was lost). The standby pushes that message's fills and
  order updates again (the web client drops a fill it has: ``trade_id``);
  the take-offs count once (a mark per order in Memcached); the balances
  are read again. While a flush takes long (a service down: its reads wait
  for their deadline) at most ``ACK_DEFERRED_MAX`` messages wait for it,
  then they are acknowledged at once: the broker stops delivering at the
  prefetch, and the fills must keep flowing.

Frames of the market streams carry ``trace`` (ms stamps: ``at`` the engine
batch, ``relayed`` its outbox relay's send, ``consumed`` and ``pushed`` by
this bridge; ``received`` when a frame came through the message queue): the
push bench (bench/push_bench.py) prints the delay of each hop from them.

Public rooms carry no user or order ids (a trade's maker and taker stay
private); private rooms ``user:<id>`` get the order updates and fills of that
user only, and fresh balances after ``balances_changed`` (re-read from
``wallets``; a failed read is retried at the next flush, never dropped).

Rooms (see gateway/sockets.py for the subscriptions): ``depth:<market>``,
``trades:<market>``, ``ticker:<market>``, ``candles:<market>:<interval>``,
``tickers`` (all markets' mini-tickers), ``user:<user id>``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid

import eventlet
import eventlet.event
from kombu import Connection, Consumer, Exchange, Queue

from services.common.consumer import drain_while, keep_consuming
from services.common.events import ALL as ALL_EVENTS
from services.common.events import (
    BALANCES_CHANGED, PUSH_AUDIENCE, USER_CLOSED, USER_FROZEN, Trade, trade_executed, unpack,
)

log = logging.getLogger(__name__)

BINDINGS = {
    # One message per engine batch with its trades, users' order updates and
    # its coalesced book change (services/common/events.py ENGINE_BATCH).
    "matching.events": (PUSH_AUDIENCE,),
    BALANCES_CHANGED.exchange: (BALANCES_CHANGED.name,),
    USER_FROZEN.exchange: (USER_FROZEN.name, USER_CLOSED.name),
}
# Candle intervals pushed (marketdata's chain).
INTERVALS = ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")
# Seconds between re-reads of the balances of users whose money moved, and of
# the tickers/candles of markets that traded (coalesces bursts into one read).
FLUSH_EVERY = 0.25
MARKET_FLUSH_EVERY = 1.0
PREFETCH = 500
# Messages the private bridge holds unacknowledged for its next flush, at
# most (module docstring): half the prefetch, so deliveries never stop on it.
ACK_DEFERRED_MAX = PREFETCH // 2
# Users' balances read before they go out together (one message-queue message).
BALANCES_PER_MESSAGE = 20
# Users whose balances one wallets.balances_of call reads (its limit: 1000).
BALANCES_PER_READ = 200
# A batch goes out as soon as the consumer has handled what the broker had
# delivered. Pushes are paced by a token bucket: after a quiet spell up to
# PUSH_BURST go out back to back, and a sustained stream is spaced to one per
# PUSH_EVERY seconds on average, so a busy market's engine batches are
# coalesced and are not a frame each per connection (the gateway's main
# cost: a write per frame per connection). With a fixed spacing instead
# (before session 9) the second of two engine batches 10 ms apart waited
# 40 ms although the market was far from busy (bench/README.md, "Live push").
# 25 ms since session 11: at 50 ms and 100 orders/s a batch waited for its
# token up to p99 34-47 ms, at 25 ms p99 2-9 ms, for 0-45% more frames and
# about 1% of a core more per gateway of 500 connections (bench/README.md
# "Session 11 (helper P)").
PUSH_EVERY = 0.025
PUSH_BURST = 3
# Trades' orders kept for the order counts' take-off at the next flush, at
# most (Bridge.pending_filled).
PENDING_FILLED_MAX = 100_000
DISCONNECT_USER = "__disconnect_user__"
# Engine batches a process's own market queue holds at most.
OWN_QUEUE_MAX_MESSAGES = 10_000


def queue_name(channel: str) -> str:
    return f"gateway.push.{channel}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def public_trade(trade: Trade) -> dict:
    return {"market": trade.market, "seq": trade.seq, "trade_id": trade.trade_id,
            "price": trade.price, "quantity": trade.quantity,
            "quote_quantity": trade.quote_quantity, "taker_side": trade.taker_side,
            "executed_at": trade.executed_at}


def fills_of(trade: Trade) -> list[tuple[str, dict]]:
    """``(user_id, fill)`` for the maker and the taker of a trade."""
    taker_side = trade.taker_side
    maker_side = "sell" if taker_side == "buy" else "buy"
    return [(user, {**public_trade(trade), "order_id": order_id,
                    "side": maker_side if is_maker else taker_side,
                    "role": "maker" if is_maker else "taker"})
            for order_id, user, is_maker in trade.sides()]


# What a bridge pushes (``streams``): ``market`` the public book diffs and
# trades, from its own queue, to this process's connections; ``private`` the
# rest (fills, order updates, balances, tickers, candles, disconnects), as
# the one active consumer, through the message queue; ``all`` both at once
# (one queue: a single process, the unit tests).
STREAMS = ("all", "market", "private")


class Bridge:
    """Consumes the events and emits them. ``emit(event, data, room)``: through
    the message queue for the private bridge, to this process's connections
    for the market bridge; ``rpc()`` is a context manager lending a Nameko
    proxy; ``corked()`` a context manager around emits that go out together:
    the market bridge's push of a batch (the fan-out's one write per
    connection, gateway/push_fanout.py), the private bridge's events of one
    engine batch or one flush (one message-queue message, gateway/sockets.py
    PushManager.gathered)."""

    def __init__(self, amqp_uri: str, channel: str, emit, rpc, clock=now_ms,
                 streams: str = "all", corked=contextlib.nullcontext, orders_filled=None,
                 flush_every: float = FLUSH_EVERY):
        if streams not in STREAMS:
            raise ValueError(f"streams must be one of {STREAMS}")
        self.amqp_uri = amqp_uri
        self.channel = channel
        self.emit = emit
        self.rpc = rpc
        self.corked = corked
        # The private bridge sees every trade once (one active across the
        # gateway processes): ``orders_filled([(order id, user), ...])`` takes
        # each order's first fill off its account's new-order counts
        # (gateway/ratelimit.py RateLimiter.orders_filled).
        self.orders_filled = orders_filled
        self.clock = clock
        self.market_streams = streams in ("all", "market")
        self.private_streams = streams in ("all", "private")
        self.own_queue = streams == "market"
        self.flush_every = flush_every
        # The shared queue's deliveries wait for the flush after them to be
        # acknowledged (module docstring): those not acknowledged yet, oldest
        # first, and the newest one a finished flush covers. Acknowledged by
        # the consumer's green thread (``ack_flushed``), the one that uses
        # the connection.
        self.defer_acks = not self.own_queue and self.private_streams
        self.unacked: list = []
        self.flushed_through = None
        self.running = True
        self.active = False
        self.handled = 0
        self.last_book_seq: dict[str, int] = {}
        self.pending_depth: dict[str, dict] = {}
        self.pending_trades: dict[str, list] = {}
        self.dirty_markets: set[str] = set()
        # The trace of the oldest message behind each pending diff and trade
        # batch: when the engine batched it (``at``), the outbox relay sent it
        # (``relayed``), this bridge consumed it and pushed it (bench/push_bench.py
        # prints the delay of each hop).
        self.depth_trace: dict[str, dict] = {}
        self.trade_trace: dict[str, dict] = {}
        self.trace: dict = {}
        self.wake = eventlet.event.Event()
        self.settling_markets: set[str] = set()
        self.market_flushed = float("-inf")
        # False while marketdata does not answer (not deployed, restarting):
        # one log line when it stops answering and one when it is back.
        self.market_data_read = True
        # Users named by balances_changed (the ledger announces every posting
        # through the outbox, wallets migration 011), read at the next flush.
        self.dirty_users: set[str] = set()
        # Orders of trades (order id, user) for ``orders_filled`` at the next
        # flush; beyond PENDING_FILLED_MAX (a Memcached far behind) they are
        # not taken off: the counts stay higher, never lower.
        self.pending_filled: list[tuple[int, str]] = []

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        eventlet.spawn_n(self.run)
        if self.private_streams:
            eventlet.spawn_n(self.flush_loop)
        if self.market_streams:
            eventlet.spawn_n(self.push_loop)

    def stop(self) -> None:
        self.running = False

    def run(self) -> None:
        keep_consuming(self._consume, lambda: self.running, self._lost, 1.0,
                       f"push bridge {self.channel}")

    def _lost(self) -> None:
        self.active = False
        # Their channel is gone: the broker redelivers them, to whichever
        # consumer is active next.
        self.unacked, self.flushed_through = [], None

    def _queue(self) -> Queue:
        # Not durable and deleted with its last consumer: pushes are live
        # data; a client that missed some re-reads (snapshot, REST) on reconnect.
        if self.own_queue:
            # Bounded: a process that stops reading cannot fill the broker;
            # the oldest batches go first, and the gap shows (book_changed).
            return Queue(f"{queue_name(self.channel)}.{uuid.uuid4().hex}", durable=False,
                         exclusive=True, auto_delete=True,
                         queue_arguments={"x-max-length": OWN_QUEUE_MAX_MESSAGES,
                                          "x-overflow": "drop-head"})
        return Queue(queue_name(self.channel), durable=False, auto_delete=True,
                     queue_arguments={"x-single-active-consumer": True})

    def _bindings(self) -> dict:
        return {"matching.events": (PUSH_AUDIENCE,)} if self.own_queue else BINDINGS

    def _consume(self) -> None:
        if self.own_queue:
            self.new_queue()
        with Connection(self.amqp_uri, heartbeat=10) as amqp:
            channel = amqp.channel()
            channel.basic_qos(0, PREFETCH, False)
            queue = self._queue()(channel)
            queue.declare()
            for exchange, keys in self._bindings().items():
                target = Exchange(exchange, type="topic", durable=True)(channel)
                target.declare()
                for key in keys:
                    queue.bind_to(target, routing_key=key)
            with Consumer(channel, [queue], callbacks=[self._on_message], accept=["json"],
                          auto_declare=False):
                drain_while(amqp, lambda: self.running, timeout=min(1.0, self.flush_every),
                            on_wake=self.ack_flushed if self.defer_acks else None)

    def new_queue(self) -> None:
        """A new own queue holds nothing from before it: whatever came between
        the old one's end and now is missing. What is pending goes out, and
        the next diff starts at its engine batch's first_seq, so a client
        sees the gap (and re-syncs) instead of a diff claiming to follow on."""
        self.push_batches()
        self.last_book_seq.clear()

    def _on_message(self, body, message) -> None:
        self.active = True
        try:
            if isinstance(body, (bytes, str)):
                body = json.loads(body)
            headers = getattr(message, "headers", None) or {}
            self.trace = {"at": body.get("at"), "seq": body.get("last_seq"),
                          "relayed": headers.get("relayed_at"), "consumed": self.clock()}
            with self.corked():  # an engine batch's fills and order updates together
                for name, _event_id, event in unpack(message.delivery_info["routing_key"],
                                                     message.properties.get("message_id"), body):
                    self.handle(name, event)
        except Exception:
            # A push that cannot be made is dropped (clients re-sync), never
            # retried forever in front of the others.
            log.exception("push bridge could not handle %s", message.delivery_info.get("routing_key"))
        if not self.defer_acks:
            message.ack()
        elif len(self.unacked) < ACK_DEFERRED_MAX:
            self.unacked.append(message)
        else:                           # a flush far behind: the deliveries go on
            message.ack(multiple=True)
            self.unacked, self.flushed_through = [], None
        self.handled += 1
        if (self.pending_depth or self.pending_trades) and not self.wake.ready():
            # The push loop runs once this green thread waits for the broker:
            # everything already delivered is in the batch.
            self.wake.send(True)

    # -- events ------------------------------------------------------------------
    def handle(self, routing_key: str, event: dict) -> None:
        if routing_key == "book_changed":
            if self.market_streams:
                self.book_changed(event)
        elif routing_key == "trade_executed":
            trade = trade_executed(event)  # the one decoding of a trade (services.common.events)
            if self.market_streams:
                self.pending_trades.setdefault(trade.market, []).append(public_trade(trade))
                self.trade_trace.setdefault(trade.market, self.trace)
            if self.private_streams:
                for user, fill in fills_of(trade):
                    self.emit("fill", fill, f"user:{user}")
                self.dirty_markets.add(trade.market)
                if self.orders_filled is not None:
                    self.take_off_filled(trade)
        elif not self.private_streams:
            return
        elif routing_key == "order_updated":
            if event.get("user_id"):
                self.emit("order", event, f"user:{event['user_id']}")
        elif routing_key == "balances_changed":
            self.dirty_users.update(c["user"] for c in event.get("changes", ()))
        elif routing_key in (USER_FROZEN.name, USER_CLOSED.name):
            event = ALL_EVENTS[routing_key].parse(event)  # its definition, version checked
            self.emit(DISCONNECT_USER, {"user_id": event["user_id"], "state": event["state"]},
                      f"user:{event['user_id']}")

    def take_off_filled(self, trade: Trade) -> None:
        """The trade's orders, to be taken off their accounts' order counts at
        the next flush (``take_off_pending``): their Memcached round trips
        (about 0.3 ms a trade, bench/first_fill_bench.py) are not paid
        before the pushes of the engine batch go out."""
        if len(self.pending_filled) < PENDING_FILLED_MAX:
            self.pending_filled.extend((order_id, user) for order_id, user, _ in trade.sides())

    def take_off_pending(self) -> None:
        """The orders of the trades since the last flush off their accounts'
        order counts (a first fill each); a failure is logged and the
        flush goes on (the counts are the limit's, not the trades'). Called
        with no orders too: what Memcached could not be told at an earlier
        flush is sent then (RateLimiter.orders_filled keeps it)."""
        filled, self.pending_filled = self.pending_filled, []
        if self.orders_filled is None:
            return
        try:
            self.orders_filled(filled)
        except Exception:
            log.exception("push bridge could not take %d filled orders off their order counts",
                          len(filled))

    def book_changed(self, event: dict) -> None:
        """An engine batch's book change covers seqs ``first_seq .. seq``
        (coalesced; an older one-command event covers ``seq`` alone)."""
        market, seq = event["market"], int(event["seq"])
        last = self.last_book_seq.get(market)
        if last is not None and seq <= last:
            return  # redelivered: already emitted
        if last is not None and "first_seq" in event and int(event["first_seq"]) > last + 1:
            # Batches missing in between (dropped from a full queue, lost
            # with a queue): what is pending goes out alone, and the next
            # diff starts at this batch, so clients see the gap and re-sync.
            # (Engine batches chain; the older one-command events skipped
            # the seqs of commands that left the book as it was.)
            self._push_depth(market)
            last = None
        self.last_book_seq[market] = seq
        pending = self.pending_depth.get(market)
        self.depth_trace.setdefault(market, self.trace)
        if pending is None:
            first = int(event.get("first_seq", seq)) if last is None else last + 1
            self.pending_depth[market] = {
                "market": market, "first_seq": first,
                "last_seq": seq, "at": event.get("at"), "changes": list(event["changes"])}
        else:  # one diff covering both: the changes in order, the later wins
            pending.update(last_seq=seq, at=event.get("at"))
            pending["changes"].extend(event["changes"])

    def push_batches(self) -> None:
        """The public market streams go out in batches (one frame per market
        and stream per PUSH_EVERY on average, see Pacer): writing a frame to each of many
        connections is the gateway's main cost, and a burst of orders would
        otherwise be a burst of frames per connection."""
        depth, self.pending_depth = self.pending_depth, {}
        trades, self.pending_trades = self.pending_trades, {}
        depth_trace, self.depth_trace = self.depth_trace, {}
        trade_trace, self.trade_trace = self.trade_trace, {}
        # Trades first: the one of the two that a trader waits for. Corked:
        # a connection subscribed to both gets them in one write.
        with self.corked():
            for market, batch in trades.items():
                self.emit("trades", {"market": market, "trades": batch,
                                     "trace": {**trade_trace.get(market, {}),
                                               "pushed": self.clock()}},
                          f"trades:{market}")
            for market, diff in depth.items():
                self._emit_depth(diff, depth_trace.get(market, {}))

    def _push_depth(self, market: str) -> None:
        """One market's pending diff, now."""
        diff = self.pending_depth.pop(market, None)
        trace = self.depth_trace.pop(market, {})
        if diff is not None:
            self._emit_depth(diff, trace)

    def _emit_depth(self, diff: dict, trace: dict) -> None:
        pushed = self.clock()
        self.emit("depth", {**diff, "pushed_at": pushed, "trace": {**trace, "pushed": pushed}},
                  f"depth:{diff['market']}")

    def push_loop(self) -> None:
        pacer = Pacer(PUSH_EVERY, PUSH_BURST)
        while self.running:
            if not self.wake.wait(1.0):
                continue
            self.wake = eventlet.event.Event()
            wait = pacer.wait(time.monotonic())
            if wait > 0:
                eventlet.sleep(wait)
            pacer.spend(time.monotonic())
            try:
                self.push_batches()
            except Exception:
                log.exception("push bridge could not push a batch")

    # -- coalesced reads -----------------------------------------------------------
    def ack_flushed(self) -> None:
        """Acknowledge the deliveries the last finished flush covered (all up
        to ``flushed_through``, in one frame)."""
        through, self.flushed_through = self.flushed_through, None
        if through is None:
            return
        for index, message in enumerate(self.unacked):
            if message is through:
                through.ack(multiple=True)
                del self.unacked[:index + 1]
                return
        # Not held any more: acknowledged at once past ACK_DEFERRED_MAX, or
        # delivered on a connection since lost.

    def flush_loop(self) -> None:
        while self.running:
            eventlet.sleep(self.flush_every)
            try:
                self.flush()
            except Exception:
                log.exception("push bridge flush failed")

    def flush(self) -> None:
        # A market that traded is read now and once more at the next market
        # flush: marketdata ingests the trade a moment after the event. Its
        # ticker and candles (9 reads) at most once per MARKET_FLUSH_EVERY.
        markets = set()
        if time.monotonic() - self.market_flushed >= MARKET_FLUSH_EVERY:
            self.market_flushed = time.monotonic()
            markets = self.dirty_markets | self.settling_markets
            self.settling_markets, self.dirty_markets = self.dirty_markets, set()
        users, self.dirty_users = self.dirty_users, set()
        # The deliveries whose effects this flush takes: acknowledged once
        # it has run (a failure raises past this: the next flush covers them).
        covered = self.unacked[-1] if self.unacked else None
        self.take_off_pending()
        if markets:
            self._push_market_data_or_wait(sorted(markets))
        if users:
            failed = self._push_balances(sorted(users))
            self.dirty_users |= failed
        if covered is not None:
            self.flushed_through = covered

    def _emit_all(self, emits: list[tuple[str, dict, str]]) -> None:
        """Emits read first, then sent together (no read in between: the
        block's emits are published as one message)."""
        with self.corked():
            for event, data, room in emits:
                self.emit(event, data, room)

    def _push_market_data_or_wait(self, markets: list[str]) -> None:
        """The markets' tickers and candles; when marketdata does not
        answer, they stay dirty for the next market flush and the flush's
        balances still go out (they were lost with the whole flush before)."""
        try:
            self._push_market_data(markets)
        except Exception as exc:
            self.dirty_markets |= set(markets)
            if self.market_data_read:
                self.market_data_read = False
                log.warning("push bridge: market data not read (%s: %s); tickers and candles "
                            "wait until marketdata answers", type(exc).__name__, exc)
            return
        if not self.market_data_read:
            self.market_data_read = True
            log.warning("push bridge: market data read again")

    def _push_market_data(self, markets: list[str]) -> None:
        emits = []
        with self.rpc() as services:
            for market in markets:
                ticker = services.marketdata.get_ticker(market)
                emits.append(("ticker", ticker, f"ticker:{market}"))
                emits.append(("mini_ticker", mini_ticker(ticker), "tickers"))
                for interval in INTERVALS:
                    rows = services.marketdata.get_candles(market, interval, limit=1)["candles"]
                    if rows:
                        emits.append(("candle", {"market": market, "interval": interval,
                                                 "candle": rows[-1]},
                                      f"candles:{market}:{interval}"))
        self._emit_all(emits)

    def _push_balances(self, users: list[str]) -> set[str]:
        """The fresh balances of ``users`` to their rooms: ONE wallets read
        per BALANCES_PER_READ users (``wallets.balances_of``), not one call
        per user (at 400 REST orders/s that was 0.29 wallets calls and about
        0.3 ms of wallets' CPU per order, bench/README.md session 15). The
        users of a read that failed are returned: retried at the next flush."""
        failed = set()
        for start in range(0, len(users), BALANCES_PER_READ):
            chunk = users[start:start + BALANCES_PER_READ]
            try:
                with self.rpc() as services:
                    found = services.wallets.balances_of(chunk)["balances"]
            except Exception:
                log.warning("balances of %d users not read; retried at the next flush",
                            len(chunk), exc_info=True)
                failed.update(chunk)
                continue
            emits = []
            for user in chunk:
                if user not in found:       # no accounts: nothing to push
                    continue
                # The shape of GET /api/v1/balances.
                balances = [{"asset": asset, **amounts}
                            for asset, amounts in sorted(found[user].items())]
                emits.append(("balances", {"balances": balances, "at": self.clock()},
                              f"user:{user}"))
                if len(emits) >= BALANCES_PER_MESSAGE:  # the first users do not wait for all
                    self._emit_all(emits)
                    emits = []
            self._emit_all(emits)
        return failed


class Pacer:
    """A token bucket of pushes: ``burst`` tokens at most, one back every
    ``every`` seconds, one spent per push. ``wait(now)`` is how long the next
    push must wait (0 while a token is left)."""

    def __init__(self, every: float, burst: int):
        self.every = every
        self.burst = float(burst)
        self.tokens = float(burst)
        self.at: float | None = None

    def _refill(self, now: float) -> None:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) / self.every)
        self.at = now

    def wait(self, now: float) -> float:
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) * self.every

    def spend(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0


def mini_ticker(ticker: dict) -> dict:
    keys = ("market", "last", "open", "high", "low", "volume", "quote_volume", "change_percent",
            "last_trade_at")
    return {k: ticker[k] for k in keys if k in ticker}
