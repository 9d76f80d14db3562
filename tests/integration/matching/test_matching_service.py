"""The matching service on real RabbitMQ and PostgreSQL: commands through the
outbox and the market's command queue, events out through the outbox."""
import time
import uuid

import eventlet
import pytest
from kombu import Connection, Producer
from nameko.events import event_handler
from nameko.standalone.rpc import ServiceRpcProxy

from services.common.events import PUSH_AUDIENCE, unpack
from services.common.outbox import command_queue, enqueue_command
from services.common.postgres import Database, make_pool
from services.matching.models import CancelOrder, PlaceOrder, command_to_dict
from services.matching.providers import command_queue_name
from services.matching.wire import command_batch_message
from services.common.errors import code_of
from services.matching.errors import InvalidMarket
from services.matching.service import MatchingService
from tests.integration.amqp_kit import confirmed_connection, publish_confirmed
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)
from services.registry.service import RegistryService
from tests.integration.registry_kit import change_market, throwaway_market


# The engines' events go to an exchange of these tests: their orders skip
# orders and wallets (made-up users, no holds), so the shared test vhost's
# settlement must not see their trades.
EVENTS_SOURCE = "matching_tests"


class TradeListener:
    """The engine's per-batch push messages (every trade and order update)."""
    name = "trade_listener"
    trades = []
    orders = []
    batches = []

    @event_handler(EVENTS_SOURCE, PUSH_AUDIENCE)
    def on_batch(self, payload):
        TradeListener.batches.append(payload)
        for name, _event_id, event in unpack(PUSH_AUDIENCE, None, payload):
            if name == "trade_executed":
                TradeListener.trades.append(event)
            elif name == "order_updated":
                TradeListener.orders.append(event)


@pytest.fixture(scope="module")
def pool(test_settings):
    pool = make_pool(test_settings, max_size=6)
    yield pool
    pool.close()


@pytest.fixture
def nameko_config(nameko_config):
    # Only these tests' markets (TM...), which every other test's engines
    # leave alone (tests/conftest.py); events to an exchange of our own.
    return {**nameko_config, "MATCHING_EVENTS_EXCHANGE": f"{EVENTS_SOURCE}.events",
            "MATCHING_MARKETS": "TM.*"}


@pytest.fixture
def market(test_settings, nameko_config):
    """A market of the test's own, listed in the registry (and delisted after)."""
    symbol = f"TM{uuid.uuid4().hex[:6].upper()}-USDT"
    with throwaway_market(test_settings, symbol, lot="0.001") as symbol:
        _purge_listener_queues(nameko_config)
        yield symbol


def _purge_listener_queues(nameko_config):
    # The listener's queues are durable and shared by every test publishing
    # matching events to this vhost: start from empty ones.
    with Connection(nameko_config["AMQP_URI"]) as conn:
        for name in (f"evt-{EVENTS_SOURCE}-{PUSH_AUDIENCE}--trade_listener.on_batch",):
            try:
                with conn.channel() as channel:
                    channel.queue_purge(name)
            except Exception:  # not declared yet: nothing to purge
                pass
    TradeListener.trades.clear()
    TradeListener.orders.clear()
    TradeListener.batches.clear()


def send(pool, market, command_id, command, stream="test-orders"):
    with Database(pool).transaction() as conn:
        enqueue_command(conn, stream, command_queue_name(market), command_id,
                        {"command": command_to_dict(command)})


