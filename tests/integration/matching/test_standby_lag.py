"""How far a matching process's engine is behind the journal's head, in
entries, exported per market (``exchange_engine_journal_lag_entries``,
alert StandbyEngineLag): a failover to a standby replays that much first.

A matching service container of the test's own is the standby of a market
of the test's own; the active engine is a MarketHost driven directly (as
the other process would journal). Its lag is read from its /metrics, as
Prometheus reads it. To hold it behind, the journal gets an entry it cannot
apply (a command type it does not know: what an engine of an older release
meets when a newer one journaled a new command) and more after it.
"""
import re
import time
import uuid

import eventlet
import psycopg
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from psycopg.types.json import Jsonb

from services.common import catalogue
from services.common.metrics import ServiceMetrics
from services.matching.models import MarketConfig, PlaceOrder, command_to_dict
from services.matching.providers import MarketHost
from services.matching.service import MatchingService
from tests.integration.registry_kit import throwaway_market

EVENTS = f"standby_lag_test_{uuid.uuid4().hex[:8]}.events"   # its outbox rows, deleted after


@pytest.fixture
def market(test_settings):
    with throwaway_market(test_settings, f"TM{uuid.uuid4().hex[:6].upper()}-USDT",
                          lot="0.001") as symbol:
        yield symbol
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        conn.execute("DELETE FROM outbox WHERE exchange = %s", (EVENTS,))


@pytest.fixture
def nameko_config(nameko_config, market):
    # This test's market only (not the TM markets of tests running beside
    # it); events to an exchange of its own; /metrics on a free port.
    return {**nameko_config, "MATCHING_EVENTS_EXCHANGE": EVENTS,
            "MATCHING_MARKETS": re.escape(market), "METRICS_PORT": 0}


def market_config(test_settings, symbol) -> MarketConfig:
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        return MarketConfig.from_dict(catalogue.load(conn).market(symbol).engine_config())


def commands(*orders):
    return [(f"place:{o.order_id}", {"command": command_to_dict(o)}) for o in orders]


def engine_figures(url: str, market: str) -> dict:
    """``{series name: value}`` of ``market``'s engine series in one scrape."""
    text = requests.get(url, timeout=10).text
    return {s.name: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.labels.get("market") == market}


def wait_for(read, predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if predicate(value):
            return value
        assert time.monotonic() < deadline, f"timed out; last read {value}"
        eventlet.sleep(0.1)


def test_a_standby_that_cannot_replay_shows_how_far_it_lags(
        market, pool, test_settings, nameko_config, container_factory):
    standby = container_factory(MatchingService, nameko_config)
    standby.start()
    metrics = next(d for d in standby.dependencies if isinstance(d, ServiceMetrics))
    wait_for(lambda: metrics.port, lambda port: port is not None)
    url = f"http://127.0.0.1:{metrics.port}/metrics"
    figures = lambda: engine_figures(url, market)  # noqa: E731

    active = MarketHost(market_config(test_settings, market), pool, nameko_config["AMQP_URI"],
                        events_exchange=EVENTS)
    active.rebuild()
    for n in range(1, 6):
        assert active.process(commands(PlaceOrder(n, "maker", "sell", price=10_000 + n,
                                                  quantity=1_000))) == 1
    # Current: its replay polls found the five entries and then nothing more.
    wait_for(figures, lambda f: f.get("exchange_engine_seq") == 5
             and f.get("exchange_engine_journal_lag_entries") == 0)

    # The next entry is one it cannot apply, then 39 more: every poll reads
    # them and fails at the first.
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO matching_journal (market, seq, command_id, command, at_ms) "
            "SELECT %s, s, 'lag-test:' || s, CASE WHEN s = 6 THEN %s ELSE "
            "jsonb_set(%s, '{order_id}', to_jsonb(s)) END, 0 FROM generate_series(6, 45) AS s",
            (market, Jsonb({"type": "a_command_of_a_later_release"}),
             Jsonb(command_to_dict(PlaceOrder(0, "maker", "sell", price=10_100, quantity=1_000)))))
    lagging = wait_for(figures, lambda f: f.get("exchange_engine_journal_lag_entries") == 40)
    assert lagging["exchange_engine_seq"] == 5
    eventlet.sleep(1.5)   # several polls (every 0.25 s, and a reconnect after each failure)
    assert figures()["exchange_engine_journal_lag_entries"] == 40

    # The entry removed (what an upgrade of the standby amounts to): it catches up.
    with pool.connection() as conn:
        conn.execute("DELETE FROM matching_journal WHERE market = %s AND seq > 5", (market,))
    active.rebuild()
    assert active.process(commands(PlaceOrder(6, "taker", "buy", price=9_000,
                                              quantity=1_000))) == 1
    wait_for(figures, lambda f: f.get("exchange_engine_seq") == 6
             and f.get("exchange_engine_journal_lag_entries") == 0)


def test_an_engine_batch_counts_the_entries_it_had_to_catch_up_first(
        market, pool, test_settings, nameko_config):
    """The same lag from the active engine's catch-up read: a standby that
    takes over reports what it was behind at its first batch, then 0."""
    config = market_config(test_settings, market)
    first = MarketHost(config, pool, nameko_config["AMQP_URI"], events_exchange=EVENTS)
    second = MarketHost(config, pool, nameko_config["AMQP_URI"], events_exchange=EVENTS)
    first.rebuild()
    second.rebuild()
    assert (first.journal_lag, second.journal_lag) == (0, 0)
    for n in range(1, 4):
        first.process(commands(PlaceOrder(n, "maker", "sell", price=10_000 + n, quantity=1_000)))
    second.process(commands(PlaceOrder(4, "taker", "buy", price=9_000, quantity=1_000)))
    assert second.journal_lag == 3
    second.process(commands(PlaceOrder(5, "taker", "buy", price=9_000, quantity=1_000)))
    assert second.journal_lag == 0
