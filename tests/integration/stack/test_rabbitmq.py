"""RabbitMQ through Nameko: an RPC round trip and an event between two real
service containers on the test vhost."""
from nameko.events import EventDispatcher, event_handler
from nameko.rpc import RpcProxy, rpc
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.services import entrypoint_waiter


class EchoService:
    name = "stack_echo"
    dispatch = EventDispatcher()

    @rpc
    def echo(self, value):
        return {"echoed": value}

    @rpc
    def announce(self, value):
        self.dispatch("value_announced", {"value": value})


class ListenerService:
    name = "stack_listener"
    echo_rpc = RpcProxy("stack_echo")
    received = []

    @rpc
    def ask_echo(self, value):
        return self.echo_rpc.echo(value)

    @event_handler("stack_echo", "value_announced")
    def on_value_announced(self, payload):
        ListenerService.received.append(payload["value"])
        return payload["value"]


def test_rpc_round_trip_between_two_services(container_factory, nameko_config):
    for cls in (EchoService, ListenerService):
        container_factory(cls, nameko_config).start()
    with ServiceRpcProxy("stack_listener", nameko_config, timeout=10) as listener:
        assert listener.ask_echo("ping-42") == {"echoed": "ping-42"}


def test_event_is_delivered_to_the_other_service(container_factory, nameko_config):
    echo = container_factory(EchoService, nameko_config)
    listener = container_factory(ListenerService, nameko_config)
    echo.start()
    listener.start()
    ListenerService.received.clear()
    with entrypoint_waiter(listener, "on_value_announced", timeout=10) as result:
        with ServiceRpcProxy("stack_echo", nameko_config, timeout=10) as proxy:
            proxy.announce("evt-7")
    assert result.get() == "evt-7"
    assert ListenerService.received == ["evt-7"]
