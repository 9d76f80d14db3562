"""The RPC request queue's type comes from one setting (services/common/queues.py)."""
import pytest

from services.common.config import load_settings
from services.common.deadlines import DeadlineRpc
from services.common.queues import RequestQueueConsumer, request_queue, request_queue_arguments
from services.common.rpc_requests import RequestRpc


def test_the_local_stack_declares_classic_request_queues():
    config = load_settings({}).nameko_config()
    assert config["RPC_QUEUE_TYPE"] == "classic"
    assert request_queue_arguments(config) == {}


def test_a_cluster_declares_quorum_request_queues_named_and_bound_as_nameko_does():
    config = load_settings({"EXCHANGE_RABBITMQ_QUEUE_TYPE": "quorum"}).nameko_config()
    queue = request_queue("orders", config)
    assert queue.name == "rpc-orders"
    assert queue.routing_key == "orders.*"
    assert queue.exchange.name == config["rpc_exchange"]
    assert queue.durable and not queue.auto_delete
    assert queue.queue_arguments == {"x-queue-type": "quorum"}


def test_a_config_without_the_key_keeps_classic():
    assert request_queue_arguments({"AMQP_URI": "amqp://x"}) == {}


@pytest.mark.parametrize("value", ["Quorum", "stream", "quorum "])
def test_an_unknown_queue_type_is_refused_with_the_setting_named(value):
    with pytest.raises(ValueError, match="EXCHANGE_RABBITMQ_QUEUE_TYPE"):
        request_queue_arguments({"RPC_QUEUE_TYPE": value})


def test_every_rpc_entrypoint_of_ours_uses_the_configured_consumer():
    assert isinstance(DeadlineRpc.rpc_consumer, RequestQueueConsumer)
    assert isinstance(RequestRpc.rpc_consumer, RequestQueueConsumer)
