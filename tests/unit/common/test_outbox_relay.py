"""The outbox relay's round trips, without servers: while writers keep
committing, a batch's delete rides on the next read's statement."""
from __future__ import annotations

import contextlib

import eventlet
import pytest

from services.common.outbox import (
    COMMANDS_EXCHANGE, DELETE, READ, READ_AFTER_DELETE, READ_EXCEPT, PublishNotConfirmed, Relay,
)


class Conn:
    autocommit = True

    def __init__(self, log, outbox):
        self.log, self.outbox = log, outbox

    def execute(self, query, params):
        self.log.append((query, params))
        if query in (READ, READ_AFTER_DELETE, READ_EXCEPT):
            gone = set(params[0]) if query == READ_AFTER_DELETE else set()
            self.outbox[:] = [row for row in self.outbox if row[0] not in gone]
            skipped = (set() if query == READ else
                       set(params[1]) if query == READ_EXCEPT else set(params[2]))
            rows = [row for row in self.outbox if row[0] not in skipped]
        else:
            self.outbox[:] = [row for row in self.outbox if row[0] not in set(params[0])]
            rows = []
        return type("Result", (), {"fetchall": lambda _self: rows})()


class Pool:
    def __init__(self):
        self.log, self.outbox = [], []

    @contextlib.contextmanager
    def connection(self):
        yield Conn(self.log, self.outbox)


class Publisher:
    def __init__(self):
        self.sent, self.warmed = [], set()

    def publish(self, payload, exchange, routing_key, message_id):
        self.sent.append(message_id)
        self.warmed.add((exchange, routing_key))

    def confirm(self):
        pass


def row(n):
    return (n, "things.events", "thing", f"m-{n}", "{}")


def test_a_batch_is_deleted_by_the_next_read_and_before_the_relay_waits():
    pool, publisher = Pool(), Publisher()
    relay = Relay(pool, "amqp://unused", "test")
    relay.declared.add("things.events")
    pool.outbox += [row(1), row(2)]
    assert relay.publish_batch(publisher, None) == 2
    pool.outbox.append(row(3))
    assert relay.publish_batch(publisher, None) == 1
    # One statement per batch: the first read, then the next read carrying
    # the first batch's delete (its snapshot still shows the rows: excluded).
    assert [q for q, _ in pool.log] == [READ, READ_AFTER_DELETE]
    assert pool.log[1][1][0] == [1, 2] and pool.log[1][1][2] == [1, 2]
    assert publisher.sent == ["m-1", "m-2", "m-3"]
    relay.delete_published()
    assert pool.log[-1] == (DELETE, ([3],)) and pool.outbox == []
    relay.delete_published()   # nothing left to delete: no statement
    assert len(pool.log) == 3 and relay.published == 3


class UnconfirmedPublisher:
    """Counts delivery tags as a channel in confirm mode does; the test says
    how far the broker has confirmed."""

    def __init__(self):
        self.sent, self.through, self.nacked, self.timeout = 0, 0, False, 30.0
        self.ids, self.warmed = [], set()

    def publish(self, payload, exchange, routing_key, message_id):
        self.sent += 1
        self.ids.append(message_id)
        self.warmed.add((exchange, routing_key))

    def poll(self):
        pass

    def confirm(self):
        self.ids.append(f"confirm {self.sent}")
        self.through = self.sent

    def confirmed_through(self):
        if self.nacked:
            raise PublishNotConfirmed("nacked")
        return self.through


def test_a_pipelined_relay_publishes_the_next_batch_before_the_first_is_confirmed():
    pool, publisher = Pool(), UnconfirmedPublisher()
    relay = Relay(pool, "amqp://unused", "test", in_flight=8)
    relay.declared.add("things.events")
    pool.outbox += [row(1), row(2)]
    assert relay.publish_batch(publisher, None) == 2
    pool.outbox.append(row(3))
    # Not confirmed yet: the next read skips the two in flight and publishes row 3.
    assert relay.publish_batch(publisher, None) == 1
    assert pool.log[1] == (READ_EXCEPT, ("test", [1, 2], 500))
    assert publisher.ids == ["m-1", "m-2", "m-3"] and relay.published == 0
    relay.settle_confirmed(publisher)
    relay.delete_published()
    assert [r[0] for r in pool.outbox] == [1, 2, 3]      # nothing deleted unconfirmed
    publisher.through = 1                                 # half of the first batch
    relay.settle_confirmed(publisher)
    assert relay.undeleted == [] and relay.published == 0
    publisher.through = 2
    relay.settle_confirmed(publisher)
    assert relay.undeleted == [1, 2] and relay.published == 2
    pool.outbox.append(row(4))
    # The confirmed batch's delete rides on the next read, which still skips row 3.
    assert relay.publish_batch(publisher, None) == 1
    assert pool.log[-1] == (READ_AFTER_DELETE, ([1, 2], "test", [1, 2, 3], 500))
    assert publisher.ids[-1] == "m-4"


