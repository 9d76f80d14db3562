"""Each principal's RabbitMQ user may do what its work needs and nothing the
others need (stack/rabbitmq_access.py), on the real broker's test vhost.

The refusals are the broker's: ACCESS_REFUSED closes the channel, so every
attempt below runs on a channel of its own and ends with a synchronous
method that surfaces an asynchronous refusal of a publish."""
import json
import uuid

import amqp as py_amqp
import eventlet
import pytest
from kombu import Connection

from services.common.config import COMMANDS_EXCHANGE, RPC_EXCHANGE, amqp_principals
from services.common.outbox import Relay, command_queue, enqueue_command
from services.common.postgres import make_pool
from services.matching.providers import command_queue_name
from tests.integration.amqp_kit import take

REFUSED = "ACCESS_REFUSED"


@pytest.fixture(scope="module")
def uri(test_settings):
    vhost = test_settings["EXCHANGE_RABBITMQ_VHOST"]
    return lambda principal=None: test_settings.amqp_uri(vhost, principal)


def attempt(url: str, action) -> str | None:
    """None when the broker allowed ``action(channel)``, else its refusal."""
    try:
        with Connection(url, connect_timeout=10) as conn:
            channel = conn.channel()
            action(channel)
            channel.basic_qos(0, 1, False)  # synchronous: a refused publish shows here
            channel.close()
        return None
    except Exception as exc:  # the broker's refusal, whatever py-amqp class carries it
        return f"{type(exc).__name__}: {exc}"


def publish(exchange: str, routing_key: str, body: dict | None = None, **properties):
    """A publish as ``action``. Every message carries a reply key nobody
    listens on: an allowed RPC request reaches the shared test vhost's real
    request queue, and Nameko kills the container that takes a request
    without one."""
    properties.setdefault("reply_to", str(uuid.uuid4()))
    properties.setdefault("expiration", "10000")  # gone in 10 s when nobody takes it

    def action(channel):
        channel.basic_publish(py_amqp.Message(json.dumps(body or {}), content_type="application/json",
                                              **properties),
                              exchange=exchange, routing_key=routing_key)
    return action


@pytest.fixture
def market():
    # A made-up market: its command queue exists only for this test.
    return f"PERM{uuid.uuid4().hex[:6].upper()}-USDT"


@pytest.fixture
def operator_cleanup(uri):
    queues = []
    yield queues
    with Connection(uri()) as conn:
        channel = conn.channel()
        for name in queues:
            channel.queue_delete(name)


def test_every_principal_logs_in_with_its_own_password(uri, test_settings):
    for principal in amqp_principals():
        assert attempt(uri(principal), lambda channel: None) is None, principal
    wrong = test_settings.with_overrides(EXCHANGE_RABBITMQ_PASSWORD_MARKETDATA="not-its-password")
    with pytest.raises(Exception, match="ACCESS_REFUSED|credentials|Login"):
        with Connection(wrong.amqp_uri(test_settings["EXCHANGE_RABBITMQ_VHOST"], "marketdata"),
                        connect_timeout=10) as conn:
            conn.connect()


def test_marketdata_cannot_publish_to_matchings_command_queue_orders_can(
        uri, test_settings, market, operator_cleanup):
    queue = command_queue_name(market)
    operator_cleanup.append(queue)
    # Orders' user declares the queue bound to the commands exchange, as its relay does.
    assert attempt(uri("orders"), lambda ch: command_queue(queue, COMMANDS_EXCHANGE)(ch).declare()) is None
    command = {"command": {"type": "cancel", "order_id": "x"}}
    for principal in ("marketdata", "wallets", "users", "registry", "gateway", "deposit_watcher"):
        # Neither through the commands exchange nor straight to the queue.
        refused = attempt(uri(principal), publish(COMMANDS_EXCHANGE, queue, command))
        assert refused and REFUSED in refused and COMMANDS_EXCHANGE in refused, (principal, refused)
        refused = attempt(uri(principal), publish("", queue, command))
        assert refused and REFUSED in refused and "amq.default" in refused, (principal, refused)
    # Nothing reached the queue; then orders' publish does.
    assert attempt(uri("orders"), publish(COMMANDS_EXCHANGE, queue, command, message_id="m1")) is None
    # Matching's user consumes it: orders' one, and only it.
    assert [m.properties["message_id"] for m in take(uri("matching"), queue)] == ["m1"]
    # Not even orders may route a command anywhere but a command queue.
    refused = attempt(uri("orders"), publish(COMMANDS_EXCHANGE, "wallets.settlement", command))
    assert refused and REFUSED in refused


def test_the_orders_relay_delivers_commands_under_orders_own_login(
        uri, test_settings, market, operator_cleanup):
    """The outbox relay's real code (declare the exchange, the queue and its
    binding, publish with confirms) works with only orders' permissions."""
    queue = command_queue_name(market)
    operator_cleanup.append(queue)
    stream = f"perm-{uuid.uuid4().hex[:8]}"
    pool = make_pool(test_settings, max_size=3)
    relay = Relay(pool, uri("orders"), stream)
    thread = eventlet.spawn(relay.run)
    try:
        with pool.connection() as conn:
            enqueue_command(conn, stream, queue, f"{stream}-1", {"command": {"n": 1}})
        for _ in range(300):  # bounded: until the relay has declared the queue, 30 s
            if relay.published:
                break
            eventlet.sleep(0.1)
        assert relay.published == 1
        assert [m.properties["message_id"] for m in take(uri("matching"), queue)] == [f"{stream}-1"]
    finally:
        relay.running = False
        thread.kill()
        with pool.connection() as conn:
            conn.execute("DELETE FROM outbox WHERE stream = %s", (stream,))
        pool.close()


