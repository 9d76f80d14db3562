"""The pipelined trade consumer (services/marketdata/tradefeed.py) on the real
RabbitMQ: what reaches ``handle`` for every shape of message, and that
nothing is acknowledged before its batch -- and every batch before it --
has been handled."""
import json
import time
import uuid

import eventlet
import eventlet.event
import pytest
from kombu import Connection, Exchange, Producer

from tests.integration.amqp_kit import confirmed_connection, publish_confirmed
from services.common.outbox import command_queue
from services.marketdata.tradefeed import PipelinedBatchConsumer


@pytest.fixture
def route(nameko_config):
    tag = uuid.uuid4().hex[:8]
    queue, exchange = f"marketdata.feed.test-{tag}", f"marketdata.feed-{tag}.events"
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        channel = amqp.default_channel
        Exchange(exchange, type="topic", durable=True)(channel).declare()
        q = command_queue(queue)(channel)
        q.declare()
        q.bind_to(Exchange(exchange, type="topic", durable=True), routing_key="trade_executed")
    yield queue, exchange
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        command_queue(queue)(amqp.default_channel).delete()
        Exchange(exchange)(amqp.default_channel).delete()


def publish(amqp_uri, exchange, messages):
    """messages: (body bytes/str, publish kwargs) pairs, published in order."""
    with confirmed_connection(amqp_uri) as amqp:
        producer = Producer(amqp.default_channel, exchange=Exchange(exchange, type="topic",
                                                                    durable=True))
        for body, kwargs in messages:
            publish_confirmed(producer, body, routing_key="trade_executed", delivery_mode=2,
                              **kwargs)


def ready_count(amqp_uri, queue) -> int:
    with Connection(amqp_uri) as amqp:
        return command_queue(queue)(amqp.default_channel).queue_declare(passive=True).message_count


def wait_until(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        eventlet.sleep(0.02)


def run(consumer):
    thread = eventlet.spawn(consumer.run)

    def stop():
        consumer.running = False
        thread.kill()
    return stop


def test_every_shape_of_message_reaches_handle_whole_and_in_order(nameko_config, route):
    """Most messages are parsed straight from the read buffer; the rest
    (a body over several frames, ...) go through py-amqp: both must give
    handle the same routing key, message id and decoded body."""
    queue, exchange = route
    big = {"market": "X", "padding": "x" * 300_000}          # > frame_max: several body frames
    messages, expected = [], []
    for i in range(60):
        payload = {"n": i, "price": "64000.01"}
        kwargs = {"serializer": "json", "message_id": f"m-{i}"}
        if i % 3 == 1:                       # every optional property before message-id
            kwargs.update(headers={"h": i, "nested": {"a": [1, "b"]}}, priority=3,
                          correlation_id=f"c-{i}", reply_to="somewhere", expiration=600,
                          content_encoding="utf-8")
        if i % 5 == 2:                       # properties after message-id too
            kwargs.update(timestamp=1_700_000_000, type="trade", app_id="matching")
        messages.append((payload, kwargs))
        expected.append(("trade_executed", f"m-{i}", payload))
    messages.append((big, {"serializer": "json", "message_id": "big"}))
    expected.append(("trade_executed", "big", big))
    messages.append(("not json", {"content_type": "text/plain", "content_encoding": "utf-8",
                                  "message_id": "text"}))
    expected.append(("trade_executed", "text", "not json"))
    messages.append((json.dumps({"no": "id"}), {"content_type": "application/json",
                                               "content_encoding": "utf-8"}))
    expected.append(("trade_executed", None, {"no": "id"}))
    publish(nameko_config["AMQP_URI"], exchange, messages)

    seen = []
    consumer = PipelinedBatchConsumer(nameko_config["AMQP_URI"], queue, exchange,
                                      ["trade_executed"], seen.extend, batch=7, depth=2)
    stop = run(consumer)
    try:
        wait_until(lambda: consumer.handled == len(expected))
    finally:
        stop()
    assert seen == expected
    assert ready_count(nameko_config["AMQP_URI"], queue) == 0      # all acked


def ids_of(batch):
    return [message_id for _, message_id, _ in batch]


# Batch boundaries depend on when frames arrive; with batch=5, ten messages
# make at least two batches, and the first holds message "0".

def test_a_batch_is_acked_only_once_it_and_every_earlier_batch_are_handled(nameko_config, route):
    queue, exchange = route
    uri = nameko_config["AMQP_URI"]
    everything = [str(i) for i in range(10)]
    publish(uri, exchange, [({"n": i}, {"serializer": "json", "message_id": str(i)})
                            for i in range(10)])
    release = eventlet.event.Event()
    slow, done = [], []

    def handle(batch):
        if "0" in ids_of(batch):
            slow.extend(ids_of(batch))
            release.wait()                  # the first batch is slow to become durable
        done.extend(ids_of(batch))

    consumer = PipelinedBatchConsumer(uri, queue, exchange, ["trade_executed"], handle,
                                      batch=5, depth=3)
    stop = run(consumer)
    try:
        wait_until(lambda: slow and sorted(done + slow, key=int) == everything)
        eventlet.sleep(0.2)                 # ample time for a wrong early ack
        assert consumer.handled == 0 and consumer.in_flight >= 2
    finally:
        stop()                              # the connection closes, unacked messages return
    wait_until(lambda: ready_count(uri, queue) == 10)   # the finished later batches too

    release.send()
    done.clear()
    consumer = PipelinedBatchConsumer(uri, queue, exchange, ["trade_executed"], handle,
                                      batch=5, depth=3)
    stop = run(consumer)
    try:
        wait_until(lambda: consumer.handled == 10)
    finally:
        stop()
    assert done == everything
    assert ready_count(uri, queue) == 0


def test_a_failed_batch_and_all_after_it_come_back(nameko_config, route):
    queue, exchange = route
    uri = nameko_config["AMQP_URI"]
    publish(uri, exchange, [({"n": i}, {"serializer": "json", "message_id": str(i)})
                            for i in range(15)])
    seen, failed, before_failure = [], [], []

    def handle(batch):
        ids = ids_of(batch)
        if "5" in ids and not failed:
            failed.extend(ids)
            # The batches after it are handled first: all of them, or as many
            # as the pipeline lets in flight (batches are smaller than 5 when
            # deliveries trickle in, and then "14" may be beyond the depth).
            wait_until(lambda: "14" in seen or consumer.in_flight >= consumer.depth)
            eventlet.sleep(0.05)                # let those in flight finish
            before_failure.extend(seen)
            raise RuntimeError("Cassandra timed out")
        seen.extend(ids)

    consumer = PipelinedBatchConsumer(uri, queue, exchange, ["trade_executed"], handle,
                                      batch=5, depth=3)
    stop = run(consumer)
    try:
        wait_until(lambda: consumer.handled == 15)
    finally:
        stop()
    # the failed batch and every later one (handled, yet not acked) came
    # back, in order; the batches before it did not
    again = [str(i) for i in range(int(failed[0]), 15)]
    assert seen[-len(again):] == again
    assert seen.count("0") == 1
    later = [i for i in before_failure if int(i) > int(failed[-1])]
    assert all(seen.count(i) == 2 for i in later)     # handled, not acked: back again
    assert ready_count(uri, queue) == 0
