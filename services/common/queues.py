"""The type of the RPC request queues, one setting for every service.

Work queues (engine commands, settlement, order events, market-data ingest)
are always quorum queues (``outbox.command_queue``): they need
single-active-consumer and must survive a node. Nameko declares each
service's RPC request queue (``rpc-<service>``) itself, as a classic queue,
which lives on one RabbitMQ node only: in a cluster, losing that node's zone
would lose the queue and every request in it. ``EXCHANGE_RABBITMQ_QUEUE_TYPE``
(``classic`` or ``quorum``, in the Nameko config as ``RPC_QUEUE_TYPE``) makes
it a quorum queue; the three-zones inventory turns it on. The local stack
keeps ``classic``: a queue's type cannot change once declared (RabbitMQ
refuses a redeclaration with other arguments), and a single node gains
nothing from a replicated queue.

The same holds for the durable queue of a service-pool event handler
(``evt-<source>-<event>--<service>.<method>``): ``replicated_event_handler``
declares it with the same type. A classic one lives on the node that first
declared it; while that node's zone was cut (zones drill of 2026-12-05) every
process of matching failed to declare ``evt-registry-market_updated--
matching.follow_market_status`` once a second, and since Nameko consumes all
of a service's queues on one connection, matching's RPC (its ``health``
included) stopped in every zone for as long as the cut lasted.
"""
from __future__ import annotations

from kombu import Queue
from nameko.events import EventHandler
from nameko.rpc import RPC_QUEUE_TEMPLATE, RpcConsumer, get_rpc_exchange

QUEUE_TYPE_CONFIG_KEY = "RPC_QUEUE_TYPE"
QUEUE_TYPES = ("classic", "quorum")


def request_queue_arguments(config: dict) -> dict:
    """The declaration arguments of an RPC request queue under ``config``
    (a Nameko config); an unknown type is a configuration error."""
    queue_type = config.get(QUEUE_TYPE_CONFIG_KEY) or "classic"
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"{QUEUE_TYPE_CONFIG_KEY} (EXCHANGE_RABBITMQ_QUEUE_TYPE) is {queue_type!r}: "
                         f"one of {', '.join(QUEUE_TYPES)}")
    return {} if queue_type == "classic" else {"x-queue-type": queue_type}


def request_queue(service_name: str, config: dict) -> Queue:
    """``rpc-<service>`` as Nameko names and binds it, of the configured type."""
    return Queue(RPC_QUEUE_TEMPLATE.format(service_name), exchange=get_rpc_exchange(config),
                 routing_key=f"{service_name}.*", durable=True,
                 queue_arguments=request_queue_arguments(config))


class RequestQueueConsumer(RpcConsumer):
    """Nameko's RPC consumer, declaring its queue with ``request_queue``."""

    def setup(self):
        if self.queue is None:
            self.queue = request_queue(self.container.service_name, self.container.config)
            self.queue_consumer.register_provider(self)
            self._registered = True


class ReplicatedEventHandler(EventHandler):
    """Nameko's event handler, its durable queue of the configured type
    (module docstring). Exclusive and auto-delete queues (broadcast handlers,
    handlers without reliable delivery) stay as Nameko declares them: they
    belong to one connection and go with it, and a quorum queue can be
    neither."""

    def setup(self):
        super().setup()
        if self.queue.durable and not self.queue.auto_delete and not self.queue.exclusive:
            self.queue.queue_arguments = {**(self.queue.queue_arguments or {}),
                                          **request_queue_arguments(self.container.config)}


replicated_event_handler = ReplicatedEventHandler.decorator
