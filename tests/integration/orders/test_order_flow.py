"""Placing, matching and settling orders across the real services."""
import time
import uuid
from decimal import Decimal as D

import psycopg
import pytest

from services.orders.errors import (
    DuplicateClientOrderId, OrderNotOpen, OrderRejected, OrdersError,
)
from services.registry.service import RegistryService
from tests.integration.orders.conftest import (
    balance, fund, wait_for, wait_settled, wait_status,
)
from tests.integration.registry_kit import set_status, throwaway_market

FINAL = ("filled", "cancelled", "expired", "rejected")


def place(rpc, user, side, price=None, quantity=None, **kw):
    return rpc.orders.place_order(user, kw.pop("market", "BTC-USDT"), side,
                                  kw.pop("type", "limit"), quantity=quantity, price=price, **kw)


def test_a_limit_buy_fills_at_the_makers_price_and_the_improvement_is_released(exchange):
    seller = fund(exchange, {"BTC": "1"})
    buyer = fund(exchange, {"USDT": "1000"})
    ask = place(exchange, seller, "sell", "100", "0.5")
    assert ask["status"] == "new" and ask["hold_amount"] == "0.5"
    assert balance(exchange, seller, "BTC") == (D("0.5"), D("0.5"))
    bid = place(exchange, buyer, "buy", "101", "0.5", client_order_id="bid-1")
    assert bid["hold_amount"] == "50.5" and bid["client_order_id"] == "bid-1"

    assert wait_status(exchange, buyer, bid["order_id"], FINAL)["status"] == "filled"
    assert wait_status(exchange, seller, ask["order_id"], FINAL)["status"] == "filled"
    # Taker pays 0.2% of the 0.5 BTC it receives; maker 0.1% of the 50 USDT.
    wait_settled(exchange, buyer, "BTC", "0.499")
    wait_settled(exchange, buyer, "USDT", "950")
    wait_settled(exchange, seller, "USDT", "49.95")
    wait_settled(exchange, seller, "BTC", "0.5")
    done = exchange.orders.get_order(buyer, client_order_id="bid-1")
    assert (done["filled_quantity"], done["filled_quote"], done["released_amount"]) == \
        ("0.5", "50", "0.5")


def test_an_ioc_sweeps_several_makers_and_its_remainder_expires(exchange):
    makers = [fund(exchange, {"BTC": "1"}) for _ in range(3)]
    for maker, (price, qty) in zip(makers, [("100", "0.1"), ("101", "0.2"), ("103", "0.3")]):
        place(exchange, maker, "sell", price, qty)
    taker = fund(exchange, {"USDT": "1000"})
    order = place(exchange, taker, "buy", "102", "0.5", time_in_force="IOC")
    done = wait_status(exchange, taker, order["order_id"], FINAL)
    assert done["status"] == "expired"
    assert (done["filled_quantity"], done["filled_quote"]) == ("0.3", "30.2")
    wait_settled(exchange, taker, "USDT", "969.8")
    wait_settled(exchange, taker, "BTC", "0.2994")
    wait_settled(exchange, makers[0], "USDT", "9.99")
    wait_settled(exchange, makers[1], "USDT", "20.1798")
    assert balance(exchange, makers[2], "BTC") == (D("0.7"), D("0.3"))
    assert [o["price"] for o in exchange.orders.open_orders(makers[2], "BTC-USDT")] == ["103"]


def test_market_orders_by_quote_amount_and_by_quantity(exchange):
    maker = fund(exchange, {"BTC": "1", "USDT": "1000"})
    place(exchange, maker, "sell", "100", "0.1")
    place(exchange, maker, "sell", "110", "0.2")
    buyer = fund(exchange, {"USDT": "100"})
    by_quote = place(exchange, buyer, "buy", type="market", quote_amount="25")
    done = wait_status(exchange, buyer, by_quote["order_id"], FINAL)
    spent = D(done["filled_quote"])
    assert D("24") < spent <= D("25"), done
    wait_settled(exchange, buyer, "USDT", str(D("100") - spent))

    # By quantity: sent as an IOC limit at a protection price inside the band,
    # the hold covers quantity x that price, the leftover comes back.
    buyer2 = fund(exchange, {"USDT": "100"})
    by_qty = place(exchange, buyer2, "buy", type="market", quantity="0.05")
    done = wait_status(exchange, buyer2, by_qty["order_id"], FINAL)
    assert (done["status"], done["order_type"], done["filled_quote"]) == ("filled", "market", "5.5")
    wait_settled(exchange, buyer2, "USDT", "94.5")

    place(exchange, maker, "buy", "90", "0.2")
    seller = fund(exchange, {"BTC": "0.05"})
    sold = place(exchange, seller, "sell", type="market", quantity="0.05")
    sold = wait_status(exchange, seller, sold["order_id"], FINAL)
    assert (sold["status"], sold["reason"]) == ("filled", None)
    wait_settled(exchange, seller, "USDT", str(D("4.5") * (1 - D("0.002"))))



