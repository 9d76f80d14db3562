"""A service's RPC request queue is a quorum queue when the setting says so
(services/common/queues.py), on the real RabbitMQ, and answers calls."""
import uuid

import amqp
import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.deadlines import rpc


def declared_type(nameko_config, queue: str, queue_type: str) -> bool:
    """Redeclaring a queue with other arguments is refused: the declaration
    succeeds only with the type the queue has."""
    uri = nameko_config["AMQP_URI"]
    credentials, _, rest = uri.removeprefix("amqp://").partition("@")
    user, _, password = credentials.partition(":")
    host, _, vhost = rest.partition("/")
    with amqp.Connection(host=host, userid=user, password=password, virtual_host=vhost) as conn:
        channel = conn.channel()
        arguments = {} if queue_type == "classic" else {"x-queue-type": queue_type}
        try:
            channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)
            return True
        except amqp.exceptions.PreconditionFailed:
            return False


def delete_queue(nameko_config, queue: str) -> None:
    uri = nameko_config["AMQP_URI"]
    credentials, _, rest = uri.removeprefix("amqp://").partition("@")
    user, _, password = credentials.partition(":")
    host, _, vhost = rest.partition("/")
    with amqp.Connection(host=host, userid=user, password=password, virtual_host=vhost) as conn:
        conn.channel().queue_delete(queue)


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
def test_the_request_queue_has_the_configured_type_and_serves_calls(
        container_factory, nameko_config, queue_type):
    service_name = f"queue_type_{queue_type}_{uuid.uuid4().hex[:8]}"

    class Echo:
        name = service_name

        @rpc
        def echo(self, value):
            return value

    config = {**nameko_config, "RPC_QUEUE_TYPE": queue_type}
    container = container_factory(Echo, config)
    container.start()
    try:
        with ClusterRpcProxy(config, timeout=30) as proxy:
            assert getattr(proxy, service_name).echo(7) == 7
        container.stop()
        queue = f"rpc-{service_name}"
        other = "classic" if queue_type == "quorum" else "quorum"
        assert not declared_type(config, queue, other)
        assert declared_type(config, queue, queue_type)
    finally:
        delete_queue(config, f"rpc-{service_name}")
