"""An engine far behind the journal catches up in bounded reads before it
applies a batch (providers.CATCH_UP reads at most CATCH_UP_ROWS entries at a
time, so that its plan stays an index range scan whatever the statistics).

Host A journals batches while host B, rebuilt before them, sits idle; B's
next batch must apply every entry A wrote, in several reads, skip the
commands A journaled already, and journal only its new one -- on the real
database, with the bound set to 2.
"""
import uuid

import psycopg

from services.common import catalogue
from services.matching import providers
from services.matching.engine import MatchingEngine
from services.matching.models import MarketConfig, PlaceOrder, command_from_dict, command_to_dict
from services.matching.providers import MarketHost
from tests.integration.registry_kit import throwaway_market


def commands(*orders):
    return [(f"place:{o.order_id}", {"command": command_to_dict(o)}) for o in orders]


def test_an_engine_behind_by_more_than_one_read_catches_up_before_its_batch(
        pool, test_settings, nameko_config, monkeypatch):
    monkeypatch.setattr(providers, "CATCH_UP_ROWS", 2)
    reads = []
    real_execute = psycopg.Connection.execute

    def counting_execute(self, query, *args, **kwargs):
        if query is providers.CATCH_UP:
            reads.append(args[0][1])   # the seq the read starts after
        return real_execute(self, query, *args, **kwargs)
    monkeypatch.setattr(psycopg.Connection, "execute", counting_execute)

    exchange = f"catch_up_test_{uuid.uuid4().hex[:8]}.events"   # its outbox rows, deleted after
    with throwaway_market(test_settings, lot="0.001") as symbol:
        with psycopg.connect(test_settings.postgres_dsn()) as conn:
            config = MarketConfig.from_dict(catalogue.load(conn).market(symbol).engine_config())
        first = MarketHost(config, pool, nameko_config["AMQP_URI"], events_exchange=exchange)
        second = MarketHost(config, pool, nameko_config["AMQP_URI"], events_exchange=exchange)
        first.rebuild()
        second.rebuild()
        start = second.engine.seq
        written = [PlaceOrder(n, "maker", "sell", price=10_000 + n, quantity=1_000)
                   for n in range(1, 6)]
        for order in written:
            assert first.process(commands(order)) == 1

        reads.clear()
        # A redelivery of A's last command with a new one: B applies A's five
        # entries (reads of 2, 2, 1), skips the copy, journals the new one.
        batch = commands(written[-1], PlaceOrder(6, "taker", "buy", price=10_005, quantity=500))
        assert second.process(batch) == 1
        assert reads == [start, start + 2, start + 4]

        with psycopg.connect(test_settings.postgres_dsn()) as conn:
            journal = conn.execute("SELECT seq, command_id, command FROM matching_journal "
                                   "WHERE market = %s ORDER BY seq", (symbol,)).fetchall()
            conn.execute("DELETE FROM outbox WHERE exchange = %s", (exchange,))
        assert [command_id for _, command_id, _ in journal] == [
            f"place:{n}" for n in range(1, 7)]
        assert [seq for seq, _, _ in journal] == list(range(start + 1, start + 7))
        replayed = MatchingEngine(config)
        for _, _, command in journal:
            replayed.apply(command_from_dict(command))
        assert second.engine.snapshot() == replayed.snapshot()
