"""Transactional outbox: nothing is published for an uncommitted change, and
nothing committed goes unpublished.

Writers call ``enqueue_event`` / ``enqueue_command`` inside the transaction that
makes the change. An ``OutboxRelay`` provider (one per stream) publishes rows
in id order with publisher confirms, then deletes them. Exactly one relay per
stream works at a time: it holds a PostgreSQL advisory lock on a dedicated
session, so a second process (another zone) stands by and takes over when the
first dies (its session ends, its lock is released). Delivery is at least
once: a relay killed between the broker's confirm and the delete publishes
those rows again, so every consumer dedupes by ``message_id``.

A batch is published in full and then confirmed once (``ConfirmedPublisher``):
waiting for the broker's confirm after each message cost a round trip per
message and made the relay the slowest step of the order flow. A relay made
with ``in_flight`` > 1 (matching's: the engines' events, the live push among
them) does not wait for a batch's confirm before reading and publishing the
next one: a commit made while a confirm is on its way goes out at once
instead of after it. Rows are still deleted only once confirmed, so a crash
or a nack publishes them again (at least once, in order from the first one
unconfirmed).
"""
from __future__ import annotations

import logging
import socket
import time
import zlib
from typing import Callable

import amqp as py_amqp
import eventlet
from eventlet.green import select as green_select
from kombu import Connection, Exchange, Queue
from nameko.extensions import DependencyProvider
from psycopg import sql
from psycopg.types.json import Jsonb

from services.common.config import COMMANDS_EXCHANGE, load_settings
from services.common.postgres import make_pool

log = logging.getLogger(__name__)

BATCH = 500
# How long published rows wait, once the outbox is read empty, for the next
# commit's read to carry their delete (one round trip instead of two) before
# they are deleted on their own: an idle outbox is empty after this.
DELETE_AFTER_S = 0.1


def _channel(stream: str) -> str:
    return f"outbox_{stream}"


def enqueue(conn, stream: str, exchange: str, routing_key: str, message_id: str,
            payload: dict) -> None:
    # The notification is delivered at commit and wakes the relay; a rollback
    # drops it with the row. One statement: one round trip.
    conn.execute(
        "WITH queued AS (INSERT INTO outbox (stream, exchange, routing_key, message_id, payload) "
        "VALUES (%s, %s, %s, %s, %s) RETURNING 1) SELECT pg_notify(%s, '') FROM queued",
        (stream, exchange, routing_key, message_id, Jsonb(payload), _channel(stream)))


QUEUED = (
    "queued AS (INSERT INTO outbox (stream, exchange, routing_key, message_id, payload) "
    "SELECT %s, r->>0, r->>1, r->>2, r->3 "
    "FROM jsonb_array_elements(%s) WITH ORDINALITY AS t (r, n) "
    "ORDER BY n RETURNING 1) "
    "SELECT pg_notify(%s, '') WHERE EXISTS (SELECT FROM queued)")
ENQUEUE_MANY = "WITH " + QUEUED


def enqueue_many(conn, stream: str, rows: list[tuple[str, str, str, dict]],
                 together_with: tuple[str, tuple] | None = None) -> None:
    """Several ``(exchange, routing_key, message_id, payload)`` rows, one wake-up.

    One statement over ONE JSON array of the rows, ids in the rows' order:
    executemany cost psycopg's pipeline ~25 us of Python per row, and a text
    array of JSON payloads made psycopg escape every quote of every payload
    with a regex (a quarter of the active engine's time under the order path
    bench, a batch's events being one large payload).

    ``together_with`` = ``(statement, parameters)``: a data-modifying
    statement (an INSERT without RETURNING, %s parameters) run in the same
    statement as a CTE -- one round trip for the change and its events (the
    engine's journal). PostgreSQL runs every data-modifying CTE to completion."""
    params = (stream, Jsonb([list(row) for row in rows]), _channel(stream))
    if together_with is not None:
        statement, before = together_with
        conn.execute(f"WITH changed AS ({statement} RETURNING 1), {QUEUED}", (*before, *params))
    elif rows:
        conn.execute(ENQUEUE_MANY, params)


