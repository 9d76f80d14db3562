"""Hosting the engines: command queues in, journal + outbox out.

Every matching process hosts every market. Each market has one RabbitMQ
quorum queue with single-active-consumer: the broker delivers its commands to
exactly one process at a time (the active engine); the others are hot
standbys that keep their engine current by replaying the journal, and the
broker hands the queue to one of them when the active one's connection dies.

Per batch of commands: one read catches up with the journal and finds the
commands already journaled (redelivery after a crash, skipped); the rest are
applied to the engine; then ONE statement -- its own transaction -- appends
them to the journal and their events to the outbox (with the engine batches
of the process's other markets that are ready at the same moment:
JournalWriter). Only after its commit are the messages acknowledged. So:

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
from dataclasses import dataclass

import eventlet
import psycopg
from nameko.extensions import DependencyProvider
from psycopg.types.json import Jsonb

from services.common import catalogue
from services.common.config import load_settings
from services.common.consumer import BatchConsumer
from services.common.group_commit import GroupCommit, run_or_each_alone
from services.common.outbox import COMMANDS_EXCHANGE, enqueue_many
from services.common.postgres import autocommitted, make_pool

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
# Journal rows as ONE JSON array of [market, seq, command_id, command, at_ms]
# (executemany paid psycopg's pipeline per row, and a text array of JSON
# commands made psycopg escape every quote with a regex).
JOURNAL_ROWS = (
    "INSERT INTO matching_journal (market, seq, command_id, command, at_ms) "
    "SELECT r->>0, (r->>1)::bigint, r->>2, r->3, (r->>4)::bigint "
    "FROM jsonb_array_elements(%s) AS t (r)")
# Engine batches of different markets journaled in one statement at most.
MARKETS_PER_WRITE = 16
# The journal rows after the engine's seq (seq, command), at most
# CATCH_UP_ROWS of them, then the batch's command ids already journaled
# (NULL, NULL, command_id). The upper bound on seq is what keeps the plan an
# index range scan: the planner's statistics of seq are the whole journal's,
# dominated by the largest market, so "seq > n" alone was estimated as most
# of a small market's rows: a parallel scan (about 20 ms and two worker
# processes per engine batch) or, as a generic plan, a sequential scan of
# every market's journal (about 300 ms). A bounded range is estimated as
# small whatever the statistics (session 16, bench/README.md).
CATCH_UP = (
    "SELECT seq, command, NULL FROM matching_journal "
    "WHERE market = %s AND seq > %s AND seq <= %s "
    "UNION ALL SELECT NULL, NULL, command_id FROM matching_journal "
    "WHERE market = %s AND command_id = ANY(%s) ORDER BY 1")
CATCH_UP_ROWS = 10_000
IDLE_POLL = 0.25


def command_queue_name(market: str) -> str:
    return f"matching.commands.{market}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class StaleEngine(Exception):
    """Another process journaled this market's next sequence number."""


@dataclass(frozen=True)
class JournalWrite:
    """One engine batch, applied in memory: its journal rows ``[market,
    seq, command_id, command, at_ms]`` and its events' outbox rows
    ``(exchange, routing_key, message_id, payload)``."""
    journal: list
    events: list


def write_journal(conn, writes: list[JournalWrite]) -> None:
    """Engine batches (any markets) in ONE statement, committed on its own
    (synchronously): their journal rows and their events. All of them or
    none: a journal key taken (a stale engine, fenced) fails every one."""
    enqueue_many(conn, OUTBOX_STREAM, [row for write in writes for row in write.events],
                 together_with=(JOURNAL_ROWS, (Jsonb([row for write in writes
                                                      for row in write.journal]),)))


