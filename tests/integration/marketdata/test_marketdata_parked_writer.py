"""Parked trades are recorded by the active trade consumer only, the single
writer of the candles (docs/marketdata.md), whichever instance learns that
their market is listed.

Two instances of the service share one trade queue (single-active-consumer):
the first one started is the active consumer, the second a standby. Trades
of a market the catalogue does not list yet are parked (by the active one),
then the registry lists the market and the standby learns of it first. Its
own pipeline used to record the parked trades (a second writer of the
candles and the ticker; the active instance then found nothing left to
ingest). Now whichever instance sees the listing sends them to the trade
queue (services/marketdata/parking.py), and the active one ingests them as it
ingests live trades. Checked after the listing and live trades that follow
it: the candles of every interval and the ticker equal the pure aggregation
of all the trades (parked and live), and the standby's pipeline recorded
nothing.

The second test starts the standby while trades of a listed market are
parked (a listing pass that failed, or a trade parked by a consumer whose
catalogue was behind): the standby's start used to record them itself, on
every run; now the active instance ingests them.

Both fail on the code before (the standby's pipeline recorded the parked
trades: its ``ingested`` 5, and 4)."""
import json
import uuid

from kombu import Connection, Exchange, Queue
from md_it_helpers import T0, Backend, ManualClock, MarketDataUnderTest, Matching, isolated
from nameko.standalone.rpc import ServiceRpcProxy

from services.common import catalogue
from services.common.events import TRADES_AUDIENCE, unpack
from services.common.outbox import command_queue
from services.marketdata.candles import CHAIN, MINUTE, bucket_start, candles_from_trades
from services.marketdata.markets import MarketRegistry
from services.marketdata.parking import ParkedSender, ParkedTrades, parked_exchange
from services.marketdata.reads import CANDLE_COLUMNS
from services.marketdata.schemas import trade_from_event
from services.marketdata.ticker import compute_ticker
from tests.integration.amqp_kit import take
from tests.integration.marketdata.test_marketdata_handover import publish
from tests.integration.orders.conftest import wait_for
from tests.integration.registry_kit import delist, list_market, market_spec, new_symbol


def parked_rows(cql, market: str) -> int:
    return cql.execute("SELECT count(*) FROM parked_trades WHERE market = %s", (market,)).one()[0]


def assert_aggregation_of(rpc, market: str, payloads: list) -> None:
    """Served candles of every interval and the ticker equal the direct
    computation from ``payloads`` (candles_from_trades, compute_ticker)."""
    trades = [trade_from_event(p, MarketRegistry.from_catalogue(catalogue.current()))
              for p in payloads]
    oracle = candles_from_trades(trades)
    first, last = min(t.executed_at for t in trades), max(t.executed_at for t in trades)
    for interval in CHAIN:
        page = rpc.get_candles(market, interval, bucket_start(first, interval), last + 1)
        served = [dict(zip(page["columns"], row)) for row in page["candles"]]
        want = [dict(zip(CANDLE_COLUMNS, c.row())) for (_, i, _), c in sorted(oracle.items())
                if i == interval]
        assert served == want, interval
    ticker = rpc.get_ticker(market)
    for book_field in ("best_bid", "best_ask", "book_seq"):   # from depth, not trades
        ticker.pop(book_field, None)
    minutes = [c for (_, i, _), c in oracle.items() if i == "1m"]
    assert ticker == compute_ticker(market, minutes, None, ManualClock.at)


def start_standby(container_factory, md_config, nameko_config, names: list):
    name = f"marketdata_t{uuid.uuid4().hex[:8]}"
    names.append(name)
    standby = container_factory(isolated(MarketDataUnderTest, name), md_config)
    standby.start()
    return standby


def delete_rpc_queues(nameko_config, names: list) -> None:
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        for name in names:
            Queue(f"rpc-{name}")(amqp.default_channel).delete()


