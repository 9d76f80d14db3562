"""A rebuilt engine replays its journal from the state the journal was
written against, not from the registry's market as it is now.

A host's configuration comes from the catalogue when the process discovers
the market, and a halted market's configuration says ``halted``. An engine
that trades, is halted through the registry, and whose standby process
restarts meanwhile: the standby's new host is created halted. Rebuilt from
that configuration, it replayed every earlier order as rejected and kept an
empty book while orders' book was not (found in review). The first rebuild
anywhere now stores the starting state as the snapshot at seq 0; every later
rebuild starts from it. On the real database, hosts driven directly."""
import dataclasses
import uuid

import psycopg

from services.common import catalogue
from services.matching.models import Halt, MarketConfig, PlaceOrder, command_to_dict
from services.matching.providers import MarketHost
from tests.integration.registry_kit import throwaway_market


def commands(*pairs):
    return [(command_id, {"command": command_to_dict(command)}) for command_id, command in pairs]


def test_a_host_created_while_the_market_is_halted_rebuilds_the_book_the_journal_made(
        pool, test_settings, nameko_config):
    exchange = f"rebuild_test_{uuid.uuid4().hex[:8]}.events"   # its outbox rows, deleted after
    amqp = nameko_config["AMQP_URI"]
    with throwaway_market(test_settings, lot="0.001") as symbol:
        with psycopg.connect(test_settings.postgres_dsn()) as conn:
            trading = MarketConfig.from_dict(catalogue.load(conn).market(symbol).engine_config())
        assert not trading.halted
        active = MarketHost(trading, pool, amqp, events_exchange=exchange)
        active.rebuild()
        active.process(commands(
            ("place:1", PlaceOrder(1, "maker", "sell", price=10_000, quantity=3_000)),
            ("place:2", PlaceOrder(2, "taker", "buy", price=10_000, quantity=1_000)),
            ("place:3", PlaceOrder(3, "maker", "sell", price=10_002, quantity=500))))
        # The registry halts the market: the engine journals the halt.
        active.process(commands((f"registry:1:halt:{symbol}", Halt())))
        assert active.engine.halted and active.engine.book.open_orders("maker")

        # A standby (re)started now is created from the catalogue: halted.
        standby = MarketHost(dataclasses.replace(trading, halted=True), pool, amqp,
                             events_exchange=exchange)
        standby.rebuild()
        with psycopg.connect(test_settings.postgres_dsn()) as conn:
            conn.execute("DELETE FROM outbox WHERE exchange = %s", (exchange,))
        assert standby.engine.snapshot() == active.engine.snapshot()
        assert [o["order_id"] for o in standby.engine.book.open_orders("maker")] == [1, 3]
