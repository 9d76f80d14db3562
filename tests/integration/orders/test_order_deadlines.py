"""Deadlines on the order path (issue 11): a request whose deadline has
passed is refused with REQUEST_EXPIRED and leaves nothing behind; with
matching down, placing a limit order does not wait for it (the catalogue is
local, the command waits in the durable queue), a call that needs matching
fails within its bound instead of blocking, and what was placed meanwhile
matches once matching is back."""
import time
import uuid
from decimal import Decimal as D

import eventlet
import pytest
from nameko.exceptions import RpcTimeout
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.deadlines import now_ms
from services.common.errors import code_of
from services.matching.service import MatchingService
from services.orders.errors import UnknownOrder
from services.orders.service import OrdersService
from services.wallets.service import WalletsService
from tests.integration.orders.conftest import (
    as_admin, balance, empty_books, fund, wait_for, wait_status,
)

MATCHING_DOWN_S = 20
FINAL = ("filled", "cancelled", "expired", "rejected")


def test_an_expired_request_is_refused_and_writes_nothing(exchange, nameko_config):
    user = fund(exchange, {"USDT": "1000"})
    with ClusterRpcProxy(nameko_config, timeout=30,
                         context_data={"deadline_ms": now_ms() - 1}) as late:
        with pytest.raises(Exception) as raised:
            late.orders.place_order(user, "BTC-USDT", "buy", "limit", quantity="0.1",
                                    price="100", client_order_id="too-late")
        assert code_of(raised.value) == "REQUEST_EXPIRED", raised.value
        with pytest.raises(Exception) as raised:
            late.wallets.hold(user, "USDT", "1", f"late:{uuid.uuid4()}")
        assert code_of(raised.value) == "REQUEST_EXPIRED", raised.value
    with pytest.raises(UnknownOrder):
        exchange.orders.get_order(user, client_order_id="too-late")
    assert balance(exchange, user, "USDT") == (D("1000"), D("0"))


def test_a_caller_without_a_deadline_gets_the_default_and_is_served(exchange):
    user = fund(exchange, {"USDT": "100"})
    assert exchange.orders.open_orders(user) == []


@pytest.mark.slow
def test_orders_keep_being_taken_while_matching_is_down_and_match_when_it_is_back(
        container_factory, nameko_config, principal_tokens):
    """Matching killed for MATCHING_DOWN_S seconds under order load.

    * every call is answered within the caller's timeout (no RpcTimeout):
      limit orders are accepted, a market buy by quantity (which needs
      matching's depth) is refused with UPSTREAM_TIMEOUT and writes nothing;
    * a request that expired is refused and its order never appears;
    * the orders placed meanwhile (a crossing pair among them) are matched
      once matching is back."""
    for cls in (WalletsService, OrdersService):
        container_factory(cls, nameko_config).start()
    matching = container_factory(MatchingService, nameko_config)
    matching.start()
    with as_admin(nameko_config, principal_tokens) as rpc:
        empty_books(rpc)
        buyers = [fund(rpc, {"USDT": "10000"}) for _ in range(3)]
        seller = fund(rpc, {"BTC": "1"})
        matching.kill()

        accepted, refused, timeouts = [], [], []

        def load(user):
            started = time.monotonic()
            count = 0
            with ClusterRpcProxy(nameko_config, timeout=10) as caller:
                while time.monotonic() - started < MATCHING_DOWN_S and count < 200:
                    count += 1
                    cid = f"load-{uuid.uuid4().hex[:20]}"
                    try:
                        if count % 10 == 0:   # needs matching's depth: must fail, not block
                            caller.orders.place_order(user, "BTC-USDT", "buy", "market",
                                                      quantity="0.1", client_order_id=cid)
                            accepted.append((user, cid, "market"))
                        else:
                            order = caller.orders.place_order(
                                user, "BTC-USDT", "buy", "limit", quantity="0.1",
                                price=str(90 + count % 9), client_order_id=cid)
                            accepted.append((user, order["order_id"], "limit"))
                    except RpcTimeout:
                        timeouts.append(cid)
                    except Exception as exc:  # a coded refusal
                        refused.append((user, cid, code_of(exc)))
                    eventlet.sleep(0.1)

        workers = [eventlet.spawn(load, user) for user in buyers]
        # A crossing pair placed while matching is down.
        ask = rpc.orders.place_order(seller, "BTC-USDT", "sell", "limit", quantity="0.5",
                                     price="100")
        bid = rpc.orders.place_order(buyers[0], "BTC-USDT", "buy", "limit", quantity="0.5",
                                     price="100")
        with ClusterRpcProxy(nameko_config, timeout=30,
                             context_data={"deadline_ms": now_ms() - 1}) as late:
            with pytest.raises(Exception) as expired:
                late.orders.place_order(buyers[1], "BTC-USDT", "buy", "limit", quantity="0.1",
                                        price="95", client_order_id="expired-while-down")
            assert code_of(expired.value) == "REQUEST_EXPIRED"
        for worker in workers:
            worker.wait()

        assert timeouts == [], "a call blocked past the caller's timeout"
        assert [a for a in accepted if a[2] == "market"] == [], "a market buy ran without depth"
        assert {code for _, _, code in refused} == {"UPSTREAM_TIMEOUT"}, refused
        assert len([a for a in accepted if a[2] == "limit"]) >= 20

        container_factory(MatchingService, nameko_config).start()   # matching is back
        assert wait_status(rpc, buyers[0], bid["order_id"], FINAL, timeout=60)["status"] == \
            "filled"
        assert wait_status(rpc, seller, ask["order_id"], FINAL, timeout=60)["status"] == "filled"
        for user, order_id, _ in [a for a in accepted if a[2] == "limit"][:20]:
            wait_for(lambda: rpc.orders.get_order(user, order_id)["status"] == "new",
                     timeout=60, what=f"order {order_id} on the book")
        for user, cid, _ in refused + [(buyers[1], "expired-while-down", None)]:
            with pytest.raises(UnknownOrder):
                rpc.orders.get_order(user, client_order_id=cid)
        for user in buyers:
            rpc.orders.cancel_all(user, "BTC-USDT")
        assert rpc.wallets.audit() == []
