"""Hosting the engines: command queues in, journal + outbox out.

Every matching process hosts every market. Each market has one RabbitMQ
quorum queue with single-active-consumer: the broker delivers its commands to
exactly one process at a time (the active engine); the others are hot
standbys that keep their engine current by replaying the journal, and the
broker hands the queue to one of them when the active one's connection dies.

Per batch of commands: one read catches up with the journal and finds the
commands already journaled (redelivery after a crash, skipped); the rest are
applied to the engine; then ONE statement -- its own transaction -- appends
them to the journal and their events to the outbox. Only after its commit
are the messages acknowledged. So:

* a crash before the commit loses nothing: the messages are redelivered and
  the next engine rebuilds its state from the journal;
* a crash after the commit but before the ack redelivers commands that the
  journal already holds, and they are skipped -- except a cancel or an amend
  refused because its order was not on the book: a nack can deliver it
  before its order's place, so a later copy is applied again (its journal row
  carries ``<command id>#<seq>``, models.refused_until_placed);
* a stale engine cannot write: the journal's primary key (market, seq)
  rejects a second writer of the same sequence number, and the loser rebuilds.
"""
from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager

import eventlet
from nameko.extensions import DependencyProvider
from psycopg.types.json import Jsonb

from services.common import catalogue
from services.common.config import load_settings
from services.common.consumer import BatchConsumer
from services.common.outbox import COMMANDS_EXCHANGE, enqueue_many
from services.common.postgres import make_pool

from .engine import MatchingEngine
from .models import InvalidCommand, MarketConfig, command_from_dict, refused_until_placed
from .wire import MalformedCommandMessage, batch_messages, commands_of

log = logging.getLogger(__name__)

OUTBOX_STREAM = "matching"
# Batches of events the relay publishes before their confirms are in (bounds
# the rows it holds unconfirmed: 8 x outbox.BATCH).
RELAY_IN_FLIGHT = 8
# Where the engines' events go. Container config MATCHING_EVENTS_EXCHANGE
# moves them (the matching tests' made-up users must not reach the shared
# test vhost's settlement).
EVENTS_EXCHANGE = "matching.events"
BATCH = 200           # command messages per delivery batch (the prefetch)
MAX_COMMANDS = 2000   # commands per engine batch (one transaction)
SNAPSHOT_EVERY = 5000
# A batch's journal rows as one statement over arrays (executemany paid
# psycopg's pipeline per row).
# The batch's journal rows as ONE JSON array of [seq, command_id, command]:
# a text array of JSON commands made psycopg escape every quote with a regex.
JOURNAL_MANY = (
    "INSERT INTO matching_journal (market, seq, command_id, command, at_ms) "
    "SELECT %s, (r->>0)::bigint, r->>1, r->2, %s FROM jsonb_array_elements(%s) AS t (r)")
# The journal rows after the engine's seq (seq, command), then the batch's
# command ids already journaled (NULL, NULL, command_id).
CATCH_UP = (
    "SELECT seq, command, NULL FROM matching_journal WHERE market = %s AND seq > %s "
    "UNION ALL SELECT NULL, NULL, command_id FROM matching_journal "
    "WHERE market = %s AND command_id = ANY(%s) ORDER BY 1")
IDLE_POLL = 0.25


def command_queue_name(market: str) -> str:
    return f"matching.commands.{market}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class StaleEngine(Exception):
    """Another process journaled this market's next sequence number."""


