"""The outbox relay's round trips, without servers: while writers keep
committing, a batch's delete rides on the next read's statement."""
from __future__ import annotations

import contextlib

from services.common.outbox import DELETE, READ, READ_AFTER_DELETE, Relay


class Conn:
    autocommit = True

    def __init__(self, log, outbox):
        self.log, self.outbox = log, outbox

    def execute(self, query, params):
        self.log.append((query, params))
        if query in (READ, READ_AFTER_DELETE):
            gone = set(params[0]) if query == READ_AFTER_DELETE else set()
            self.outbox[:] = [row for row in self.outbox if row[0] not in gone]
            rows = self.outbox[:]
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
