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


def _event_handlers_of_our_services():
    import importlib
    import pkgutil

    import services
    from nameko.events import EventHandler
    for module_info in pkgutil.iter_modules(services.__path__):
        try:
            module = importlib.import_module(f"services.{module_info.name}.service")
        except ModuleNotFoundError:
            continue
        for value in vars(module).values():
            for attribute in vars(value).values() if isinstance(value, type) else ():
                for entrypoint in getattr(attribute, "nameko_entrypoints", ()):
                    if isinstance(entrypoint, EventHandler):
                        yield f"{module.__name__}.{attribute.__name__}", entrypoint


def test_every_durable_event_queue_of_ours_takes_the_configured_type():
    """A classic durable event queue lives on one node: while that node's
    zone is cut, the service's whole consumer, its RPC included, stops
    (services/common/queues.py)."""
    from services.common.queues import ReplicatedEventHandler
    found = list(_event_handlers_of_our_services())
    assert any(name.endswith("follow_market_status") for name, _ in found), found
    for name, handler in found:
        if handler.reliable_delivery:
            assert isinstance(handler, ReplicatedEventHandler), name


def test_a_cluster_declares_the_pool_event_queue_quorum_a_broadcast_one_as_nameko_does():
    from unittest.mock import Mock

    from nameko.events import BROADCAST

    from services.common.queues import ReplicatedEventHandler
    config = load_settings({"EXCHANGE_RABBITMQ_QUEUE_TYPE": "quorum"}).nameko_config()

    def bound(**kwargs):
        handler = ReplicatedEventHandler("registry", "market_updated", **kwargs).bind(
            Mock(service_name="matching", config=config), "follow_market_status")
        handler.queue_consumer = Mock()
        handler.setup()
        return handler.queue

    pool = bound()
    assert pool.name == "evt-registry-market_updated--matching.follow_market_status"
    assert pool.queue_arguments == {"x-queue-type": "quorum"}
    broadcast = bound(handler_type=BROADCAST, reliable_delivery=False)
    assert not broadcast.queue_arguments