class MarketHost:
    """One market in this process."""

    def __init__(self, config: MarketConfig, pool, amqp_uri: str, clock=now_ms,
                 events_exchange: str = EVENTS_EXCHANGE):
        self.config = config
        self.events_exchange = events_exchange
        self.market = config.symbol
        self.pool = pool
        self.amqp_uri = amqp_uri
        self.clock = clock
        self.engine: MatchingEngine | None = None
        self.snapshot_seq = 0
        self.active = False
        self.running = True
        self.processed = 0

    # -- state ---------------------------------------------------------------
    def rebuild(self) -> None:
        """Latest snapshot, then the journal after it.

        A market's first rebuild anywhere stores its starting state as the
        snapshot at seq 0, and every later rebuild starts from a stored
        snapshot: a replay must start from the state the journal was written
        against, not from the registry's market as it is now. A standby that
        restarted while the market was halted started halted (the registry's
        status is ``config.halted``) and replayed every earlier order as
        rejected: its book was empty, orders' was not. The insert is a no-op
        when another process stored it first; both then read the same one.
        (A market whose journal began before this had no seq-0 snapshot: its
        first rebuild after it pins the configuration of that moment.)"""
        with self.pool.connection() as conn:
            row = self._latest_snapshot(conn)
            if row is None:
                conn.execute("INSERT INTO matching_snapshots (market, seq, snapshot) "
                             "VALUES (%s, 0, %s) ON CONFLICT DO NOTHING",
                             (self.market, Jsonb(MatchingEngine(self.config).snapshot())))
                row = self._latest_snapshot(conn)
            engine = MatchingEngine.restore(row[1])
            self.snapshot_seq = row[0]
            self._replay(conn, engine)
        self.engine = engine

    def _latest_snapshot(self, conn):
        return conn.execute(
            "SELECT seq, snapshot FROM matching_snapshots WHERE market = %s "
            "ORDER BY seq DESC LIMIT 1", (self.market,)).fetchone()

    def _replay(self, conn, engine: MatchingEngine) -> int:
        rows = conn.execute(
            "SELECT seq, command FROM matching_journal WHERE market = %s AND seq > %s "
            "ORDER BY seq", (self.market, engine.seq)).fetchall()
        self._apply_journal(engine, rows)
        return len(rows)

    def _apply_journal(self, engine: MatchingEngine, rows) -> None:
        for seq, command in rows:
            engine.apply(command_from_dict(command))
            if engine.seq != seq:
                raise RuntimeError(f"{self.market}: journal gap at seq {seq}")

    def keep_warm(self) -> None:
        if self.engine is None:
            self.rebuild()
            return
        # One read, autocommitted: a standby polls every IDLE_POLL, and a
        # transaction around the read cost a BEGIN and a COMMIT round trip.
        with self._autocommit() as conn:
            self._replay(conn, self.engine)

    @contextmanager
    def _autocommit(self):
        """A pooled connection whose statements each commit on their own."""
        with self.pool.connection() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                if not conn.closed:
                    conn.autocommit = False

    # -- commands ------------------------------------------------------------
    def process(self, batch: list[tuple[str, dict]]) -> int:
        """Journal and apply ``(command_id, body)`` pairs; return how many were new.
        On any failure the in-memory engine is dropped (it may be ahead of the
        database) and rebuilt before the next batch."""
        if self.engine is None:
            self.rebuild()
        engine, market = self.engine, self.market
        try:
            # Two statements, each its own transaction: no BEGIN and COMMIT
            # round trips. A transaction around them would add nothing: under
            # READ COMMITTED the write never saw the read's snapshot, and what
            # fences a second writer is the journal's keys, (market, seq) and
            # (market, command_id), checked by the one write statement, whose
            # commit (synchronous, fsync) comes before the messages' ack.
            with self._autocommit() as conn:
                # One read: the journal entries not applied yet, and which of
                # the batch's commands are journaled already (the same snapshot).
                rows = conn.execute(CATCH_UP, (market, engine.seq, market,
                                               [command_id for command_id, _ in batch])).fetchall()
                self._apply_journal(engine, [(seq, command) for seq, command, _ in rows
                                             if seq is not None])
                seen = {command_id for seq, _, command_id in rows if seq is None}
                at_ms = self.clock()
                journal, events = [], []
                for command_id, body in batch:
                    if command_id in seen:
                        continue
                    try:
                        command = command_from_dict(body["command"])
                    except (InvalidCommand, KeyError, TypeError):
                        seen.add(command_id)
                        log.error("%s: dropping malformed command %s: %r", market, command_id, body)
                        continue
                    outcome = engine.apply(command)
                    events.extend(outcome)
                    if refused_until_placed(outcome):
                        # Its order is not on the book (yet): a later copy is
                        # applied again, so this row's id is one no copy matches.
                        command_id = f"{command_id}#{engine.seq}"
                    else:
                        seen.add(command_id)
                    journal.append((engine.seq, command_id, body["command"]))
                if journal:
                    seqs = [seq for seq, _, _ in journal]
                    # One message per audience for the whole batch (wire.py),
                    # in the journal's statement: one round trip for both.
                    enqueue_many(conn, OUTBOX_STREAM, [
                        (self.events_exchange, key, message_id, payload)
                        for key, message_id, payload in batch_messages(
                            self.config, events, at_ms, seqs[0], seqs[-1])],
                        together_with=(JOURNAL_MANY, (market, at_ms, Jsonb(journal))))
        except Exception:
            self.engine = None
            raise
        self.processed += len(journal)
        if engine.seq - self.snapshot_seq >= SNAPSHOT_EVERY:
            self.write_snapshot()
        return len(journal)

    def write_snapshot(self) -> None:
        snapshot = self.engine.snapshot()
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO matching_snapshots (market, seq, snapshot) VALUES (%s, %s, %s) "
                         "ON CONFLICT DO NOTHING", (self.market, snapshot["seq"], Jsonb(snapshot)))
        self.snapshot_seq = snapshot["seq"]

    # -- the consumer ----------------------------------------------------------
    def handle(self, batch) -> None:
        """Every command of the delivered messages -- batch messages and the
        older one-command messages alike (wire.commands_of) -- as ONE engine
        batch. A command's id is its dedup key (a one-command message's id is
        its message_id): one without cannot be applied."""
        self.active = True
        commands, errors = [], []
        for _key, message_id, body in batch:
            try:
                for command_id, command in commands_of(message_id, body, errors):
                    commands.append((command_id, {"command": command}))
            except MalformedCommandMessage as exc:
                errors.append(str(exc))
        for error in errors:
            log.error("%s: dropping a malformed command message: %s", self.market, error)
        # Bounded engine batches (one transaction each): a backlog of batch
        # messages must not become one huge transaction.
        for start in range(0, len(commands), MAX_COMMANDS):
            self.process(commands[start:start + MAX_COMMANDS])

    def run(self) -> None:
        queue = command_queue_name(self.market)
        self.consumer = BatchConsumer(self.amqp_uri, queue, COMMANDS_EXCHANGE, [queue],
                                      self.handle, BATCH, idle=self.keep_warm,
                                      idle_every=IDLE_POLL)
        while self.running:
            try:
                self.keep_warm()
                self.consumer.run()
                return
            except Exception:
                if not self.running:
                    return
                log.exception("%s: engine host failed; rebuilding", self.market)
                self.engine = None
                eventlet.sleep(0.5)

    def stop(self) -> None:
        self.running = False
        if getattr(self, "consumer", None) is not None:
            self.consumer.running = False