def pipelined_with_batches_in_flight(*rows_in_turn):
    """A pipelined relay that has published each row as a batch of its own,
    none confirmed yet."""
    pool, publisher = Pool(), UnconfirmedPublisher()
    relay = Relay(pool, "amqp://unused", "test", in_flight=8)
    relay.declared.add("things.events")
    for n in rows_in_turn:
        pool.outbox.append(row(n))
        relay.publish_batch(publisher, None)
    return pool, publisher, relay


def test_a_nack_deletes_nothing_after_it():
    pool, publisher, relay = pipelined_with_batches_in_flight(1, 2, 3)
    publisher.through, publisher.nacked = 3, True
    with pytest.raises(PublishNotConfirmed):
        relay.settle_confirmed(publisher)
    assert relay.undeleted == [] and relay.published == 0


def test_a_stopping_pipelined_relay_deletes_the_batches_already_confirmed():
    pool, publisher, relay = pipelined_with_batches_in_flight(1, 2, 3)
    publisher.through = 2                       # rows 1 and 2 confirmed, row 3 not
    relay._settle_before_stop(publisher)
    relay._delete_published_if_possible()
    assert [r[0] for r in pool.outbox] == [3]   # only the unconfirmed one goes out again


def test_a_stopping_relay_after_a_nack_deletes_nothing_in_flight():
    pool, publisher, relay = pipelined_with_batches_in_flight(1, 2)
    publisher.through, publisher.nacked = 2, True
    relay._settle_before_stop(publisher)
    relay._delete_published_if_possible()
    assert [r[0] for r in pool.outbox] == [1, 2]


def test_a_pipelined_relay_sends_a_command_alone_between_confirms():
    pool, publisher = Pool(), UnconfirmedPublisher()
    relay = Relay(pool, "amqp://unused", "test", in_flight=8)
    relay.declared.update({"things.events", COMMANDS_EXCHANGE, "market.X"})
    publisher.warmed.update({("things.events", "thing"), (COMMANDS_EXCHANGE, "market.X")})
    pool.outbox += [row(1)]
    relay.publish_batch(publisher, None)
    pool.outbox += [(2, COMMANDS_EXCHANGE, "market.X", "halt", "{}"), row(3)]
    relay.publish_batch(publisher, None)
    # Everything before the command is confirmed before it goes, and it is
    # confirmed before anything after it: a nack cannot reorder it.
    assert publisher.ids == ["m-1", "confirm 1", "halt", "confirm 2", "m-3"]


def test_a_relay_sends_a_second_command_to_one_queue_only_once_the_first_is_confirmed():
    """Orders' relay (confirms once per read): a place and the user's
    CancelAll to one engine queue in one read. Were both unconfirmed at once,
    a nack of the place and a confirm of the CancelAll would deliver the
    CancelAll first and the place's copy after it (review R, session 11)."""
    pool, publisher = Pool(), UnconfirmedPublisher()
    relay = Relay(pool, "amqp://unused", "test")
    relay.declared.update({"things.events", COMMANDS_EXCHANGE, "market.X", "market.Y"})
    publisher.warmed.update({("things.events", "thing"), (COMMANDS_EXCHANGE, "market.X"),
                             (COMMANDS_EXCHANGE, "market.Y")})
    pool.outbox += [(1, COMMANDS_EXCHANGE, "market.X", "place", "{}"),
                    (2, COMMANDS_EXCHANGE, "market.Y", "place-y", "{}"), row(3),
                    (4, COMMANDS_EXCHANGE, "market.X", "cancel-all", "{}"),
                    (5, COMMANDS_EXCHANGE, "market.Y", "cancel-all-y", "{}")]
    assert relay.publish_batch(publisher, None) == 5
    # The second message to market.X waits for the confirm of everything
    # before it; market.Y's first went out with market.X's (one confirm for
    # several queues), and its second follows market.X's second unconfirmed.
    assert publisher.ids == ["place", "place-y", "m-3", "confirm 3", "cancel-all",
                             "cancel-all-y", "confirm 5"]


# -- the relay's loop: the delete waits for the next read, the linger -------------

class LockConn:
    """The relay's LISTEN connection: ``commits`` says, wait by wait, whether
    a writer commits (rows added to the outbox, a notification) while the
    relay waits; the relay stops when the script is used up."""

    def __init__(self, relay, pool, commits):
        self.relay, self.pool, self.commits = relay, pool, list(commits)
        self.pending = 0
        self.waits = []

    def execute(self, query, params=None):
        return None

    def notifies(self, timeout=None, stop_after=None):
        if timeout:
            self.waits.append(timeout)
            if not self.commits:
                self.relay.running = False
                return iter(())
            rows = self.commits.pop(0)
            self.pool.outbox += [row(n) for n in rows]
            self.pending += bool(rows)
        got, self.pending = self.pending, 0
        return iter([object()] * got)