def enqueue_event(conn, stream: str, source_service: str, event_type: str,
                  message_id: str, payload: dict) -> None:
    """A Nameko event from ``source_service`` (consumed by ``@event_handler``)."""
    enqueue(conn, stream, f"{source_service}.events", event_type, message_id, payload)


def command_queue(name: str, exchange: str = "") -> Queue:
    """A work queue with exactly one active consumer and hot standbys: a quorum
    queue (replicated, durable) with single-active-consumer; bound to
    ``exchange`` (a topic exchange) by its own name when one is given."""
    source = Exchange(exchange, type="topic", durable=True) if exchange else Exchange("")
    return Queue(name, exchange=source, routing_key=name, durable=True,
                 queue_arguments={"x-queue-type": "quorum", "x-single-active-consumer": True})


def enqueue_command(conn, stream: str, queue: str, message_id: str, payload: dict) -> None:
    enqueue(conn, stream, COMMANDS_EXCHANGE, queue, message_id, payload)


class PublishNotConfirmed(Exception):
    """The broker refused (nacked) or did not confirm a published batch."""


class ConfirmedPublisher:
    """Publishes any number of messages on a channel in confirm mode, then
    ``confirm()`` waits until the broker has confirmed every one of them."""

    def __init__(self, amqp: Connection, timeout: float = 30.0):
        self.amqp = amqp
        self.timeout = timeout
        self.channel = amqp.channel()
        self.channel.confirm_select()
        self.sent = 0  # delivery tags count from 1 per channel in confirm mode
        self.unconfirmed: set[int] = set()
        self.nacked = False
        # (exchange, routing key) pairs this channel has had a message
        # confirmed for: see Relay.publish_batch.
        self.warmed: set[tuple[str, str]] = set()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)

    def _settle(self, tag: int, multiple: bool) -> None:
        if multiple:
            self.unconfirmed = {t for t in self.unconfirmed if t > tag}
        else:
            self.unconfirmed.discard(tag)

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self.nacked = True
        self._settle(tag, multiple)

    def publish(self, body: str, exchange: str, routing_key: str, message_id: str) -> None:
        # py-amqp's own message and publish: kombu's Producer layers
        # (serializer lookup, compression, header merging) cost more per
        # message than writing the frames.
        # ``relayed_at`` (ms): when the relay sent it, for the push bench's
        # hop-by-hop trace (bench/push_bench.py).
        self.channel.basic_publish(
            py_amqp.Message(body, content_type="application/json", content_encoding="utf-8",
                         message_id=message_id, delivery_mode=2,
                         application_headers={"relayed_at": time.time_ns() // 1_000_000}),
            exchange=exchange, routing_key=routing_key)
        self.sent += 1
        self.unconfirmed.add(self.sent)

    def fileno(self) -> int:
        """The broker connection's socket: readable when a confirm arrives."""
        return self.amqp.connection.sock.fileno()

    def poll(self) -> None:
        """Take the confirms the broker has sent, without waiting for more
        (bounded: a confirm is one frame)."""
        for _ in range(10_000):
            if not self.unconfirmed:
                return
            try:
                self.amqp.drain_events(timeout=0.000_001)
            except socket.timeout:
                return

    def confirmed_through(self) -> int:
        """The highest delivery tag up to which every message is confirmed;
        raises once the broker has nacked any message on this channel."""
        if self.nacked:
            raise PublishNotConfirmed(f"the broker nacked a message of the {self.sent} "
                                      f"sent on this channel")
        return min(self.unconfirmed) - 1 if self.unconfirmed else self.sent

    def confirm(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self.unconfirmed and not self.nacked:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishNotConfirmed(f"{len(self.unconfirmed)} messages not confirmed "
                                          f"within {self.timeout} s")
            self.amqp.drain_events(timeout=remaining)
        if self.nacked:
            raise PublishNotConfirmed(f"the broker nacked a message of the {self.sent} "
                                      f"sent on this channel")


class Relay:
    """Publishes one stream's rows. Runs in a greenthread of the owning service."""

    # What publishes (a test may hold the broker's confirms back).
    publisher_class = ConfirmedPublisher

    def __init__(self, pool, amqp_uri: str, stream: str, in_flight: int = 1,
                 linger_s: float = 0.0, merge: Callable[[list], list] | None = None,
                 linger_after: Callable[[list], bool] | None = None):
        self.pool = pool
        # ``merge(rows) -> rows``: the messages to publish for the rows of one
        # read, in the rows' shape ``(id, exchange, routing_key, message_id,
        # payload text)``; the read's rows are deleted once they are confirmed.
        self.merge = merge
        self.amqp_uri = amqp_uri
        self.stream = stream
        self.lock_key = zlib.crc32(f"outbox:{stream}".encode())
        self.declared: set[str] = set()
        self.running = True
        self.active = False
        self.published = 0
        # Ids published and confirmed whose delete rides on the next read
        # (publish_batch): deleted at the latest before the relay waits.
        self.undeleted: list[int] = []
        # Batches published and not yet confirmed, oldest first: (the last
        # delivery tag, the rows' ids, when published), at most
        # ``max_in_flight``; 1 = every batch is confirmed before the next read.
        self.max_in_flight = in_flight
        self.in_flight: list[tuple[int, list[int], float]] = []
        # Reads woken by a commit start at least ``linger_s`` apart (a read
        # after a full batch does not wait): while writers commit faster
        # than that, one read gathers the commits of the interval instead of
        # one each, and every hop after it gets fuller batches; slower
        # writers wait for nothing. 0: read at every commit.
        self.linger_s = linger_s
        self.last_read = float("-inf")
        # ``linger_after(rows)``: whether the next read lingers after a read
        # of these rows (None: always). Orders' relay lingers only after a
        # read of more than one command: a client sending one order after
        # the other (each after the previous one's answer) would otherwise
        # wait the linger on every order it asks the engine's result of
        # (python-binance's FULL answers: 44 ms each against 25 unlingered,
        # session 15); under load every read carries many.
        self.linger_after = linger_after
        self.last_read_lingers = True

    def run(self) -> None:
        while self.running:
            try:
                with self.pool.connection() as lock_conn:
                    lock_conn.autocommit = True
                    if not lock_conn.execute("SELECT pg_try_advisory_lock(%s)",
                                             (self.lock_key,)).fetchone()[0]:
                        self.active = False
                        eventlet.sleep(0.5)
                        continue
                    try:
                        self.active = True
                        self._relay(lock_conn)
                    finally:
                        self.active = False
                        if not lock_conn.closed:
                            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (self.lock_key,))
            except Exception:
                if not self.running:
                    return
                log.exception("outbox relay %s failed; retrying", self.stream)
                eventlet.sleep(1)

    def _relay(self, lock_conn) -> None:
        lock_conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(_channel(self.stream))))
        with Connection(self.amqp_uri) as amqp:
            publisher = self.publisher_class(amqp)
            self.in_flight = []
            try:
                more = True
                while self.running:
                    if self.in_flight:
                        # The confirms already here: while writers keep
                        # committing, the select below is not reached, and
                        # without this the relay would fill up and then
                        # wait for every batch in flight.
                        publisher.poll()
                    self.settle_confirmed(publisher)
                    if len(self.in_flight) >= self.max_in_flight:
                        publisher.confirm()
                    elif more or self._committed(lock_conn):
                        # A full batch read means more may be waiting; a
                        # commit's notification means a new row is (read
                        # once the interval since the last read is over:
                        # the commits made meanwhile go in the same read).
                        if not more and self._linger():
                            self._committed(lock_conn)
                        more = self.publish_batch(publisher, amqp) == BATCH
                    elif self.in_flight:
                        # Nothing to read and confirms on their way: wait
                        # for either a confirm or a writer's commit (whose
                        # rows go out without waiting for the confirm).
                        ready, _, _ = green_select.select(
                            [lock_conn.fileno(), publisher.fileno()], [], [], 1.0)
                        if publisher.fileno() in ready:
                            publisher.poll()
                    else:
                        # The outbox was empty when read (or held less than
                        # a batch, all published and confirmed) and no
                        # writer has committed since. Right after a read it
                        # first lingers (linger_s): a commit made meanwhile
                        # is read at the interval's end. Then it sleeps
                        # until a writer commits (NOTIFY) -- a commit after
                        # the read has queued its notification on
                        # lock_conn, which wakes this at once: no second,
                        # empty read per batch -- and the next read carries
                        # the published rows' delete; if no writer commits
                        # within DELETE_AFTER_S, they are deleted then, and
                        # it sleeps on until a commit or a second passes.
                        # The other commits' notifications already here are
                        # taken too (timeout 0 polls once): one read serves
                        # them all.
                        if not (self._linger() and self._committed(lock_conn)):
                            if not (self.undeleted and self._woken(lock_conn, DELETE_AFTER_S)):
                                self.delete_published()
                                self._woken(lock_conn, 1.0)
                            self._committed(lock_conn)
                        more = True
            finally:
                self._settle_before_stop(publisher)
                self._delete_published_if_possible()

    def _settle_before_stop(self, publisher) -> None:
        """A pipelined relay that stops (or lost its database) deletes the
        in-flight batches whose confirms are already in, instead of leaving
        up to ``max_in_flight`` x BATCH rows to be sent again by the next
        relay. A nack, a lost broker connection or a confirm not in yet
        leaves them all to the next relay (at least once)."""
        if not self.in_flight:
            return
        try:
            publisher.poll()
            self.settle_confirmed(publisher)
        except Exception:   # noqa: BLE001 -- any failure here only means "send again"
            log.info("outbox relay %s: %d batches in flight go out again",
                     self.stream, len(self.in_flight))

    def _linger(self) -> bool:
        """Sleep out what is left of ``linger_s`` since the last read;
        whether it slept."""
        wait = self.last_read + self.linger_s - time.monotonic()
        if wait <= 0 or not self.last_read_lingers:
            return False
        eventlet.sleep(wait)
        return True

    @staticmethod
    def _woken(lock_conn, timeout: float) -> bool:
        """Whether a writer's commit notified within ``timeout`` seconds."""
        return any(True for _ in lock_conn.notifies(timeout=timeout, stop_after=1))

    @staticmethod
    def _committed(lock_conn) -> bool:
        """Whether a writer has committed since the last look (takes every
        notification already here: one read serves them all)."""
        return any([True for _ in lock_conn.notifies(timeout=0)])

    def settle_confirmed(self, publisher) -> None:
        """The in-flight batches the broker has confirmed, oldest first, are
        deleted with the next statement; a nack raises before any later
        batch is (they all go out again, in order, after reconnecting)."""
        if not self.in_flight:
            return
        through = publisher.confirmed_through()
        while self.in_flight and self.in_flight[0][0] <= through:
            _, ids, _ = self.in_flight.pop(0)
            self.undeleted.extend(ids)
            self.published += len(ids)
        if self.in_flight and time.monotonic() - self.in_flight[0][2] > publisher.timeout:
            raise PublishNotConfirmed(f"a batch of {len(self.in_flight[0][1])} messages not "
                                      f"confirmed within {publisher.timeout} s")

    def publish_batch(self, publisher: ConfirmedPublisher, amqp) -> int:
        """Publish up to BATCH rows, confirmed; how many. On the relay's
        own pool (``relay_pool``: autocommit) the published rows are deleted
        by the next read's statement, or by ``delete_published`` before the
        relay waits for a commit: one round trip per batch while writers keep
        committing, instead of a read and a delete; the delete commits
        without waiting for the WAL flush. On any other pool the read and
        the delete share one transaction."""
        self.last_read = time.monotonic()
        with self.pool.connection() as conn:
            done, self.undeleted = self.undeleted, []
            # Rows published and not confirmed yet stay in the outbox until
            # they are (pipelined relay): not read again meanwhile.
            sent = [i for _, ids, _ in self.in_flight for i in ids]
            # payload::text: the stored JSON as it is, neither parsed nor dumped again.
            if done:
                rows = conn.execute(READ_AFTER_DELETE,
                                    (done, self.stream, done + sent, BATCH)).fetchall()
            elif sent:
                rows = conn.execute(READ_EXCEPT, (self.stream, sent, BATCH)).fetchall()
            else:
                rows = conn.execute(READ, (self.stream, BATCH)).fetchall()
            if rows and self.linger_after is not None:
                self.last_read_lingers = self.linger_after(rows)
            if not rows:
                return 0
            # The command queues with a message of this read not confirmed yet
            # (a relay that confirms once per read; the pipelined one confirms
            # around each command already).
            unconfirmed_commands: set[str] = set()
            # One read, fewer messages: the stream's own merge (orders':
            # every command batch of the read to one engine queue as one
            # message), the rows still deleted by their own ids.
            messages = self.merge(rows) if self.merge is not None else rows
            for _, exchange, routing_key, message_id, payload in messages:
                # A row naming the default exchange (queued before commands had
                # their own) goes through the commands exchange: the relays'
                # users may not publish to the default exchange.
                exchange = exchange or COMMANDS_EXCHANGE
                self._declare(amqp, exchange, routing_key)
                # A pipelined relay sends a command (matching's stream: the
                # registry's halt, resume, configure; rare) only once all
                # before it are confirmed, and confirms it before sending
                # more: a nack republishes from the first unconfirmed row,
                # and an engine skips a command id it has journaled, so a
                # halt sent after a nacked resume would otherwise be skipped
                # on the replay and the older resume win.
                command = exchange == COMMANDS_EXCHANGE and self.max_in_flight > 1
                if command:
                    publisher.confirm()
                elif exchange == COMMANDS_EXCHANGE:
                    # At most one unconfirmed command message per engine
                    # queue: the broker may nack one message and confirm a
                    # later one to the same queue (a quorum queue electing
                    # its leader), and the copy published again then comes
                    # after it. A place nacked and the user's CancelAll (or
                    # a freeze's) confirmed behind it: the engine applies the
                    # CancelAll to nothing, then the place, and skips the
                    # CancelAll's copy as journaled -- the order stays live.
                    # Two amends likewise. Messages to other queues still go
                    # out together.
                    if routing_key in unconfirmed_commands:
                        publisher.confirm()
                        unconfirmed_commands.clear()
                    unconfirmed_commands.add(routing_key)
                publisher.publish(payload, exchange, routing_key, message_id)
                if command:
                    publisher.confirm()
                if (exchange, routing_key) not in publisher.warmed:
                    # The first message to a target on this channel goes
                    # alone: RabbitMQ 3.10's quorum-queue client rejects
                    # publishes while it does not yet know the queue's
                    # leader (a fresh queue, a busy node). Pipelined, a
                    # rejected prefix behind an accepted suffix would come
                    # out again after it: commands out of commit order
                    # (seen in CI: 49 of 120 nacked, then all re-sent).
                    publisher.confirm()
                    publisher.warmed.add((exchange, routing_key))
            if conn.autocommit and self.max_in_flight > 1:
                # Confirmed (and then deleted) later: settle_confirmed.
                self.in_flight.append((publisher.sent, [r[0] for r in rows],
                                       time.monotonic()))
                return len(rows)
            # A failure raises before the delete: the rows go out again
            # after reconnecting (at least once).
            publisher.confirm()
            # Committed without waiting for the WAL flush: a delete lost in a
            # crash (or not yet made when the relay dies) only publishes
            # those rows again (at least once, as above), and the next batch
            # no longer waits for an fsync.
            if conn.autocommit:
                self.undeleted = [r[0] for r in rows]
            else:
                conn.execute("SET LOCAL synchronous_commit = off")
                conn.execute(DELETE, ([r[0] for r in rows],))
                conn.commit()
        self.published += len(rows)
        return len(rows)

    def delete_published(self) -> None:
        """The published rows whose delete waited for a next read."""
        if self.undeleted:
            with self.pool.connection() as conn:
                conn.execute(DELETE, (self.undeleted,))
            self.undeleted = []

    def _delete_published_if_possible(self) -> None:
        # The relay stops or lost a connection: what it cannot delete now is
        # published again by the next relay (at least once).
        try:
            self.delete_published()
        except Exception:
            log.warning("outbox relay %s: %d published rows not deleted; they go out again",
                        self.stream, len(self.undeleted))
            self.undeleted = []

    def _declare(self, amqp, exchange: str, routing_key: str) -> None:
        if exchange == COMMANDS_EXCHANGE:
            # The command's queue too, bound: a command sent before its
            # consumer ever started waits there instead of being dropped.
            if routing_key not in self.declared:
                command_queue(routing_key, COMMANDS_EXCHANGE)(amqp.default_channel).declare()
                self.declared.add(routing_key)
        elif exchange not in self.declared:
            Exchange(exchange, type="topic", durable=True)(amqp.default_channel).declare()
            self.declared.add(exchange)


