"""A market's status has one home, the registry, and the engine follows it
through ``market_updated``; a lost status event is replayed with
``announce``, which re-sends the engine the registry's status."""
import psycopg
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.errors import UnknownMarket
from services.matching.service import MatchingService
from services.registry import listing
from services.registry.service import RegistryService
from tests.integration.orders.conftest import wait_for
from tests.integration.registry_kit import (ACTOR, dropping_its_event, new_symbol, set_status,
                                            throwaway_market)


def test_the_engine_follows_the_registrys_status_and_announce_replays_a_lost_halt(
        container_factory, nameko_config, test_settings, admin_token):
    for cls in (RegistryService, MatchingService):
        container_factory(cls, nameko_config).start()
    with throwaway_market(test_settings) as market, \
            ClusterRpcProxy(nameko_config, timeout=30) as rpc:
        def halted():
            return rpc.matching.get_depth(market, 1)["halted"]

        def known_and_trading():
            # The just-listed market reaches the engine with the registry's event.
            try:
                return halted() is False
            except UnknownMarket:
                return False
        wait_for(known_and_trading, timeout=30, what="the engine to know the new market")

        dropping_its_event(test_settings, market, lambda conn: listing.update_market(
            conn, ACTOR, market, {"status": "halted"}))
        announced = rpc.registry.announce(admin_token, market)
        assert announced["event"] == "market_updated"
        wait_for(halted, timeout=30, what="the engine to follow the announced halt")

        set_status(test_settings, market, "trading")
        wait_for(lambda: halted() is False, timeout=30, what="the engine to follow the resume")
        set_status(test_settings, market, "pre_trading")
        wait_for(halted, timeout=30, what="a pre-trading market's engine to stop")


def test_a_status_change_whose_handling_failed_is_handled_again(
        container_factory, nameko_config, test_settings, monkeypatch):
    """A failure while following a status change (the database failing over,
    say) must not lose the change: the event is requeued and handled again.
    Nameko acks a failed worker's message unless told to requeue it; the
    engine then stayed trading while the registry said halted."""
    follow_market, failures = MatchingService.follow_market, []
    # Only this test's market: the durable queue may still hold an earlier
    # test's change (its delisting, published after its containers stopped).
    mine = new_symbol()

    def failing_once(service, symbol, **changed):
        if symbol == mine and not failures:
            failures.append(symbol)
            raise psycopg.OperationalError("the database went away (the test's)")
        return follow_market(service, symbol, **changed)
    monkeypatch.setattr(MatchingService, "follow_market", failing_once)
    for cls in (RegistryService, MatchingService):
        container_factory(cls, nameko_config).start()
    with throwaway_market(test_settings, mine) as market, \
            ClusterRpcProxy(nameko_config, timeout=30) as rpc:
        def known_and_trading():
            try:
                return rpc.matching.get_depth(market, 1)["halted"] is False
            except UnknownMarket:
                return False
        wait_for(known_and_trading, timeout=30, what="the engine to know the new market")

        set_status(test_settings, market, "halted")
        wait_for(lambda: rpc.matching.get_depth(market, 1)["halted"], timeout=30,
                 what="the engine to follow the halt whose first handling failed")
        assert failures == [market]
