"""Publishing from tests the way the relay does: confirmed, and re-sent when
refused. RabbitMQ 3.10 rejects publishes to a quorum queue whose leader the
channel does not know yet (a queue declared moments ago, a busy node);
without confirms such messages vanish silently and a test waits in vain
("trades not ingested in time" in a CI run)."""
from __future__ import annotations

import socket
import time

import eventlet
from amqp.exceptions import MessageNacked
from kombu import Connection

CONFIRMED = {"confirm_publish": True}
ATTEMPTS = 20


def confirmed_connection(amqp_uri: str) -> Connection:
    """A connection whose producers wait for each publish's confirm (a nack
    raises ``MessageNacked``)."""
    return Connection(amqp_uri, transport_options=CONFIRMED)


def publish_confirmed(producer, body, **kwargs) -> None:
    """``producer.publish(body, **kwargs)`` on a confirmed connection, re-sent
    at most ``ATTEMPTS`` times while the broker nacks it. One message at a
    time, so the order of the calls is the order in the queue."""
    for attempt in range(ATTEMPTS):
        try:
            producer.publish(body, **kwargs)
            return
        except MessageNacked:
            if attempt == ATTEMPTS - 1:
                raise
            eventlet.sleep(0.1)


def take(url: str, queue: str, wait_s: float = 30.0) -> list:
    """The messages in ``queue`` (a quorum queue with single-active-consumer:
    consumed, not fetched), waiting at most ``wait_s`` for the first and
    ~1 s for more."""
    got = []
    with Connection(url, connect_timeout=10) as conn:
        channel = conn.channel()
        channel.basic_consume(queue, callback=got.append, no_ack=True)
        deadline = time.monotonic() + wait_s
        quiet_until = None
        while time.monotonic() < deadline and (quiet_until is None or time.monotonic() < quiet_until):
            try:
                conn.drain_events(timeout=0.2)
            except socket.timeout:
                pass
            if got and quiet_until is None:
                quiet_until = time.monotonic() + 1.0
    return got
