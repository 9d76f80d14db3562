"""The journal's keys fence a second engine writing between another's read
and write (the engine batch is one read, then one write statement, with no
transaction around them: services/matching/providers.py).

Two hosts of one market on the real database, A and B. B reads (its
catch-up), and while it applies its batch -- in its clock, the one call
between its read and its write -- A journals a batch. B's write must then
fail on the journal's key (nothing of it written), and B, rebuilt, must
apply its redelivered batch after A's: each command once, seqs gapless,
both hosts' books equal to a replay of the journal.
"""
import uuid

import psycopg
import pytest

from services.common import catalogue
from services.matching.engine import MatchingEngine
from services.matching.models import MarketConfig, PlaceOrder, command_from_dict, command_to_dict
from services.matching.providers import MarketHost, now_ms
from tests.integration.registry_kit import throwaway_market


def commands(*orders):
    return [(f"place:{o.order_id}", {"command": command_to_dict(o)}) for o in orders]


def test_a_second_writer_between_read_and_write_is_fenced_and_nothing_is_doubled(
        pool, test_settings, nameko_config):
    exchange = f"fence_test_{uuid.uuid4().hex[:8]}.events"   # its outbox rows, deleted after
    with throwaway_market(test_settings, lot="0.001") as symbol:
        with psycopg.connect(test_settings.postgres_dsn()) as conn:
            config = MarketConfig.from_dict(catalogue.load(conn).market(symbol).engine_config())
        first = MarketHost(config, pool, nameko_config["AMQP_URI"], events_exchange=exchange)
        interleaved = []

        def clock_of_b():
            # Between B's read and its write: A journals its own batch once.
            if not interleaved:
                interleaved.append(first.process(commands(
                    PlaceOrder(1, "maker", "sell", price=10_000, quantity=3_000))))
            return now_ms()
        second = MarketHost(config, pool, nameko_config["AMQP_URI"], clock=clock_of_b,
                            events_exchange=exchange)
        first.rebuild()
        second.rebuild()
        b_batch = commands(PlaceOrder(2, "taker", "buy", price=10_000, quantity=1_000),
                           PlaceOrder(3, "maker", "sell", price=10_002, quantity=500))
        with pytest.raises(psycopg.errors.UniqueViolation):
            second.process(b_batch)
        assert interleaved == [1]
        assert second.engine is None   # dropped: it was ahead of the database

        assert second.process(b_batch) == 2   # redelivered: applied after A's entry
        assert second.process(b_batch) == 0   # again: skipped, journaled already
        with psycopg.connect(test_settings.postgres_dsn()) as conn:
            journal = conn.execute("SELECT seq, command_id, command FROM matching_journal "
                                   "WHERE market = %s ORDER BY seq", (symbol,)).fetchall()
            conn.execute("DELETE FROM outbox WHERE exchange = %s", (exchange,))
        assert [command_id for _, command_id, _ in journal] == ["place:1", "place:2", "place:3"]
        assert [seq for seq, _, _ in journal] == list(range(journal[0][0], journal[0][0] + 3))

        replayed = MatchingEngine(config)
        for _, _, command in journal:
            replayed.apply(command_from_dict(command))
        first.keep_warm()
        assert first.engine.snapshot() == second.engine.snapshot() == replayed.snapshot()