class JournalWriter:
    """The process's markets journal through one group commit: the engine
    batches ready while a write is in flight go in the next write, ONE
    statement and one commit for all of them (no linger: a lone batch goes
    at once). With several markets active their engines receive a relay
    read's commands at the same moment (orders' relay sends each market's
    queue its message together), and each engine batch as its own commit
    cost a commit (fsync), a relay read and a delivery to each consumer per
    market (bench/README.md, session 16). A write that fails with several
    markets in it is made again market by market, so a stale engine of one
    market (its journal key taken: the fence) fails only its own batch."""

    def __init__(self, pool, spawn=eventlet.spawn):
        self.pool = pool
        self.batcher = GroupCommit(self._run, max_batch=MARKETS_PER_WRITE, linger_s=0,
                                   spawn=spawn)

    def write(self, write: JournalWrite) -> None:
        """Returns once ``write`` is committed; raises what its write raised."""
        self.batcher.submit(write)

    def close(self) -> None:
        self.batcher.close()

    def _run(self, writes: list[JournalWrite]) -> list:
        return run_or_each_alone(self._write, writes, fatal=(psycopg.OperationalError,))

    def _write(self, writes: list[JournalWrite]) -> list:
        with autocommitted(self.pool) as conn:
            write_journal(conn, writes)
        return [None] * len(writes)


class MarketHost:
    """One market in this process."""

    def __init__(self, config: MarketConfig, pool, amqp_uri: str, clock=now_ms,
                 events_exchange: str = EVENTS_EXCHANGE, writer: JournalWriter | None = None):
        """``writer``: the process's JournalWriter (shared by its markets);
        None: one of its own."""
        self.writer = writer if writer is not None else JournalWriter(pool)
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
        # Journal entries the engine was behind the journal's head at its
        # last read of the journal (None before the first): what a failover
        # to this engine replays first (metrics: exchange_engine_journal_lag_entries).
        self.journal_lag: int | None = None

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
        # The read returns every entry after the engine's: its last is the
        # head, so the lag costs no query of its own. Counted before the
        # replay: a replay that fails or falls behind leaves the lag showing.
        self.journal_lag = rows[-1][0] - engine.seq if rows else 0
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
        with autocommitted(self.pool) as conn:
            self._replay(conn, self.engine)

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
            with autocommitted(self.pool) as conn:
                # One read: the journal entries not applied yet, and which of
                # the batch's commands are journaled already (the same
                # snapshot); read again while it returns CATCH_UP_ROWS entries
                # (an engine that far behind: rare, a standby's replay keeps
                # it current).
                ids = [command_id for command_id, _ in batch]
                behind_from = engine.seq
                while True:
                    rows = conn.execute(CATCH_UP, (market, engine.seq, engine.seq + CATCH_UP_ROWS,
                                                   market, ids)).fetchall()
                    entries = [(seq, command) for seq, command, _ in rows if seq is not None]
                    # The same lag as a standby's replay (0 on an active engine).
                    self.journal_lag = (entries[-1][0] if entries else engine.seq) - behind_from
                    self._apply_journal(engine, entries)
                    if len(entries) < CATCH_UP_ROWS:
                        break
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
                # One message per audience for the whole batch (wire.py), in
                # the journal's statement: one round trip for both.
                self.writer.write(JournalWrite(
                    [[market, seq, command_id, command, at_ms]
                     for seq, command_id, command in journal],
                    [(self.events_exchange, key, message_id, payload)
                     for key, message_id, payload in batch_messages(
                         self.config, events, at_ms, journal[0][0], journal[-1][0])]))
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
        self.writer = JournalWriter(self.pool, spawn=self.container.spawn_managed_thread)
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
                                  self.amqp_uri, events_exchange=self.events_exchange,
                                  writer=self.writer)
                self.hosts[symbol] = host
                self.threads.append(self.container.spawn_managed_thread(host.run))

    def stop(self):
        self.catalogue.stop()
        for host in self.hosts.values():
            host.stop()
        for thread in self.threads:
            thread.kill()
        self.writer.close()
        self.pool.close()

    kill = stop

    def get_dependency(self, worker_ctx):
        return self
