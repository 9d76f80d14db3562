"""The transactional outbox against real PostgreSQL and RabbitMQ."""
import random
import time
import uuid

import eventlet
import pytest
from kombu import Connection, Consumer
from nameko.events import event_handler
from nameko.testing.services import entrypoint_waiter

from services.common.outbox import (
    DELETE_AFTER_S, ConfirmedPublisher, Relay, command_queue, enqueue_command, enqueue_event,
    enqueue_many, relay_pool,
)
from services.common.postgres import Database, make_pool


@pytest.fixture(scope="module")
def pool(test_settings):
    pool = make_pool(test_settings, max_size=8)
    yield pool
    pool.close()


@pytest.fixture
def stream():
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def own_pool(test_settings):
    """The relay's own connections, as OutboxRelay makes them (autocommit,
    asynchronous commit of its deletes)."""
    pool = relay_pool(test_settings, None, "test")
    yield pool
    pool.close()


@pytest.fixture(params=[1, 8], ids=["confirm-each-batch", "pipelined"])
def relay(request, own_pool, nameko_config, stream):
    """Every test runs against both relays: one confirming each batch
    before the next read, and matching's, with 8 batches in flight."""
    relays = []

    def start(publisher_class=ConfirmedPublisher, relay_class=Relay):
        r = relay_class(own_pool, nameko_config["AMQP_URI"], stream, in_flight=request.param)
        r.publisher_class = publisher_class
        r.thread = eventlet.spawn(r.run)
        relays.append(r)
        return r
    yield start
    for r in relays:
        r.running = False
        r.thread.kill()


class Listener:
    name = "outbox_listener"
    received = []

    @event_handler("outbox_source", "thing_happened")
    def on_thing(self, payload):
        Listener.received.append(payload["n"])
        return payload["n"]


def test_committed_event_reaches_a_nameko_handler_and_rollback_publishes_nothing(
        pool, relay, stream, container_factory, nameko_config):
    container = container_factory(Listener, nameko_config)
    container.start()
    Listener.received.clear()
    relay()
    db = Database(pool)
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            enqueue_event(conn, stream, "outbox_source", "thing_happened", "m-rolled-back", {"n": -1})
            raise RuntimeError("the change failed")
    with entrypoint_waiter(container, "on_thing", timeout=10) as result:
        with db.transaction() as conn:
            enqueue_event(conn, stream, "outbox_source", "thing_happened", "m-1", {"n": 1})
    assert result.get() == 1
    eventlet.sleep(0.3)
    assert Listener.received == [1]
    with pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM outbox WHERE stream = %s",
                            (stream,)).fetchone()[0] == 0


def drain(nameko_config, queue_name, expected, timeout=15):
    got = []
    with Connection(nameko_config["AMQP_URI"]) as conn:
        queue = command_queue(queue_name)(conn.default_channel)
        queue.declare()

        def on_message(body, message):
            got.append((message.properties.get("message_id"), body["n"]))
            message.ack()
        with Consumer(conn, [queue], callbacks=[on_message], accept=["json"]):
            deadline = time.monotonic() + timeout
            while len(got) < expected and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.5)
                except Exception:
                    pass
        queue.delete()
    return got


def test_commands_are_published_in_commit_order(pool, relay, stream, nameko_config):
    queue_name = f"test.commands.{stream}"
    db = Database(pool)
    for n in range(120):
        with db.transaction() as conn:
            enqueue_command(conn, stream, queue_name, f"cmd-{n}", {"n": n})
    relay()
    got = drain(nameko_config, queue_name, 120)
    assert [n for _, n in got] == list(range(120))
    assert [m for m, _ in got] == [f"cmd-{n}" for n in range(120)]


def test_one_relay_per_stream_and_the_standby_takes_over(pool, relay, stream, nameko_config):
    first, second = relay(), relay()
    deadline = time.monotonic() + 10
    while not (first.active or second.active) and time.monotonic() < deadline:
        eventlet.sleep(0.05)
    eventlet.sleep(1.0)
    assert [first.active, second.active].count(True) == 1
    active, standby = (first, second) if first.active else (second, first)
    active.running = False
    active.thread.kill()
    queue_name = f"test.commands.{stream}"
    with Database(pool).transaction() as conn:
        enqueue_command(conn, stream, queue_name, "after-takeover", {"n": 7})
    got = drain(nameko_config, queue_name, 1)
    assert got == [("after-takeover", 7)]
    assert standby.active and standby.published == 1



