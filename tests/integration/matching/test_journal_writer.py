"""The process's markets journal through one group commit
(providers.JournalWriter): engine batches of several markets that are ready
while a write is in flight go in the next write, ONE statement; a write
that fails with several markets in it is made again market by market, so a
fenced (stale) engine fails only its own batch. On the real database.
"""
import uuid

import eventlet
import psycopg
import pytest

from services.common import catalogue
from services.matching.engine import MatchingEngine
from services.matching.models import MarketConfig, PlaceOrder, command_from_dict, command_to_dict
from services.matching.providers import JournalWrite, JournalWriter, MarketHost
from tests.integration.registry_kit import throwaway_market


def commands(*orders):
    return [(f"place:{o.order_id}", {"command": command_to_dict(o)}) for o in orders]


def config_of(settings, symbol):
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return MarketConfig.from_dict(catalogue.load(conn).market(symbol).engine_config())


def journal_of(settings, symbol):
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute("SELECT seq, command_id, command, at_ms FROM matching_journal "
                            "WHERE market = %s ORDER BY seq", (symbol,)).fetchall()


def drop_events(settings, exchange):
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute("DELETE FROM outbox WHERE exchange = %s RETURNING routing_key",
                            (exchange,)).fetchall()


def wait_until_blocked(settings, blocker_pid, timeout_s=10.0):
    """Until a session waits for a lock the blocker's transaction holds."""
    with psycopg.connect(settings.postgres_dsn(), autocommit=True) as conn:
        for _ in range(int(timeout_s / 0.02)):
            if conn.execute("SELECT count(*) FROM pg_stat_activity "
                            "WHERE %s = ANY(pg_blocking_pids(pid))", (blocker_pid,)).fetchone()[0]:
                return
            eventlet.sleep(0.02)
    raise AssertionError("no write waited for the blocker")


@pytest.fixture
def writer(pool):
    writer = JournalWriter(pool)
    yield writer
    writer.close()


def test_engine_batches_of_two_markets_ready_together_are_journaled_in_one_write(
        pool, writer, test_settings, nameko_config):
    exchange = f"writer_test_{uuid.uuid4().hex[:8]}.events"   # its outbox rows, deleted after
    with throwaway_market(test_settings, lot="0.001") as first, \
            throwaway_market(test_settings, lot="0.001") as second, \
            throwaway_market(test_settings, lot="0.001") as third:
        hosts = {symbol: MarketHost(config_of(test_settings, symbol), pool,
                                    nameko_config["AMQP_URI"], events_exchange=exchange,
                                    writer=writer)
                 for symbol in (first, second, third)}
        for host in hosts.values():
            host.rebuild()
        # The first market's write waits on a journal key another
        # transaction has written but not committed: while it is in flight,
        # the other two markets' batches queue for the next write.
        with psycopg.connect(test_settings.postgres_dsn()) as blocker:
            blocker.execute("INSERT INTO matching_journal (market, seq, command_id, command, at_ms) "
                            "VALUES (%s, 1, 'blocker', '{}', 0)", (first,))
            held = eventlet.spawn(hosts[first].process,
                                  commands(PlaceOrder(1, "maker", "sell", price=10_000,
                                                      quantity=1_000)))
            wait_until_blocked(test_settings, blocker.info.backend_pid)
            together = [eventlet.spawn(hosts[symbol].process, commands(
                PlaceOrder(order_id, "maker", "sell", price=10_000, quantity=1_000),
                PlaceOrder(order_id + 1, "taker", "buy", price=10_000, quantity=400)))
                for symbol, order_id in ((second, 10), (third, 20))]
            eventlet.sleep(0.2)
            blocker.rollback()
        assert held.wait() == 1
        assert [thread.wait() for thread in together] == [2, 2]
        assert writer.batcher.batch_sizes == {1: 1, 2: 1}

        for symbol, ids in ((first, ["place:1"]), (second, ["place:10", "place:11"]),
                            (third, ["place:20", "place:21"])):
            journal = journal_of(test_settings, symbol)
            assert [command_id for _, command_id, _, _ in journal] == ids
            assert [seq for seq, _, _, _ in journal] == list(range(1, len(ids) + 1))
            replayed = MatchingEngine(hosts[symbol].config)
            for _, _, command, _ in journal:
                replayed.apply(command_from_dict(command))
            assert hosts[symbol].engine.snapshot() == replayed.snapshot()
        # Each market's events, one message per audience, as when alone:
        # the two traded (trades, orders, book, push), the first did not.
        keys = sorted(key for (key,) in drop_events(test_settings, exchange))
        assert keys.count("engine_batch.trades") == 2
        assert keys.count("engine_batch.push") == 3


def test_a_write_that_fails_with_several_markets_is_made_again_market_by_market(
        pool, writer, test_settings):
    exchange = f"writer_test_{uuid.uuid4().hex[:8]}.events"
    with throwaway_market(test_settings, lot="0.001") as fresh, \
            throwaway_market(test_settings, lot="0.001") as taken:
        with psycopg.connect(test_settings.postgres_dsn()) as conn:
            conn.execute("INSERT INTO matching_journal (market, seq, command_id, command, at_ms) "
                         "VALUES (%s, 1, 'another-engine', '{}', 0)", (taken,))
        command = command_to_dict(PlaceOrder(1, "maker", "sell", price=10_000, quantity=1_000))
        writes = [JournalWrite([[symbol, 1, "place:1", command, 5]],
                               [(exchange, "engine_batch.push", f"{symbol}:1-1:push", {"n": 1})])
                  for symbol in (fresh, taken)]
        outcomes = writer._run(writes)
        assert outcomes[0] is None
        assert isinstance(outcomes[1], psycopg.errors.UniqueViolation)
        assert [row[1] for row in journal_of(test_settings, fresh)] == ["place:1"]
        assert [row[1] for row in journal_of(test_settings, taken)] == ["another-engine"]
        assert len(drop_events(test_settings, exchange)) == 1   # the fresh market's only
        with pytest.raises(psycopg.errors.UniqueViolation):
            writer.write(writes[1])   # alone: raised in its caller