def test_only_the_gateway_and_the_operator_may_call_user_verbs(uri):
    """RPC requests are routed by "<service>.<method>" on the RPC exchange:
    its topic permissions are a per-verb allow-list enforced by the broker."""
    request = {"args": [], "kwargs": {}}
    for principal in ("marketdata", "wallets", "matching", "registry", "deposit_watcher"):
        refused = attempt(uri(principal), publish(RPC_EXCHANGE, "orders.place_order", request))
        assert refused and REFUSED in refused and "orders.place_order" in refused, (principal, refused)
    refused = attempt(uri("marketdata"), publish(RPC_EXCHANGE, "wallets.balances", request))
    assert refused and REFUSED in refused
    # The gateway may; a harmless verb, its reply goes to a key nobody listens on.
    assert attempt(uri("gateway"), publish(RPC_EXCHANGE, "orders.health", request)) is None
    assert attempt(uri(), publish(RPC_EXCHANGE, "orders.health", request)) is None
    # A service's calls are its own: orders may call matching, not wallets' user verbs.
    assert attempt(uri("orders"), publish(RPC_EXCHANGE, "matching.health", request)) is None
    refused = attempt(uri("orders"), publish(RPC_EXCHANGE, "wallets.request_withdrawal", request))
    assert refused and REFUSED in refused


def test_credit_deposit_is_for_the_chain_watcher_not_the_gateway(uri):
    request = {"args": [], "kwargs": {}}  # refused by wallets anyway: no arguments
    refused = attempt(uri("gateway"), publish(RPC_EXCHANGE, "wallets.credit_deposit", request))
    assert refused and REFUSED in refused and "wallets.credit_deposit" in refused
    assert attempt(uri("deposit_watcher"), publish(RPC_EXCHANGE, "wallets.credit_deposit", request)) is None
    refused = attempt(uri("deposit_watcher"), publish(RPC_EXCHANGE, "orders.place_order", request))
    assert refused and REFUSED in refused


def test_no_principal_can_take_another_services_requests(uri):
    def bind_own_queue_to(key):
        def action(channel):
            name = f"marketdata.perm-{uuid.uuid4().hex[:8]}"
            channel.queue_declare(name, exclusive=True, auto_delete=True)
            channel.queue_bind(name, RPC_EXCHANGE, key)
        return action
    # Its own queue, but bound by orders' request key: refused.
    refused = attempt(uri("marketdata"), bind_own_queue_to("orders.*"))
    assert refused and REFUSED in refused and "orders.*" in refused
    assert attempt(uri("marketdata"), bind_own_queue_to("marketdata.*")) is None
    # Nor consume, purge or delete orders' request queue.
    for action in (lambda ch: ch.basic_consume("rpc-orders", callback=lambda m: None),
                   lambda ch: ch.queue_purge("rpc-orders"),
                   lambda ch: ch.queue_delete("rpc-orders")):
        refused = attempt(uri("marketdata"), action)
        assert refused and REFUSED in refused and "rpc-orders" in refused


def test_a_message_cannot_claim_another_principals_identity(uri):
    """RabbitMQ validates the user_id property against the login."""
    request = {"args": [], "kwargs": {}}
    assert attempt(uri("deposit_watcher"), publish(RPC_EXCHANGE, "wallets.health", request,
                                                   user_id="deposit_watcher")) is None
    refused = attempt(uri("deposit_watcher"), publish(RPC_EXCHANGE, "wallets.health", request,
                                                      user_id="gateway"))
    assert refused and "PRECONDITION_FAILED" in refused


def test_each_service_starts_and_answers_under_its_own_login(test_settings, nameko_config, caplog):
    """Every service declares, binds and consumes what it needs (RPC queue,
    reply queue, event and work queues, catalogue follower, outbox relay)
    with only its own user's permissions: no refusal logged, health answers."""
    import importlib

    from nameko.containers import ServiceContainer
    from nameko.standalone.rpc import ClusterRpcProxy

    from services.common.config import service_names
    vhost = test_settings["EXCHANGE_RABBITMQ_VHOST"]
    containers = []
    try:
        for name in service_names():
            module = importlib.import_module(f"services.{name}.service")
            service_cls = next(v for v in vars(module).values()
                               if isinstance(v, type) and getattr(v, "name", None) == name
                               and v.__module__ == module.__name__)
            config = {**nameko_config, "AMQP_URI": test_settings.amqp_uri(vhost, name)}
            container = ServiceContainer(service_cls, config)
            containers.append(container)
            with eventlet.Timeout(60, AssertionError(f"{name} did not start under its login")):
                container.start()
        with ClusterRpcProxy(test_settings.nameko_config(vhost), timeout=30) as rpc:
            for name in service_names():
                assert getattr(rpc, name).health() is not None, name
        eventlet.sleep(2)  # the consumers and relays connect in their own threads
    finally:
        for container in containers:
            container.kill()
    refusals = [r.getMessage() for r in caplog.records if "ACCESS_REFUSED" in r.getMessage()
                or (r.exc_info and "ACCESS_REFUSED" in str(r.exc_info[1]))]
    assert refusals == []