READ = ("SELECT id, exchange, routing_key, message_id, payload::text FROM outbox "
        "WHERE stream = %s ORDER BY id LIMIT %s")
DELETE = "DELETE FROM outbox WHERE id = ANY(%s)"
# The previous batch's delete and the next read in one statement; the read's
# snapshot still has the deleted rows, hence ``<> ALL``.
READ_AFTER_DELETE = (
    "WITH published AS (DELETE FROM outbox WHERE id = ANY(%s)) "
    "SELECT id, exchange, routing_key, message_id, payload::text FROM outbox "
    "WHERE stream = %s AND id <> ALL(%s) ORDER BY id LIMIT %s")
# A read while published rows await their confirm (they stay until then).
READ_EXCEPT = ("SELECT id, exchange, routing_key, message_id, payload::text FROM outbox "
               "WHERE stream = %s AND id <> ALL(%s) ORDER BY id LIMIT %s")


def relay_pool(settings, dbname: str | None, stream: str):
    """The relay's connections: autocommit (its read and its delete are one
    statement each, and a transaction around them cost a BEGIN and a COMMIT
    round trip apiece) and ``synchronous_commit`` off for the whole session
    (its only writes are deletes of published rows; see publish_batch)."""
    return make_pool(settings, dbname, min_size=1, max_size=3, name=f"outbox-{stream}",
                     kwargs={"autocommit": True, "options": "-c synchronous_commit=off"})


class OutboxRelay(DependencyProvider):
    """Runs the relay for ``stream`` for as long as the service container runs."""

    def __init__(self, stream: str, in_flight: int = 1, linger_s: float = 0.0,
                 merge: Callable[[list], list] | None = None,
                 linger_after: Callable[[list], bool] | None = None):
        self.stream = stream
        self.in_flight = in_flight
        self.linger_s = linger_s
        self.merge = merge
        self.linger_after = linger_after

    def setup(self):
        settings = load_settings()
        config = self.container.config
        self.pool = relay_pool(settings, config.get("POSTGRES_DB"), self.stream)
        # Container config OUTBOX_LINGER_S: {stream: seconds} overrides the
        # service's linger (Relay.linger_s).
        linger = (config.get("OUTBOX_LINGER_S") or {}).get(self.stream, self.linger_s)
        self.relay = Relay(self.pool, config["AMQP_URI"], self.stream, self.in_flight,
                           float(linger), self.merge, self.linger_after)

    def start(self):
        self.thread = self.container.spawn_managed_thread(self.relay.run)

    def stop(self):
        self.relay.running = False
        self.thread.kill()
        self.pool.close()

    kill = stop

    def get_dependency(self, worker_ctx):
        return self.relay