def wait_until(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        eventlet.sleep(0.05)


def journal(pool, market):
    with pool.connection() as conn:
        return conn.execute("SELECT seq, command_id FROM matching_journal WHERE market = %s "
                            "ORDER BY seq", (market,)).fetchall()


@pytest.fixture
def relay(pool, nameko_config):
    from services.common.outbox import Relay
    relay = Relay(pool, nameko_config["AMQP_URI"], "test-orders")
    thread = eventlet.spawn(relay.run)
    yield relay
    relay.running = False
    thread.kill()


def test_orders_match_and_events_leave_through_the_outbox(
        market, pool, relay, container_factory, nameko_config):
    container_factory(TradeListener, nameko_config).start()
    container_factory(MatchingService, nameko_config).start()
    send(pool, market, "place:1", PlaceOrder(1, "maker", "sell", price=10_000, quantity=3_000))
    send(pool, market, "place:2", PlaceOrder(2, "maker", "sell", price=10_001, quantity=1_000))
    send(pool, market, "place:3", PlaceOrder(3, "taker", "buy", price=10_001, quantity=3_500))
    # The listener's queue is durable: it may also hold other markets' events.
    mine = lambda events: [e for e in events if e["market"] == market]  # noqa: E731
    wait_until(lambda: len(mine(TradeListener.trades)) == 2)
    first, second = sorted(mine(TradeListener.trades), key=lambda t: t["trade_id"])
    assert (first["price"], first["quantity"], first["maker_order_id"]) == ("100.00", "3.000", 1)
    assert (second["price"], second["quantity"], second["maker_order_id"]) == ("100.01", "0.500", 2)
    assert first["quote_quantity"] == "300.00000"
    assert first["trade_id"] == f"{market}-1" and first["taker_side"] == "buy"
    assert [seq for seq, _ in journal(pool, market)] == [1, 2, 3]
    wait_until(lambda: any(o["event"] == "order_done" and o["order_id"] == 3
                           for o in mine(TradeListener.orders)))
    done = next(o for o in mine(TradeListener.orders)
                if o["event"] == "order_done" and o["order_id"] == 3)
    assert done["status"] == "filled" and done["filled_quantity"] == "3.500"
    # One push message per engine batch, their seqs chained with no gap or
    # overlap, each with one coalesced book change of the same range.
    batches = sorted((b for b in TradeListener.batches if b["market"] == market),
                     key=lambda b: b["first_seq"])
    assert [b["first_seq"] for b in batches] == [1] + [b["last_seq"] + 1 for b in batches[:-1]]
    assert batches[-1]["last_seq"] == 3
    for b in batches:
        books = [e for name, _, e in unpack(PUSH_AUDIENCE, None, b) if name == "book_changed"]
        assert [(e["first_seq"], e["seq"]) for e in books] == [(b["first_seq"], b["last_seq"])]


def test_the_engine_follows_a_limit_change_of_the_registry_and_a_restart_replays_it(
        test_settings, pool, relay, container_factory, nameko_config):
    """An operator lowers the market's minimum quantity in the registry: the
    engine takes orders it refused before, from a journaled ``configure``, so
    an engine rebuilt from the journal (a restart, a standby) agrees. Before
    that command existed the engine kept the limits it started with: orders
    accepted what the engine then refused."""
    symbol = f"TM{uuid.uuid4().hex[:6].upper()}-USDT"
    with throwaway_market(test_settings, symbol, lot="0.001", min_quantity="1") as market:
        _purge_listener_queues(nameko_config)
        container_factory(TradeListener, nameko_config).start()
        container_factory(RegistryService, nameko_config).start()
        first = container_factory(MatchingService, nameko_config)
        first.start()

        def bids():
            with ServiceRpcProxy("matching", nameko_config, timeout=30) as matching:
                return matching.get_depth(market, 10)["buy"]

        def rejection(order_id):
            return next((o["reason"] for o in TradeListener.orders
                         if o["market"] == market and o["order_id"] == order_id
                         and o["event"] == "command_rejected"), None)

        send(pool, market, "place:1", PlaceOrder(1, "u", "buy", price=9_000, quantity=500))
        wait_until(lambda: rejection(1), timeout=30)
        assert rejection(1) == "QTY_BELOW_MIN"

        change_market(test_settings, market, {"min_quantity": "0.1"})
        wait_until(lambda: any(":configure:" in command_id for _, command_id in journal(pool, market)),
                   timeout=30)
        send(pool, market, "place:2", PlaceOrder(2, "u", "buy", price=9_000, quantity=500))
        wait_until(lambda: bids() == [["90.00", "0.500"]], timeout=30)

        first.stop()  # the next engine rebuilds from the seq-0 snapshot and the journal
        container_factory(MatchingService, nameko_config).start()
        send(pool, market, "place:3", PlaceOrder(3, "u", "buy", price=9_000, quantity=200))
        wait_until(lambda: bids() == [["90.00", "0.700"]], timeout=60)
        assert rejection(3) is None


def test_a_redelivered_command_is_applied_once(market, pool, nameko_config, container_factory):
    container_factory(MatchingService, nameko_config).start()
    body = {"command": command_to_dict(PlaceOrder(7, "u", "buy", price=9_000, quantity=1_000))}
    with confirmed_connection(nameko_config["AMQP_URI"]) as conn:
        queue = command_queue(command_queue_name(market))(conn.default_channel)
        queue.declare()
        producer = Producer(conn.default_channel)
        for _ in range(3):
            publish_confirmed(producer, body, routing_key=queue.name, serializer="json",
                              message_id="place:7")
    wait_until(lambda: len(journal(pool, market)) == 1)
    eventlet.sleep(1.0)
    assert journal(pool, market) == [(1, "place:7")]


def test_a_command_batch_message_is_one_engine_batch_and_a_redelivery_adds_nothing(
        market, pool, nameko_config, container_factory):
    """One message carrying three commands (wire.command_batch_message), sent
    twice, next to an older one-command message repeating one of them: each
    command is journaled once, in order, in one engine batch (one ``at_ms``)."""
    container_factory(MatchingService, nameko_config).start()
    commands = [(f"place:{n}", command_to_dict(PlaceOrder(n, "u", "buy", price=9_000 + n,
                                                          quantity=1_000)))
                for n in (11, 12, 13)]
    message_id, payload = command_batch_message(market, commands)
    with confirmed_connection(nameko_config["AMQP_URI"]) as conn:
        queue = command_queue(command_queue_name(market))(conn.default_channel)
        queue.declare()
        producer = Producer(conn.default_channel)
        for _ in range(2):
            publish_confirmed(producer, payload, routing_key=queue.name, serializer="json",
                              message_id=message_id)
        publish_confirmed(producer, {"command": commands[1][1]}, routing_key=queue.name,
                          serializer="json", message_id="place:12")
    wait_until(lambda: len(journal(pool, market)) == 3)
    eventlet.sleep(1.0)
    assert journal(pool, market) == [(1, "place:11"), (2, "place:12"), (3, "place:13")]
    with pool.connection() as conn:
        stamps = conn.execute("SELECT count(DISTINCT at_ms) FROM matching_journal "
                              "WHERE market = %s", (market,)).fetchone()[0]
    assert stamps == 1


def test_the_standby_takes_over_with_the_same_book(
        market, pool, relay, nameko_config, container_factory):
    first = container_factory(MatchingService, nameko_config)
    second = container_factory(MatchingService, nameko_config)
    first.start()
    second.start()
    for n in range(1, 21):
        send(pool, market, f"place:{n}", PlaceOrder(n, f"u{n % 3}", "buy" if n % 2 else "sell",
                                                    price=10_000 + (n % 5) * (1 if n % 2 else -1) * 3,
                                                    quantity=1_000 + n))
    wait_until(lambda: len(journal(pool, market)) == 20)
    hosts = [c for c in (first, second)
             if next(iter(d for d in c.dependencies if d.attr_name == "engines")).hosts[market].active]
    assert len(hosts) == 1
    active = hosts[0]
    standby = second if active is first else first
    active.kill()
    send(pool, market, "cancel:5", CancelOrder(5))
    send(pool, market, "place:21", PlaceOrder(21, "u9", "sell", price=9_990, quantity=500))
    wait_until(lambda: len(journal(pool, market)) == 22)
    engines = next(iter(d for d in standby.dependencies if d.attr_name == "engines"))
    assert engines.hosts[market].active
    # The standby's book equals a fresh replay of the whole journal.
    from services.matching.providers import MarketHost
    replayed = MarketHost(engines.hosts[market].config, pool, nameko_config["AMQP_URI"])
    replayed.rebuild()
    assert replayed.engine.snapshot() == engines.hosts[market].engine.snapshot()
    assert replayed.engine.seq == 22


@pytest.mark.parametrize("call", [
    lambda m, market: m.set_reference_price(market, "1e10000000"),   # unnamed ValueError before
    lambda m, market: m.set_reference_price(market, " 100 "),         # accepted before
    lambda m, market: m.set_reference_price(market, "١٠٠"),           # accepted before
    lambda m, market: m.set_reference_price(market, "9" * 20),         # beyond the engine's ticks
    lambda m, market: m.get_depth(market, "١"),                        # read as 1 before
    lambda m, market: m.get_depth(market, "1e10000000"),
    lambda m, market: m.get_engine_order(market, "1 "),
])
def test_admin_and_query_arguments_go_through_the_strict_grammar(
        market, nameko_config, container_factory, call, principal_tokens):
    container_factory(MatchingService, nameko_config).start()
    with ServiceRpcProxy("matching", nameko_config, timeout=20,
                         context_data={"access_token": principal_tokens.person("admin")}) \
            as matching:
        with pytest.raises(InvalidMarket):
            call(matching, market)
        assert matching.health()["status"] == "ok"


ADMIN_VERBS = {
    "set_reference_price": lambda m, market: m.set_reference_price(market, "100"),
}


@pytest.mark.parametrize("verb", sorted(ADMIN_VERBS))
def test_an_admin_verb_refuses_everyone_but_an_admin(
        market, nameko_config, container_factory, principal_tokens, pool, verb):
    """No credentials, a trader, the backend's service account: refused with
    their codes and no command journaled; an admin: accepted (issue 11:
    before, any holder of the AMQP login could halt a market)."""
    container_factory(MatchingService, nameko_config).start()

    def commands():
        with pool.connection() as conn:
            return conn.execute("SELECT count(*) FROM outbox WHERE message_id LIKE %s",
                                (f"%:{market}:%",)).fetchone()[0]

    before = commands()
    for token, code in ((None, "UNAUTHENTICATED"),
                        (principal_tokens.person("trader"), "ADMIN_REQUIRED"),
                        (principal_tokens.service_account(), "PERSON_REQUIRED")):
        with ServiceRpcProxy("matching", nameko_config, timeout=20,
                             context_data={"access_token": token} if token else {}) as matching:
            with pytest.raises(Exception) as raised:
                ADMIN_VERBS[verb](matching, market)
            assert code_of(raised.value) == code, raised.value
    assert commands() == before
    with ServiceRpcProxy("matching", nameko_config, timeout=20,
                         context_data={"access_token": principal_tokens.person("admin")}) \
            as matching:
        ADMIN_VERBS[verb](matching, market)