def test_fok_and_post_only_rejections_hold_nothing_afterwards(exchange):
    maker = fund(exchange, {"BTC": "1"})
    place(exchange, maker, "sell", "100", "0.1")
    taker = fund(exchange, {"USDT": "1000"})
    fok = place(exchange, taker, "buy", "100", "0.2", time_in_force="FOK")
    post = place(exchange, taker, "buy", "100", "0.05", post_only=True)
    for order in (fok, post):
        wait_status(exchange, taker, order["order_id"], FINAL)
    assert exchange.orders.get_order(taker, fok["order_id"])["status"] in ("rejected", "expired")
    rejected = exchange.orders.get_order(taker, post["order_id"])
    assert (rejected["status"], rejected["reason"]) == ("rejected", "POST_ONLY_WOULD_TAKE")
    wait_settled(exchange, taker, "USDT", "1000")


def test_cancel_releases_and_amend_holds_the_difference(exchange):
    user = fund(exchange, {"USDT": "1000"})
    order = place(exchange, user, "buy", "100", "1")
    assert balance(exchange, user, "USDT") == (D("900"), D("100"))
    amended = exchange.orders.amend_order(user, order["order_id"], price="120", quantity="2")
    assert amended["hold_amount"] == "240"
    assert balance(exchange, user, "USDT") == (D("760"), D("240"))
    wait_for(lambda: exchange.orders.get_order(user, order["order_id"])["price"] == "120",
             what="the amend to reach the engine")
    exchange.orders.cancel_order(user, order["order_id"])
    assert wait_status(exchange, user, order["order_id"], FINAL)["status"] == "cancelled"
    wait_settled(exchange, user, "USDT", "1000")
    with pytest.raises(OrderNotOpen):
        exchange.orders.cancel_order(user, order["order_id"])


def test_a_market_halted_in_the_registry_refuses_orders_its_engine_follows_and_resumes(
        exchange, container_factory, nameko_config, test_settings):
    """The market's status has one home, the registry (a registry container
    relays its events). Halted: orders refuse new orders and amends with
    ORDER_REJECTED/MARKET_HALTED, the engine follows with a journaled halt,
    a resting order can still be cancelled; resumed: orders rest again."""
    container_factory(RegistryService, nameko_config).start()
    with throwaway_market(test_settings) as market:
        user = fund(exchange, {"USDT": "1000"})
        resting = place(exchange, user, "buy", "100", "1", market=market)
        wait_for(lambda: exchange.matching.get_depth(market, 5)["buy"], what="the bid to rest")

        set_status(test_settings, market, "halted")
        wait_for(lambda: exchange.matching.get_depth(market, 1)["halted"], timeout=30,
                 what="the engine to follow the registry's halt")

        def refused() -> bool:
            # Until orders' copy of the catalogue has the halt, an order is
            # accepted and the halted engine rejects it (nothing stays held).
            try:
                late = place(exchange, user, "buy", "99", "1", market=market)
            except OrderRejected as exc:
                assert exc.reason == "MARKET_HALTED", exc
                return True
            rejected = wait_status(exchange, user, late["order_id"], FINAL)
            assert (rejected["status"], rejected["reason"]) == ("rejected", "MARKET_HALTED")
            return False
        wait_for(refused, timeout=30, what="orders to refuse orders of the halted market")
        with pytest.raises(OrderRejected) as amend:
            exchange.orders.amend_order(user, resting["order_id"], price="101")
        assert amend.value.reason == "MARKET_HALTED"
        exchange.orders.cancel_order(user, resting["order_id"])
        assert wait_status(exchange, user, resting["order_id"], FINAL)["status"] == "cancelled"
        wait_settled(exchange, user, "USDT", "1000")

        set_status(test_settings, market, "trading")
        wait_for(lambda: not exchange.matching.get_depth(market, 1)["halted"], timeout=30,
                 what="the engine to follow the resume")
        again = wait_for(lambda: _placed(exchange, user, market), timeout=30,
                         what="orders to take orders again")
        assert wait_status(exchange, user, again["order_id"], ("new",))["status"] == "new"
        exchange.orders.cancel_order(user, again["order_id"])
        assert wait_status(exchange, user, again["order_id"], FINAL)["status"] == "cancelled"
        wait_settled(exchange, user, "USDT", "1000")