def test_a_batch_the_broker_refuses_stays_in_the_outbox(pool, relay, stream, nameko_config):
    """A full queue that rejects publishes makes the broker nack: the relay
    keeps the rows and retries; it never deletes what was not confirmed."""
    from kombu import Exchange, Queue
    source = f"test-refusing-{stream}"
    full = Queue(f"{source}.full", routing_key="#",
                 exchange=Exchange(f"{source}.events", type="topic", durable=True),
                 queue_arguments={"x-max-length": 1, "x-overflow": "reject-publish"})

    def left():
        with pool.connection() as conn:
            return conn.execute("SELECT count(*) FROM outbox WHERE stream = %s",
                                (stream,)).fetchone()[0]
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        full(amqp.default_channel).declare()
        try:
            with Database(pool).transaction() as conn:
                for n in range(3):
                    enqueue_event(conn, stream, source, "thing", f"refused-{n}", {"n": n})
            r = relay()
            eventlet.sleep(3)
            assert left() == 3 and r.published == 0
        finally:
            full(amqp.default_channel).delete()
    deadline = time.monotonic() + 10
    while left() and time.monotonic() < deadline:
        eventlet.sleep(0.2)
    assert left() == 0 and r.published == 3


def test_enqueue_many_keeps_the_rows_order(pool, stream):
    """The engine's events go out in the order it produced them (a consumer
    applies an order's trades before its end): ids follow the rows' order."""
    rows = [("matching.events", "trade_executed" if i % 3 else "order_updated", f"m-{i}",
             {"i": i, "price": "100.01", "nested": {"k": [i, "x"]}}) for i in range(60)]
    random.Random(7).shuffle(rows)
    with Database(pool).transaction() as conn:
        enqueue_many(conn, stream, rows)
    with pool.connection() as conn:
        stored = conn.execute("SELECT exchange, routing_key, message_id, payload FROM outbox "
                              "WHERE stream = %s ORDER BY id", (stream,)).fetchall()
        conn.execute("DELETE FROM outbox WHERE stream = %s", (stream,))
    assert [tuple(row) for row in stored] == rows


class HeldConfirms(ConfirmedPublisher):
    """A real channel in confirm mode whose confirms the test holds back
    (they arrive from the broker and wait here) until ``release``."""
    holding = False
    held: list = []

    def _on_ack(self, tag, multiple):
        if HeldConfirms.holding:
            HeldConfirms.held.append((self, tag, multiple))
        else:
            super()._on_ack(tag, multiple)

    @classmethod
    def release(cls):
        cls.holding = False
        for publisher, tag, multiple in cls.held:
            publisher._settle(tag, multiple)
        cls.held = []


def test_a_pipelined_relay_publishes_a_commit_before_the_previous_confirm(
        pool, relay, stream, nameko_config, request):
    """Matching's relay (in flight 8): a row committed while the previous
    batch's confirm is still on its way is published at once, and neither
    row leaves the outbox before its confirm."""
    if request.node.callspec.params["relay"] == 1:
        pytest.skip("the relay that confirms each batch waits, by design")
    from kombu import Exchange, Queue
    source = f"test-held-{stream}"
    queue = Queue(f"{source}.all", routing_key="#",
                  exchange=Exchange(f"{source}.events", type="topic", durable=True))
    db = Database(pool)

    def left():
        with pool.connection() as conn:
            return [m for m, in conn.execute(
                "SELECT message_id FROM outbox WHERE stream = %s ORDER BY id", (stream,))]
    got = []
    HeldConfirms.holding, HeldConfirms.held = False, []
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        queue(amqp.default_channel).declare()
        consumer = Consumer(amqp, [queue], accept=["json"],
                            callbacks=[lambda body, m: (got.append(body["n"]), m.ack())])

        def receive(count):
            deadline = time.monotonic() + 15
            while len(got) < count and time.monotonic() < deadline:
                try:
                    amqp.drain_events(timeout=0.2)
                except Exception:
                    eventlet.sleep(0)
        try:
            with consumer:
                r = relay(HeldConfirms)
                # The first message to a target is confirmed alone (warm-up).
                with db.transaction() as conn:
                    enqueue_event(conn, stream, source, "thing", "held-0", {"n": 0})
                receive(1)
                deadline = time.monotonic() + 15
                while r.published < 1 and time.monotonic() < deadline:
                    eventlet.sleep(0.05)   # its confirm is in (not held)
                HeldConfirms.holding = True
                with db.transaction() as conn:
                    enqueue_event(conn, stream, source, "thing", "held-1", {"n": 1})
                receive(2)
                with db.transaction() as conn:
                    enqueue_event(conn, stream, source, "thing", "held-2", {"n": 2})
                receive(3)
                assert got == [0, 1, 2]
                # Both published, neither confirmed: both still in the outbox.
                assert left() == ["held-1", "held-2"] and r.published == 1
                HeldConfirms.release()
                deadline = time.monotonic() + 15
                while (left() or r.published < 3) and time.monotonic() < deadline:
                    eventlet.sleep(0.1)
                assert left() == [] and r.published == 3
        finally:
            HeldConfirms.release()
            queue(amqp.default_channel).delete()