def test_parked_trades_of_a_market_listed_later_are_ingested_by_the_active_instance_only(
        service, market, md_config, container_factory, cql, nameko_config, test_settings):
    active, names = service, []
    ManualClock.at = T0 + 2 * MINUTE        # every trade below is in the ticker's window
    try:
        own = Matching(md_config, active, market)
        own.trades([own.trade(1, T0 + 500)])     # ingested: the first instance holds the queue
        standby = start_standby(container_factory, md_config, nameko_config, names)
        backends = {c: c.shared_extensions[Backend] for c in (active, standby)}

        unlisted = new_symbol()
        matching = Matching(md_config, active, unlisted)
        # Over two minutes, the second one shared with the live trades below.
        parked = [matching.trade(n, T0 + MINUTE * (n // 3) + n * 1000, f"{20 + n}.00")
                  for n in range(1, 6)]
        publish(md_config, parked)
        wait_for(lambda: parked_rows(cql, unlisted) == len(parked), 30, "the trades to be parked")

        list_market(test_settings, market_spec(unlisted))
        try:
            # The standby learns of the listing first (as when the registry's
            # event reaches it first, or its version check comes first): its
            # follower reloads now, and runs its listeners.
            backends[standby].catalogue.refresh()
            wait_for(lambda: all(b.catalogue.current.market(unlisted) is not None
                                 for b in backends.values()), 30,
                     "both instances to see the listing")
            wait_for(lambda: parked_rows(cql, unlisted) == 0, 30, "the parked rows to go")
            assert backends[standby].ingested[unlisted] == 0
            wait_for(lambda: backends[active].ingested[unlisted] >= len(parked), 30,
                     "the active instance to ingest the parked trades")
            live = [matching.trade(n, T0 + MINUTE + n * 1000, f"{30 + n}.00")
                    for n in range(6, 9)]
            matching.trades(live)

            assert backends[standby].ingested[unlisted] == 0
            assert backends[standby].pipeline.flushes == 0
            assert unlisted not in backends[standby].pipeline.tickers
            with ServiceRpcProxy(active.service_name, md_config, timeout=30) as rpc:
                assert_aggregation_of(rpc, unlisted, parked + live)
        finally:
            delist(test_settings, unlisted)
    finally:
        delete_rpc_queues(nameko_config, names)


def test_a_standby_starting_while_trades_of_a_listed_market_are_parked_records_none(
        service, market, md_config, container_factory, cql, nameko_config):
    active, names = service, []
    ManualClock.at = T0 + MINUTE
    matching = Matching(md_config, active, market)
    try:
        matching.trades([matching.trade(1, T0 + 500)])   # the first instance holds the queue
        parked = [matching.trade(n, T0 + n * 1000, f"{10 + n}.00") for n in range(2, 6)]
        # Parked as the trade consumer parks them (a row each).
        parking = ParkedTrades(cql)
        for payload in parked:
            parking.park(payload)

        standby = start_standby(container_factory, md_config, nameko_config, names)
        backends = {c: c.shared_extensions[Backend] for c in (active, standby)}
        wait_for(lambda: parked_rows(cql, market) == 0, 30, "the parked rows to go")
        # Gone from parked_trades only once in the trade queue (or recorded,
        # before): the standby has no part in recording them.
        assert backends[standby].ingested[market] == 0
        wait_for(lambda: backends[active].ingested[market] >= 1 + len(parked), 30,
                 "the active instance to ingest the parked trades")
        assert backends[standby].ingested[market] == 0
        assert backends[standby].pipeline.flushes == 0
        with ServiceRpcProxy(active.service_name, md_config, timeout=30) as rpc:
            assert_aggregation_of(rpc, market, [matching.trade(1, T0 + 500)] + parked)
    finally:
        delete_rpc_queues(nameko_config, names)


def test_marketdata_login_sends_parked_trades_to_its_own_queue_only(test_settings, nameko_config):
    """What the service does under its own login (stack/rabbitmq_access.py):
    the sender declares the queue's own exchange and binding and publishes
    with confirms; RabbitMQ's default exchange is refused to it (and would
    reach every queue), so that route was not an option. The message is an
    engine batch of the trades audience, each parked body as it was."""
    vhost = test_settings["EXCHANGE_RABBITMQ_VHOST"]
    queue = f"marketdata.trades.test-{uuid.uuid4().hex[:8]}"
    bodies = [Matching(nameko_config, None, "PKD-USDT").trade(n, T0 + n) for n in (1, 2)]
    try:
        with ParkedSender(test_settings.amqp_uri(vhost, "marketdata"), queue) as sender:
            sender.send("PKD-USDT", bodies)
        got = take(nameko_config["AMQP_URI"], queue)
        (message,) = got
        assert message.delivery_info["routing_key"] == TRADES_AUDIENCE
        assert unpack(TRADES_AUDIENCE, None, json.loads(message.body)) == [
            ("trade_executed", b["trade_id"], b) for b in bodies]
    finally:
        with Connection(nameko_config["AMQP_URI"]) as amqp:
            command_queue(queue)(amqp.default_channel).delete()
            Exchange(parked_exchange(queue))(amqp.default_channel).delete()


def test_a_trade_parked_again_while_its_row_was_being_sent_stays_parked(cql, md_config):
    """The removal after the confirm takes the rows as they were read: a trade
    parked again meanwhile (by a consumer whose catalogue was still behind,
    handed the sent copy) stays for the next pass instead of being lost."""
    market = new_symbol()
    trades = [Matching(md_config, None, market).trade(n, T0 + n) for n in (1, 2)]
    parking = ParkedTrades(cql)
    try:
        for payload in trades:
            parking.park(payload)
        (page,) = list(parking.pages(market))
        assert sorted(p.trade_id for p in page) == [t["trade_id"] for t in trades]
        parking.park(trades[0])                 # parked again after the read
        parking.remove(market, page)
        assert [p.trade_id for page in parking.pages(market) for p in page] == \
            [trades[0]["trade_id"]]
    finally:
        cql.execute("DELETE FROM parked_trades WHERE market = %s", (market,))


def test_parked_trades_are_read_a_page_at_a_time_each_once_while_removed(cql, md_config):
    """A pass holds at most a page (one message's worth) and removes it before
    reading the next: no row is skipped or read twice."""
    market = new_symbol()
    trades = [Matching(md_config, None, market).trade(n, T0 + n) for n in range(1, 6)]
    parking = ParkedTrades(cql)
    try:
        for payload in trades:
            parking.park(payload)
        seen = []
        for page in parking.pages(market, size=2):
            seen.append([p.trade_id for p in page])
            parking.remove(market, page)
        assert [len(page) for page in seen] == [2, 2, 1]
        assert sorted(t for page in seen for t in page) == sorted(t["trade_id"] for t in trades)
        assert parked_rows(cql, market) == 0
    finally:
        cql.execute("DELETE FROM parked_trades WHERE market = %s", (market,))