def _placed(rpc, user, market):
    try:
        return place(rpc, user, "buy", "100", "1", market=market)
    except OrderRejected as exc:
        assert exc.reason == "MARKET_HALTED", exc
        return None


@pytest.mark.parametrize("kwargs, error", [
    ({"price": "100", "quantity": 0.5}, "InvalidOrder"),            # a float
    ({"price": "100.001", "quantity": "0.5"}, "InvalidOrder"),     # off tick
    ({"price": "100", "quantity": "0.00005"}, "InvalidOrder"),     # off lot
    ({"price": "-1", "quantity": "0.5"}, "InvalidOrder"),
    ({"price": "NaN", "quantity": "0.5"}, "InvalidOrder"),
    ({"price": "100", "quantity": "0.5", "market": "DOGE-USDT"}, "UnknownMarket"),
    ({"price": "100", "quantity": "0.5", "time_in_force": "GTD"}, "InvalidOrder"),
    ({"price": "100", "quantity": "100"}, "OrderRejected"),        # more than the balance
])
def test_bad_orders_get_typed_errors_and_hold_nothing(exchange, kwargs, error):
    user = fund(exchange, {"USDT": "1000"})
    with pytest.raises(OrdersError) as raised:
        place(exchange, user, "buy", **kwargs)
    assert type(raised.value).__name__ == error
    assert balance(exchange, user, "USDT") == (D("1000"), D("0"))
    assert exchange.orders.open_orders(user) == []


def test_a_client_order_id_is_used_once(exchange):
    user = fund(exchange, {"USDT": "1000"})
    place(exchange, user, "buy", "100", "0.1", client_order_id="same")
    with pytest.raises(DuplicateClientOrderId):
        place(exchange, user, "buy", "100", "0.1", client_order_id="same")
    assert balance(exchange, user, "USDT") == (D("990"), D("10"))


def test_a_frozen_user_cannot_trade_and_its_open_orders_are_cancelled(exchange, nameko_config):
    """The users service's `user_frozen` / `user_unfrozen` events (the documented
    contract, docs/users.md), published on the real broker as users does."""
    from nameko.standalone.events import event_dispatcher
    import time as clock
    user = fund(exchange, {"USDT": "1000", "BTC": "1"})
    bid = place(exchange, user, "buy", "99", "1")
    ask = place(exchange, user, "sell", "120", "0.5", market="BTC-USDT")
    dispatch = event_dispatcher(nameko_config)
    dispatch("users", "user_frozen", {"user_id": user, "state": "frozen", "previous_state": "active",
                                      "reason": "test", "by": "admin", "at": int(clock.time() * 1000)})
    for order in (bid, ask):
        assert wait_status(exchange, user, order["order_id"], FINAL)["status"] == "cancelled"
    wait_settled(exchange, user, "USDT", "1000")
    wait_settled(exchange, user, "BTC", "1")
    with pytest.raises(OrderRejected) as raised:
        place(exchange, user, "buy", "99", "1")
    assert raised.value.reason == "USER_FROZEN"
    assert balance(exchange, user, "USDT") == (D("1000"), D("0"))

    dispatch("users", "user_unfrozen", {"user_id": user, "state": "active", "previous_state": "frozen",
                                        "reason": "test", "by": "admin",
                                        "at": int(clock.time() * 1000) + 1})
    again = wait_for(lambda: _try_place(exchange, user), what="trading to be allowed again")
    assert again["status"] == "new"


def _try_place(rpc, user):
    try:
        return place(rpc, user, "buy", "99", "1")
    except OrdersError:
        return None


