"""The one-off upgrade step for a queue whose type changed (issue 15;
ansible/library/exchange_stack.py `migrate`, run by site.yml and
upgrade.yml), on the real RabbitMQ of `make up`, in the test vhost.

Before 2026-12-05 matching's market_updated queue was classic; the new code
declares it quorum, RabbitMQ refuses (PRECONDITION_FAILED) and matching
answered nothing: a redeploy onto an older deployment hung. Checked here: the
refusal itself, that the step refuses (naming the queue) while a process of
the old version still consumes the queue, that it deletes the idle queue so
the quorum declaration succeeds, and that a second run changes nothing.
A unique queue name of the same shape, and the step limited to it, keep
the other queues of the shared test vhost (other tests' services, classic
locally) out of it.
"""
import importlib.util
import uuid

import amqp
import pytest
from kombu import Connection, Exchange, Queue

from services.common.config import REPO_ROOT

spec = importlib.util.spec_from_file_location("exchange_stack", REPO_ROOT / "ansible" / "library" / "exchange_stack.py")
exchange_stack = importlib.util.module_from_spec(spec)
spec.loader.exec_module(exchange_stack)


@pytest.fixture
def quorum_settings(test_settings):
    return test_settings.with_overrides(EXCHANGE_RABBITMQ_QUEUE_TYPE="quorum")


@pytest.fixture
def connection(test_settings):
    with Connection(test_settings.amqp_uri(), connect_timeout=10) as conn:
        conn.ensure_connection(max_retries=3)
        yield conn


def ours(deleted, name):
    return [q for q in deleted if q["name"] == name]


def test_a_classic_queue_the_new_code_declares_quorum_is_deleted_when_idle(connection, quorum_settings):
    name = f"evt-registry-market_updated--matching_{uuid.uuid4().hex[:8]}.follow_market_status"
    exchange = Exchange("registry.events", type="topic", durable=True)
    old = Queue(name, exchange=exchange, routing_key="market_updated", durable=True)
    new = Queue(name, exchange=exchange, routing_key="market_updated", durable=True,
                queue_arguments={"x-queue-type": "quorum"})
    channel = connection.channel()
    try:
        old(channel).declare()
        channel.basic_publish(amqp.Message(b"{}"), exchange="", routing_key=name)
        # What the new matching meets.
        with pytest.raises(amqp.exceptions.PreconditionFailed):
            new(connection.channel()).declare()

        # An old process still consumes it: refused, naming the queue.
        consumer_channel = connection.channel()
        tag = consumer_channel.basic_consume(name, callback=lambda message: None)
        with pytest.raises(RuntimeError, match=name):
            exchange_stack.migrate_queues(quorum_settings, {name})
        consumer_channel.basic_cancel(tag)
        consumer_channel.close()

        deleted = exchange_stack.migrate_queues(quorum_settings, {name})
        assert ours(deleted, name) == [{"name": name, "type": "classic", "consumers": 0, "messages": 1}]
        new(connection.channel()).declare()
        assert ours(exchange_stack.migrate_queues(quorum_settings, {name}), name) == []
    finally:
        connection.channel().queue_delete(name)