class MarketEngines(DependencyProvider):
    """Hosts an engine for every market in the registry's catalogue for the
    service container's lifetime, and starts one as soon as a market is
    listed (``market_listed``; no restart)."""

    def setup(self):
        settings = load_settings()
        config = self.container.config
        self.pool = make_pool(settings, config.get("POSTGRES_DB"), min_size=2, max_size=8,
                              name="matching")
        self.amqp_uri = config["AMQP_URI"]
        self.events_exchange = config.get("MATCHING_EVENTS_EXCHANGE", EVENTS_EXCHANGE)
        # Which listed markets this process hosts (a regular expression the
        # symbol must match whole; all by default): engines can be spread
        # over processes, and tests sharing a vhost keep apart.
        self.hosted = re.compile(config.get("MATCHING_MARKETS") or ".*")
        self.hosts: dict[str, MarketHost] = {}
        self.threads = []
        self.catalogue = catalogue.container_follower(self.container)

    def start(self):
        self.discover()
        self.catalogue.listeners.append(lambda old, new: self.discover())
        self.threads.append(catalogue.follow_in(self.container, self.catalogue))

    def market(self, symbol):
        """The catalogue's market (refreshed on a miss), or None."""
        return self.catalogue.market(symbol)

    def host(self, symbol) -> MarketHost | None:
        """This process's host of a listed market (started now if its
        listing has not reached us yet), or None."""
        host = self.hosts.get(symbol) if isinstance(symbol, str) else None
        if host is None and self.market(symbol) is not None:
            self.discover()
            host = self.hosts.get(symbol)
        return host

    def discover(self) -> None:
        for symbol, market in sorted(self.catalogue.markets().items()):
            # A delisted market has no book to keep (its orders were cancelled).
            if symbol not in self.hosts and market.status != catalogue.DELISTED \
                    and self.hosted.fullmatch(symbol):
                host = MarketHost(MarketConfig.from_dict(market.engine_config()), self.pool,
                                  self.amqp_uri, events_exchange=self.events_exchange)
                self.hosts[symbol] = host
                self.threads.append(self.container.spawn_managed_thread(host.run))

    def stop(self):
        self.catalogue.stop()
        for host in self.hosts.values():
            host.stop()
        for thread in self.threads:
            thread.kill()
        self.pool.close()

    kill = stop

    def get_dependency(self, worker_ctx):
        return self