def test_engine_events_of_another_market_or_user_never_touch_an_order(exchange, nameko_config):
    """Trades and order updates whose ids collide with one of our orders but
    name another market or user (an operator's or a test's raw engine command)
    are ignored by the orders consumer."""
    from nameko.standalone.events import event_dispatcher
    user = fund(exchange, {"USDT": "1000"})
    order = place(exchange, user, "buy", "100", "0.1")
    dispatch = event_dispatcher(nameko_config)
    foreign = {"market": "ZZZ-USDT", "seq": 1, "trade_id": "ZZZ-USDT-1", "price": "100.00",
               "quantity": "5.0000", "quote_quantity": "500.000000", "taker_side": "buy",
               "maker_order_id": order["order_id"] + 10**9, "maker_user_id": "someone",
               "taker_order_id": order["order_id"], "taker_user_id": user, "executed_at": 1}
    dispatch("matching", "trade_executed", foreign)
    dispatch("matching", "order_updated", {**foreign, "event": "order_done", "status": "filled",
                                           "order_id": order["order_id"], "user_id": "someone",
                                           "market": "BTC-USDT", "side": "buy"})
    marker = place(exchange, user, "buy", "99", "0.1")  # goes through the same ordered queue
    exchange.orders.cancel_order(user, marker["order_id"])
    wait_status(exchange, user, marker["order_id"], FINAL)
    mine = exchange.orders.get_order(user, order["order_id"])
    assert (mine["status"], mine["filled_quantity"]) == ("new", "0")
    # Wallets parks the foreign trade (its market is not listed: nothing is
    # dropped); resolved here as an operator would, so the audit stays clean.
    with psycopg.connect(nameko_config_dsn(nameko_config)) as conn:
        wait_for(lambda: conn.execute(
            "DELETE FROM wallets.parked_trades WHERE market = 'ZZZ-USDT' AND trade_id = %s "
            "RETURNING 1", (foreign["trade_id"],)).fetchone(), what="the foreign trade parked")


def test_an_event_that_cannot_be_applied_is_parked_and_the_stream_goes_on(exchange, nameko_config):
    """A poison event (here a trade without its order ids, and an order_done
    for an order that 'spent' more than it held) is parked with its error and
    reported by health; the events after it are applied."""
    from nameko.standalone.events import event_dispatcher
    user = fund(exchange, {"USDT": "1000"})
    victim = place(exchange, user, "buy", "100", "0.1")
    with psycopg.connect(nameko_config_dsn(nameko_config)) as conn:
        before = conn.execute("SELECT count(*) FROM unprocessed_events").fetchone()[0]
        # Make the victim look as if it spent more than its 10 USDT hold.
        conn.execute("UPDATE orders SET filled_quote = 11 WHERE order_id = %s",
                     (victim["order_id"],))
    dispatch = event_dispatcher(nameko_config)
    dispatch("matching", "trade_executed", {"market": "BTC-USDT", "trade_id": "broken"})
    dispatch("matching", "order_updated", {
        "event": "order_done", "status": "filled", "market": "BTC-USDT", "side": "buy",
        "order_id": victim["order_id"], "user_id": user})
    marker = place(exchange, user, "buy", "99", "0.1")
    exchange.orders.cancel_order(user, marker["order_id"])
    assert wait_status(exchange, user, marker["order_id"], FINAL)["status"] == "cancelled"
    health = exchange.orders.health()
    with psycopg.connect(nameko_config_dsn(nameko_config)) as conn:
        parked = conn.execute("SELECT message_id, routing_key, error FROM unprocessed_events "
                              "ORDER BY parked_at DESC LIMIT %s", (2,)).fetchall()
        after = conn.execute("SELECT count(*) FROM unprocessed_events").fetchone()[0]
        # What an operator would do: put the victim right, clear what was parked.
        conn.execute("UPDATE orders SET filled_quote = 0 WHERE order_id = %s",
                     (victim["order_id"],))
        conn.execute("DELETE FROM unprocessed_events WHERE message_id = ANY(%s)",
                     ([message_id for message_id, _, _ in parked],))
    assert after - before == 2
    assert {key for _, key, _ in parked} == {"trade_executed", "order_updated"}
    assert any("more than its hold" in error for _, _, error in parked)
    assert health["status"] == "degraded" and health["parked_events"] >= 2
    assert exchange.orders.get_order(user, victim["order_id"])["status"] == "new"
    exchange.orders.cancel_order(user, victim["order_id"])
    wait_status(exchange, user, victim["order_id"], FINAL)


def nameko_config_dsn(nameko_config):
    from services.common.config import load_settings
    return load_settings().postgres_dsn(nameko_config["POSTGRES_DB"])