class WatchedWaits(Relay):
    """A relay that records, each time it starts its long wait for a
    writer's commit (a second; not the DELETE_AFTER_S its published rows
    wait for a commit's read to carry their delete), ``(rows it has
    published, its stream's rows in the outbox)``: the outbox read at that
    moment, from the relay's own greenthread."""

    def _relay(self, lock_conn) -> None:
        self.waits = []
        super()._relay(WaitWatcher(lock_conn, self))


class WaitWatcher:
    """The relay's LISTEN connection, with ``notifies`` (its wait) watched."""

    def __init__(self, conn, relay):
        self.conn, self.relay = conn, relay

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def notifies(self, timeout=None, stop_after=None):
        if timeout and timeout > DELETE_AFTER_S:
            with self.relay.pool.connection() as conn:
                left = conn.execute("SELECT count(*) FROM outbox WHERE stream = %s",
                                    (self.relay.stream,)).fetchone()[0]
            self.relay.waits.append((self.relay.published, left))
        return self.conn.notifies(timeout=timeout, stop_after=stop_after)


def test_a_relay_deletes_what_it_published_before_it_waits(pool, relay, stream):
    """The delete of a published batch rides on the next read while writers
    keep committing; when none does within DELETE_AFTER_S, the relay deletes
    it before it waits on (an outbox left holding published rows would
    publish them again after a takeover, and grow while the stream is
    quiet)."""
    # Committed before the relay listens: no notification makes it read
    # again (that read would carry the delete) after the read that finds them.
    with Database(pool).transaction() as conn:
        for n in range(3):
            enqueue_event(conn, stream, f"test-quiet-{stream}", "thing", f"quiet-{n}", {"n": n})
    r = relay(relay_class=WatchedWaits)
    deadline = time.monotonic() + 15
    while not [w for w in getattr(r, "waits", []) if w[0] == 3]:
        assert time.monotonic() < deadline, f"the relay did not wait after publishing: {r}"
        eventlet.sleep(0.05)
    assert [w for w in r.waits if w[0] == 3][0] == (3, 0), "published rows left while it waits"


class StopsAfterAPublish(Relay):
    """A relay told to stop as soon as a batch of it is confirmed."""

    def publish_batch(self, publisher, amqp) -> int:
        count = super().publish_batch(publisher, amqp)
        if count:
            self.running = False
        return count


def test_a_stopping_relay_deletes_what_it_published(pool, relay, stream, request):
    """A relay that stops with confirmed rows whose delete waited for its
    next read deletes them on its way out (not published again by the
    next relay)."""
    if request.node.callspec.params["relay"] != 1:
        pytest.skip("the pipelined relay's batch is unconfirmed when it stops: it stays")
    with Database(pool).transaction() as conn:
        for n in range(3):
            enqueue_event(conn, stream, f"test-stop-{stream}", "thing", f"stop-{n}", {"n": n})
    r = relay(relay_class=StopsAfterAPublish)
    with eventlet.Timeout(15):
        r.thread.wait()
    with pool.connection() as conn:
        left = conn.execute("SELECT count(*) FROM outbox WHERE stream = %s",
                            (stream,)).fetchone()[0]
    assert (r.published, left) == (3, 0)


def test_a_large_payload_is_stored_compressed_with_lz4(pool, stream):
    """Engine batches' events are above the TOAST threshold: lz4, not pglz
    (common migration 004: a fraction of the CPU, bench/README.md session 20)."""
    events = [{"trade_id": i, "price": "100.01", "quantity": "0.1000",
               "maker_user": uuid.uuid4().hex, "taker_user": uuid.uuid4().hex} for i in range(200)]
    with pool.connection() as conn:
        with conn.transaction(force_rollback=True):
            enqueue_many(conn, stream, [("", "q", "batch-1", {"events": events})])
            method = conn.execute("SELECT pg_column_compression(payload) FROM outbox "
                                  "WHERE stream = %s", (stream,)).fetchone()[0]
    assert method == "lz4"
