"""An admin's sweep of a market cancels every order acknowledged before it,
even one whose place has not reached the engine yet (docs/order-flow.md,
"The admin sweep").

Before session 12 the sweep was matching's: one CancelAll per user found on
the engine's book, sent through matching's own outbox stream. An order
acknowledged by orders but still in orders' outbox (its relay behind, the
broker slow) was on no book: its user got no CancelAll, or got one that
could reach the engine's queue ahead of the place; the order rested after
the sweep. Here orders' relay is held back by its own advisory lock (the
test takes it), so the place certainly waits in the outbox while the sweep
is requested. The real matching, orders and wallets run as containers on
the test vhost."""
import zlib

import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from services.common.errors import code_of
from services.common.postgres import make_pool
from services.orders.service import OrdersService
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)
from tests.integration.orders.conftest import (  # noqa: F401 (fixtures)
    exchange, fund, services, wait_for, wait_settled, wait_status,
)

MARKET = "BTC-USDT"
ORDERS_RELAY_LOCK = zlib.crc32(b"outbox:orders")   # services.common.outbox.Relay


@pytest.fixture
def relay_held(services, container_factory, nameko_config, test_settings):
    """Orders with its relay unable to publish until the test calls the
    returned ``release``: the fixture's orders process is stopped (its relay
    lets the lock go), the test takes the lock, a new orders process starts
    (its relay waits for the lock)."""
    pool = make_pool(test_settings, nameko_config["POSTGRES_DB"], min_size=1, max_size=1,
                     name="test-relay-lock")
    services["orders"].stop()
    with pool.connection() as conn:
        conn.autocommit = True
        wait_for(lambda: conn.execute("SELECT pg_try_advisory_lock(%s)",
                                      (ORDERS_RELAY_LOCK,)).fetchone()[0],
                 timeout=30, what="orders' relay lock")
        container_factory(OrdersService, nameko_config).start()

        def waiting() -> int:
            return conn.execute("SELECT count(*) FROM outbox WHERE stream = 'orders'"
                                ).fetchone()[0]

        def release() -> None:
            conn.execute("SELECT pg_advisory_unlock(%s)", (ORDERS_RELAY_LOCK,))

        try:
            yield waiting, release
        finally:
            conn.execute("SELECT pg_advisory_unlock_all()")
    pool.close()


def test_a_sweep_cancels_an_order_acknowledged_before_it_still_in_the_outbox(
        exchange, relay_held):
    rpc = exchange
    waiting, release = relay_held
    user = fund(rpc, {"USDT": "100"})
    order = rpc.orders.place_order(user, MARKET, "buy", "limit", "0.1", price="99")
    assert order["status"] == "new"                  # acknowledged: committed with its hold
    assert waiting() >= 1                            # its place has not left the outbox
    assert not rpc.matching.get_depth(MARKET, 5)["buy"]   # and no engine has it

    rpc.orders.cancel_market_orders(MARKET)
    release()

    wait_status(rpc, user, order["order_id"], {"cancelled"}, timeout=60)
    wait_settled(rpc, user, "USDT", "100")
    # The sweep is no halt: an order placed after it rests.
    later = rpc.orders.place_order(user, MARKET, "buy", "limit", "0.1", price="98")
    wait_for(lambda: rpc.matching.get_depth(MARKET, 5)["buy"], timeout=60,
             what="the later order to rest")
    assert rpc.orders.get_order(user, later["order_id"])["status"] == "new"
    rpc.orders.cancel_order(user, later["order_id"])
    wait_status(rpc, user, later["order_id"], {"cancelled"}, timeout=60)
    wait_settled(rpc, user, "USDT", "100")


def test_the_sweep_refuses_everyone_but_an_admin(
        exchange, nameko_config, principal_tokens, test_settings):
    """No credentials, a trader, the backend's service account: refused with
    their codes, nothing sent to an engine: the engine's journal has no sweep
    command after them and the open order in the market still rests (an order
    placed after the calls, in the same stream, has reached the engine first:
    outbox rows could not show it, the relay deletes them as it publishes)."""
    rpc = exchange
    pool = make_pool(test_settings, nameko_config["POSTGRES_DB"], min_size=1, max_size=1,
                     name="test-sweep-refusals")

    def sweeps() -> int:
        with pool.connection() as conn:
            return conn.execute("SELECT count(*) FROM matching.matching_journal "
                                "WHERE market = %s AND command_id LIKE 'sweep:%%'",
                                (MARKET,)).fetchone()[0]
    user = fund(rpc, {"USDT": "100"})
    try:
        resting = rpc.orders.place_order(user, MARKET, "buy", "limit", "0.1", price="99")
        wait_for(lambda: rpc.matching.get_depth(MARKET, 5)["buy"], timeout=60,
                 what="the order to rest")
        before = sweeps()
        for token, code in ((None, "UNAUTHENTICATED"),
                            (principal_tokens.person("trader"), "ADMIN_REQUIRED"),
                            (principal_tokens.service_account(), "PERSON_REQUIRED")):
            with ServiceRpcProxy("orders", nameko_config, timeout=20,
                                 context_data={"access_token": token} if token else {}) as orders:
                with pytest.raises(Exception) as raised:
                    orders.cancel_market_orders(MARKET)
                assert code_of(raised.value) == code, raised.value
        later = rpc.orders.place_order(user, MARKET, "buy", "limit", "0.1", price="98")
        wait_for(lambda: len(rpc.matching.get_depth(MARKET, 5)["buy"]) == 2 or
                 rpc.orders.get_order(user, resting["order_id"])["status"] != "new",
                 timeout=60, what="the later order to reach the engine")
        assert sweeps() == before
        assert rpc.orders.get_order(user, resting["order_id"])["status"] == "new"
        for order in (resting, later):
            rpc.orders.cancel_order(user, order["order_id"])
            wait_status(rpc, user, order["order_id"], {"cancelled"}, timeout=60)
        wait_settled(rpc, user, "USDT", "100")
        with ServiceRpcProxy("orders", nameko_config, timeout=20, context_data={
                "access_token": principal_tokens.person("admin")}) as orders:
            for market in (MARKET + "\x00", "x" * 1_000_000):
                with pytest.raises(Exception) as raised:
                    orders.cancel_market_orders(market)
                assert code_of(raised.value) in ("INVALID_ORDER", "UNKNOWN_MARKET"), raised.value
            assert orders.health()["status"] in ("ok", "degraded")
    finally:
        pool.close()