class LoopPublisher(Publisher):
    def __init__(self, amqp=None):
        super().__init__()
        self.warmed = {("things.events", "thing")}

    def poll(self):
        pass


def relay_loop(commits, linger_s=0.0, first=(1, 2)):
    pool = Pool()
    relay = Relay(pool, "amqp://unused", "test", linger_s=linger_s)
    relay.publisher_class = LoopPublisher
    relay.declared.add("things.events")
    pool.outbox += [row(n) for n in first]
    lock_conn = LockConn(relay, pool, commits)
    with eventlet.Timeout(10):
        relay._relay(lock_conn)
    return pool, relay, lock_conn


def test_published_rows_wait_for_the_next_commits_read_to_carry_their_delete():
    """A commit soon after a batch (within DELETE_AFTER_S): the batch's delete
    rides on the read of that commit, no statement of its own; a quiet
    stream deletes what it published once DELETE_AFTER_S passed."""
    from services.common.outbox import DELETE_AFTER_S
    pool, relay, lock_conn = relay_loop([[3], []])
    assert [q for q, _ in pool.log] == [READ, READ_AFTER_DELETE, DELETE]
    assert pool.log[1][1][0] == [1, 2] and pool.log[2][1] == ([3],)
    assert lock_conn.waits == [DELETE_AFTER_S, DELETE_AFTER_S, 1.0]
    assert pool.outbox == [] and relay.published == 3


def test_a_relay_that_lingers_reads_the_commits_of_its_interval_at_once(monkeypatch):
    """linger_s: a commit right after a read is read at the interval's end,
    together with every commit made meanwhile (one read, one batch), and
    the earlier batch's delete rides on it."""
    from services.common import outbox
    slept = []

    def sleep(seconds):
        # Two writers commit while the relay lingers the first time.
        slept.append(seconds)
        if len(slept) == 1:
            relay_pool.outbox += [row(4), row(5)]
            lock.pending += 2
    monkeypatch.setattr(outbox.eventlet, "sleep", sleep)
    relay_pool, lock = Pool(), None
    relay = Relay(relay_pool, "amqp://unused", "test", linger_s=60.0)
    relay.publisher_class = LoopPublisher
    relay.declared.add("things.events")
    relay_pool.outbox += [row(1)]
    relay_pool.outbox += [row(2)]
    lock = LockConn(relay, relay_pool, [[]])
    with eventlet.Timeout(10):
        relay._relay(lock)
    # The first read takes rows 1 and 2; then the relay lingers (a wait of
    # at most linger_s), the commits of the interval arrive, and ONE read
    # takes both, carrying the first batch's delete; after it the relay
    # lingers again (nothing comes) and deletes before it waits.
    assert len(slept) == 2 and all(0 < s <= 60.0 for s in slept)
    assert [q for q, _ in relay_pool.log] == [READ, READ_AFTER_DELETE, DELETE]
    assert relay_pool.log[1][1][0] == [1, 2] and relay_pool.log[2][1] == ([4, 5],)
    assert relay.published == 4


def test_a_relay_lingers_only_after_a_read_its_stream_calls_several(monkeypatch):
    """linger_after: after a read it says is not several (orders': one
    command, a lone order), the next commit is read at once; after one it
    says is several, the relay lingers as before."""
    from services.common import outbox
    slept = []
    monkeypatch.setattr(outbox.eventlet, "sleep", slept.append)

    def run(linger_after):
        slept.clear()
        pool = Pool()
        relay = Relay(pool, "amqp://unused", "test", linger_s=60.0, linger_after=linger_after)
        relay.publisher_class = LoopPublisher
        relay.declared.add("things.events")
        pool.outbox += [row(1)]
        lock = LockConn(relay, pool, [[2], [3, 4], []])
        with eventlet.Timeout(10):
            relay._relay(lock)
        assert relay.published == 4
        return len(slept)

    assert run(lambda rows: len(rows) > 1) == 1      # only after the read of rows 3 and 4
    assert run(None) == 3                            # after every read


def test_a_relay_merges_a_reads_rows_and_deletes_each_by_its_id():
    pool, publisher = Pool(), Publisher()
    merged = []

    def merge(rows):
        merged.append([r[0] for r in rows])
        return [(rows[0][0], "things.events", "thing", "m-all", "{}")]
    relay = Relay(pool, "amqp://unused", "test", merge=merge)
    relay.declared.add("things.events")
    pool.outbox += [row(1), row(2), row(3)]
    assert relay.publish_batch(publisher, None) == 3
    assert merged == [[1, 2, 3]] and publisher.sent == ["m-all"]
    relay.delete_published()
    assert pool.log[-1] == (DELETE, ([1, 2, 3],)) and relay.published == 3
