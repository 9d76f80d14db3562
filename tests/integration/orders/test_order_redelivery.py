"""A redelivered place_order request is answered with the order it placed,
not refused as a duplicate; a different request reusing the client order id
is refused (issue 11). Before: the redelivered request with a client order
id answered DUPLICATE_CLIENT_ORDER_ID to the very caller whose order it was.

The broker's redelivery is reproduced as the broker does it: the same
request (same correlation id, the id Nameko keeps across redeliveries)
published again after the first run committed."""
import socket
import time
import uuid
from decimal import Decimal as D

from kombu import Connection, Consumer, Producer, Queue
from nameko.rpc import get_rpc_exchange

from tests.integration.orders.conftest import balance, fund


def send_requests(nameko_config, requests: list[tuple[str, dict]],
                  method: str = "place_order") -> list[dict]:
    """Publish ``(correlation_id, body)`` requests to orders.<method> one
    after the other (each after the previous reply); the replies in order."""
    rpc_exchange = get_rpc_exchange(nameko_config)
    replies = []
    name = f"test-replies-{uuid.uuid4()}"
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        reply_queue = Queue(name, exchange=rpc_exchange, routing_key=name, auto_delete=True,
                            exclusive=True)
        with Consumer(amqp, [reply_queue], callbacks=[lambda body, m: (replies.append(body),
                                                                       m.ack())],
                      accept=["json"]):
            producer = Producer(amqp)
            for count, (correlation_id, body) in enumerate(requests, start=1):
                producer.publish(body, exchange=rpc_exchange, routing_key=f"orders.{method}",
                                 serializer="json", reply_to=name, correlation_id=correlation_id)
                deadline = time.monotonic() + 30
                while len(replies) < count and time.monotonic() < deadline:
                    try:
                        amqp.drain_events(timeout=1)
                    except socket.timeout:
                        pass
                assert len(replies) == count, "no reply within 30 s"
    return replies


def test_a_redelivered_request_with_a_client_order_id_gets_its_order(exchange, nameko_config):
    user = fund(exchange, {"USDT": "1000"})
    body = {"args": [user, "BTC-USDT", "buy", "limit"],
            "kwargs": {"quantity": "0.1", "price": "100", "client_order_id": "mine-1"}}
    request_id = str(uuid.uuid4())
    first, redelivered, other = send_requests(
        nameko_config, [(request_id, body), (request_id, body), (str(uuid.uuid4()), body)])
    assert (first["error"], redelivered["error"]) == (None, None), redelivered
    assert redelivered["result"]["order_id"] == first["result"]["order_id"]
    assert redelivered["result"]["client_order_id"] == "mine-1"
    # Another request reusing the client order id: refused, nothing held.
    assert other["error"]["exc_type"] == "DuplicateClientOrderId", other
    assert [o["order_id"] for o in exchange.orders.open_orders(user)] == [
        first["result"]["order_id"]]
    assert balance(exchange, user, "USDT") == (D("990"), D("10"))
    exchange.orders.cancel_order(user, first["result"]["order_id"])
