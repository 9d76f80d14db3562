"""Publishing from tests the way the relay does: confirmed, and re-sent when
refused. RabbitMQ 3.10 rejects publishes to a quorum queue whose leader the
channel does not know yet (a queue declared moments ago, a busy node);
without confirms such messages vanish silently and a test waits in vain
("trades not ingested in time" in a CI run)."""
from __future__ import annotations

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