def test_releases_lock_accounts_in_id_order_as_settlement_does(exchange, nameko_config):
    """Settlement locks the accounts of a batch in id order. The events
    consumer releases the leftovers of a batch's finished orders: unless it
    takes those accounts in the same order, a release and a settlement that
    share two accounts deadlock (seen in the order-flow benchmark), and
    PostgreSQL aborts one of them. Here a transaction holds the lower account
    as settlement would, the consumer finishes the higher account's order
    first, then the transaction takes the higher account."""
    import eventlet
    from services.common.config import load_settings
    from services.common.postgres import make_pool
    from services.orders.providers import MatchingEvents

    users = [fund(exchange, {"USDT": "100"}) for _ in range(2)]
    dsn = nameko_config_dsn(nameko_config)
    with psycopg.connect(dsn, autocommit=True) as conn:
        account = {user: conn.execute(
            "SELECT id FROM wallets.accounts WHERE owner = %s AND asset = 'USDT'",
            (user,)).fetchone()[0] for user in users}
        low, high = sorted(users, key=account.get)
        order_ids = {}
        for user in (high, low):
            # An order the engine never saw (no command in the outbox): only
            # the events below end it.
            order_ids[user] = conn.execute(
                "INSERT INTO orders (order_id, user_id, market, side, order_type, price, "
                "quantity, time_in_force, status, hold_asset, hold_amount) "
                "VALUES (nextval('order_ids'), %s, 'BTC-USDT', 'buy', 'limit', 100, 0.1, 'GTC', "
                "'new', 'USDT', 10) RETURNING order_id", (user,)).fetchone()[0]
            conn.execute("SELECT wallets.hold_funds(%s, 'USDT', 10, %s)",
                         (user, f"order:{order_ids[user]}"))

    events = MatchingEvents()
    events.pool = make_pool(load_settings(), nameko_config["POSTGRES_DB"], min_size=1, max_size=2,
                            name="test-orders-events")
    attempts = []
    apply = events._apply
    events._apply = lambda batch: (attempts.append(len(batch)), apply(batch))[1]
    batch = [("order_updated", f"test-done-{order_ids[user]}",
              {"event": "order_done", "status": "cancelled", "market": "BTC-USDT",
               "order_id": order_ids[user], "user_id": user})
             for user in (high, low)]
    try:
        with psycopg.connect(dsn) as settlement:
            settlement.execute("SELECT id FROM wallets.accounts WHERE id = %s FOR UPDATE",
                               (account[low],))
            consumer = eventlet.spawn(events.handle, batch)
            eventlet.sleep(0.5)  # the consumer is now waiting on the lower account
            settlement.execute("SET LOCAL lock_timeout = '10s'")
            settlement.execute("SELECT id FROM wallets.accounts WHERE id = %s FOR UPDATE",
                               (account[high],))
            settlement.commit()
            consumer.wait()
    finally:
        events.pool.close()
    assert attempts == [2], "the consumer's transaction was aborted (deadlock) and run again"
    for user in users:
        assert exchange.orders.get_order(user, order_ids[user])["status"] == "cancelled"
        assert balance(exchange, user, "USDT") == (D("100"), D("0"))


def test_a_redelivered_place_order_request_places_one_order(exchange, nameko_config):
    """Nameko acks a request after its reply, so a process that dies after
    committing an order but before replying gets the request redelivered to
    another process. Here the same request (same correlation id) arrives
    twice, as the broker would redeliver it, without a client order id: one
    order, one hold, and both runs answer with that order."""
    import socket

    from kombu import Connection, Consumer, Producer, Queue
    from nameko.rpc import get_rpc_exchange

    user = fund(exchange, {"USDT": "1000"})
    request_id = str(uuid.uuid4())
    rpc_exchange = get_rpc_exchange(nameko_config)
    replies = []
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        reply_queue = Queue(f"test-replies-{request_id}", exchange=rpc_exchange,
                            routing_key=f"test-replies-{request_id}", auto_delete=True,
                            exclusive=True)
        with Consumer(amqp, [reply_queue], callbacks=[lambda body, m: (replies.append(body),
                                                                       m.ack())],
                      accept=["json"]):
            producer = Producer(amqp)
            for _ in range(2):
                producer.publish(
                    {"args": [user, "BTC-USDT", "buy", "limit"],
                     "kwargs": {"quantity": "0.1", "price": "100"}},
                    exchange=rpc_exchange, routing_key="orders.place_order", serializer="json",
                    reply_to=reply_queue.routing_key, correlation_id=request_id)
            deadline = time.monotonic() + 30
            while len(replies) < 2 and time.monotonic() < deadline:
                try:
                    amqp.drain_events(timeout=1)
                except socket.timeout:
                    pass
    assert len(replies) == 2
    assert [reply["error"] for reply in replies] == [None, None]
    first, second = (reply["result"] for reply in replies)
    assert first["order_id"] == second["order_id"]
    assert first["client_order_id"] == request_id
    assert [order["order_id"] for order in exchange.orders.open_orders(user)] == [
        first["order_id"]]
    available, locked = balance(exchange, user, "USDT")
    assert D("10") <= locked < D("20") and available + locked == D("1000")  # one hold, not two
    exchange.orders.cancel_order(user, first["order_id"])
    wait_status(exchange, user, first["order_id"], FINAL)
