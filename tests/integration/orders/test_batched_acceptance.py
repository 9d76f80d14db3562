"""Batched acceptance (issue 18): orders.place_orders and the group commit of
concurrent place_order / cancel_order calls in one orders process, on the
real servers. A batch is one PostgreSQL transaction; each order in it is
placed or refused on its own, with the code the single-order path gives."""
import uuid
from decimal import Decimal as D

import eventlet
import psycopg
import pytest
from eventlet.event import Event
from nameko.extensions import Entrypoint
from nameko.testing.utils import get_extension

from services.common.errors import code_of, reason_of
from services.orders.acceptance import Acceptance
from tests.integration.orders.conftest import balance, fund, wait_for
from tests.integration.orders.test_order_redelivery import send_requests


def limit_buy(user, price="100", quantity="0.1", **extra):
    return {"user": user, "market": "BTC-USDT", "side": "buy", "type": "limit",
            "price": price, "quantity": quantity, **extra}


def transactions(test_settings, order_ids) -> list:
    """The transaction that inserted each order, by its start time: the
    rows' created_at is now() of the inserting transaction (their xmin
    changes when the engine's events update them)."""
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        rows = dict(conn.execute("SELECT order_id, created_at FROM orders "
                                 "WHERE order_id = ANY(%s)", (list(order_ids),)).fetchall())
    return [rows[order_id] for order_id in order_ids]


def holds_taken(test_settings, user) -> tuple:
    """(count, total) of the holds in the user's ledger."""
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        return tuple(conn.execute(
            "SELECT count(*), coalesce(sum((details->>'amount')::numeric), 0) "
            "FROM wallets.transactions WHERE type = 'hold' AND details->>'user' = %s",
            (user,)).fetchone())


def test_a_batch_with_refused_orders_places_the_others(exchange, test_settings):
    user = fund(exchange, {"USDT": "1000"})
    answers = exchange.orders.place_orders([
        limit_buy(user, "100", "1"),
        limit_buy(user, "100", "20"),              # 2000 USDT: more than the balance
        limit_buy(user, "100.001", "1"),           # off tick
        limit_buy(user, "100", "1", client_order_id="twice"),
        limit_buy(user, "100", "1", client_order_id="twice"),
        limit_buy(user, "99", "2"),
    ])
    assert [next(iter(a)) for a in answers] == ["order", "error", "error", "order", "error",
                                                 "order"], answers
    assert answers[1]["error"]["code"] == "ORDER_REJECTED"
    assert answers[1]["error"]["reason"] == "INSUFFICIENT_FUNDS"
    assert (answers[2]["error"]["code"], answers[2]["error"]["field"]) == \
        ("INVALID_ORDER", "price")
    assert answers[4]["error"]["code"] == "DUPLICATE_CLIENT_ORDER_ID"
    placed = [a["order"] for a in answers if "order" in a]
    assert {o["status"] for o in placed} == {"new"}
    assert sorted(o["order_id"] for o in exchange.orders.open_orders(user)) == \
        sorted(o["order_id"] for o in placed)
    # 100 + 100 + 198 held, the refused ones nothing.
    assert balance(exchange, user, "USDT") == (D("602"), D("398"))
    # One transaction for the whole batch.
    assert len(set(transactions(test_settings, [o["order_id"] for o in placed]))) == 1
    exchange.orders.cancel_all(user, "BTC-USDT")


def test_a_redelivered_batch_places_nothing_twice(exchange, nameko_config, test_settings):
    """The broker's redelivery as the broker does it: the same request (same
    correlation id) again after the first run committed; then another request
    reusing one of its client order ids."""
    user = fund(exchange, {"USDT": "1000"})
    body = {"args": [[limit_buy(user, "95.5", "1", client_order_id="mine-1"),
                      limit_buy(user, "95.1", "1"),
                      limit_buy(user, "95.5", "50")]], "kwargs": {}}
    request_id = str(uuid.uuid4())
    first, redelivered, other = send_requests(
        nameko_config, [(request_id, body), (request_id, body), (str(uuid.uuid4()), body)],
        method="place_orders")
    assert (first["error"], redelivered["error"], other["error"]) == (None, None, None)
    first, redelivered, other = first["result"], redelivered["result"], other["result"]
    assert [a.get("order", {}).get("order_id") for a in redelivered] == \
        [a.get("order", {}).get("order_id") for a in first]
    assert first[1]["order"]["client_order_id"] == redelivered[1]["order"]["client_order_id"]
    assert first[2]["error"]["reason"] == redelivered[2]["error"]["reason"] == "INSUFFICIENT_FUNDS"
    # Another request: the explicit client order id is taken; the orders
    # without one get ids of their own request, so they are new orders.
    assert other[0]["error"]["code"] == "DUPLICATE_CLIENT_ORDER_ID"
    assert other[1]["order"]["order_id"] != first[1]["order"]["order_id"]
    assert len(exchange.orders.order_history(user)["orders"]) == 3
    # One hold per order, whatever other tests' orders trade with them meanwhile.
    assert holds_taken(test_settings, user) == (3, D("285.7"))
    exchange.orders.cancel_all(user, "BTC-USDT")


def refusals(exchange, user, frozen):
    """``(place_order keyword arguments)`` of orders each refused for its own
    reason, and the user each is placed for."""
    return [
        (user, {"market": "BTC-USDT", "side": "buy", "type": "limit", "price": "100",
                "quantity": "100"}),                                          # funds
        (user, {"market": "BTC-USDT", "side": "buy", "type": "limit", "price": "100.001",
                "quantity": "1"}),                                            # tick
        (user, {"market": "BTC-USDT", "side": "buy", "type": "limit", "price": "100",
                "quantity": "0.00005"}),                                      # lot
        (user, {"market": "DOGE-USDT", "side": "buy", "type": "limit", "price": "1",
                "quantity": "1"}),                                            # market
        (user, {"market": "BTC-USDT", "side": "buy", "type": "limit", "price": "100",
                "quantity": "1", "time_in_force": "GTD"}),
        (user, {"market": "BTC-USDT", "side": "buy", "type": "market", "price": "100",
                "quantity": "1"}),
        (user, {"market": "BTC-USDT", "side": "sell", "type": "limit", "price": "100",
                "quantity": "1"}),                                            # no BTC
        (user, {"market": "BTC-USDT", "side": "buy", "type": "limit", "price": "100",
                "quantity": "0.1", "client_order_id": "taken"}),              # duplicate
        (frozen, {"market": "BTC-USDT", "side": "buy", "type": "limit", "price": "100",
                  "quantity": "0.1"}),                                        # frozen user
    ]


def test_per_order_refusals_match_the_single_order_path(exchange, test_settings):
    user, frozen = fund(exchange, {"USDT": "1000"}), fund(exchange, {"USDT": "1000"})
    exchange.orders.place_order(user, "BTC-USDT", "buy", "limit", quantity="0.1", price="90",
                                client_order_id="taken")
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        conn.execute("INSERT INTO user_trading_blocks (user_id, state, event_at) "
                     "VALUES (%s, 'frozen', 1)", (frozen,))
    cases = refusals(exchange, user, frozen)
    single = []
    for who, kwargs in cases:
        with pytest.raises(Exception) as raised:  # the typed refusal (or a RemoteError)
            exchange.orders.place_order(who, **kwargs)
        single.append((code_of(raised.value), reason_of(raised.value)
                       if code_of(raised.value) == "ORDER_REJECTED" else None))
    answers = exchange.orders.place_orders([{"user": who, **kwargs} for who, kwargs in cases])
    batched = [(a["error"]["code"], a["error"].get("reason")) for a in answers]
    assert batched == single
    assert [code for code, _ in single] == [
        "ORDER_REJECTED", "INVALID_ORDER", "INVALID_ORDER", "UNKNOWN_MARKET", "INVALID_ORDER",
        "INVALID_ORDER", "ORDER_REJECTED", "DUPLICATE_CLIENT_ORDER_ID", "ORDER_REJECTED"]
    assert [reason for _, reason in single if reason] == [
        "INSUFFICIENT_FUNDS", "INSUFFICIENT_FUNDS", "USER_FROZEN"]
    assert balance(exchange, user, "USDT") == (D("991"), D("9"))
    assert balance(exchange, frozen, "USDT") == (D("1000"), D("0"))
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        conn.execute("DELETE FROM user_trading_blocks WHERE user_id = %s", (frozen,))
    exchange.orders.cancel_all(user, "BTC-USDT")


def test_concurrent_single_calls_share_one_transaction(exchange, services, test_settings):
    """The first call's batch is held in flight (the test locks the account it
    holds from); the calls arriving meanwhile queue up and go as ONE batch:
    one transaction (the same now() on their rows), each caller answered with
    its own order or refusal."""
    batcher = next(e for e in services["orders"].extensions if isinstance(e, Acceptance)).batcher
    first_user = fund(exchange, {"USDT": "1000"})
    users = [fund(exchange, {"USDT": "100"}) for _ in range(6)]
    poor = 3   # asks for 500 USDT
    results = {}

    def call(user, quantity):
        # A worker of this container, its own result: on the shared test
        # vhost another test run's orders container could take an AMQP
        # request (and nameko's entrypoint_hook answers with whichever
        # worker of the method ends first).
        container = services["orders"]
        done = Event()

        def handle_result(worker_ctx, result=None, exc_info=None):
            done.send(result if exc_info is None else exc_info[1])
            return result, exc_info

        container.spawn_worker(get_extension(container, Entrypoint, method_name="place_order"),
                               (user, "BTC-USDT", "buy", "limit"),
                               {"quantity": quantity, "price": "100"},
                               handle_result=handle_result)
        results[user] = done.wait()

    def queued_users():
        # (Requests of other test runs sharing the vhost may queue here too.)
        return {request.row["user_id"] for request, *_ in list(batcher.requests.queue)
                if hasattr(request, "row")}

    with psycopg.connect(test_settings.postgres_dsn()) as lock:
        lock.execute("SELECT 1 FROM wallets.accounts WHERE owner = %s AND asset = 'USDT' "
                     "FOR UPDATE", (first_user,))
        first = eventlet.spawn(call, first_user, "0.1")
        wait_for(lambda: batcher.slots.locked() and first_user not in queued_users()
                 and batch_waiting_on_lock(test_settings), what="the first batch in flight")
        others = [eventlet.spawn(call, user, "5" if i == poor else "0.1")
                  for i, user in enumerate(users)]
        wait_for(lambda: set(users) <= queued_users(), timeout=60, what="the other calls queued")
        lock.rollback()
    first.wait()
    for other in others:
        other.wait()
    refused = results[users[poor]]
    assert (code_of(refused), reason_of(refused)) == ("ORDER_REJECTED", "INSUFFICIENT_FUNDS"), \
        refused
    placed = [results[user]["order_id"] for i, user in enumerate(users) if i != poor]
    assert len(set(transactions(test_settings, placed))) == 1, "one transaction for the queue"
    assert transactions(test_settings, [results[first_user]["order_id"]]) != \
        transactions(test_settings, placed[:1])
    for i, user in enumerate(users):
        assert balance(exchange, user, "USDT") == ((D("100"), D("0")) if i == poor
                                                   else (D("90"), D("10")))
        exchange.orders.cancel_all(user, "BTC-USDT")
    exchange.orders.cancel_all(first_user, "BTC-USDT")


def batch_waiting_on_lock(settings) -> bool:
    """A backend inside place_orders_tx, waiting for a lock."""
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%%place_orders_tx%%' AND pid <> pg_backend_pid()").fetchone()[0] > 0


def test_cancels_in_one_batch_each_answered_on_its_own(exchange):
    user, other = fund(exchange, {"USDT": "1000"}), fund(exchange, {"USDT": "1000"})
    answers = exchange.orders.place_orders([limit_buy(user, "90"), limit_buy(user, "91"),
                                            limit_buy(other, "92")])
    mine = [a["order"]["order_id"] for a in answers[:2]]
    theirs = answers[2]["order"]["order_id"]
    cancelled = exchange.orders.cancel_orders([
        {"user": user, "order_id": mine[0]},
        {"user": user, "order_id": theirs},          # not this user's
        {"user": user, "order_id": mine[1]},
        {"user": user, "order_id": "x"},
    ])
    assert cancelled[0]["order"]["cancel_requested"] is True
    assert cancelled[1]["error"]["code"] == "UNKNOWN_ORDER"
    assert cancelled[2]["order"]["order_id"] == mine[1]
    assert (cancelled[3]["error"]["code"], cancelled[3]["error"]["field"]) == \
        ("INVALID_ORDER", "order_id")
    wait_for(lambda: balance(exchange, user, "USDT") == (D("1000"), D("0")),
             what="both cancels released")
    again = exchange.orders.cancel_orders([{"user": user, "order_id": mine[0]}])
    assert again[0]["error"]["code"] == "ORDER_NOT_OPEN"
    exchange.orders.cancel_all(other, "BTC-USDT")


def test_places_and_cancels_in_one_call_each_answered_on_its_own(exchange):
    """orders.place_and_cancel: one call, one batch. Each request is answered
    as place_orders / cancel_orders answers it, a refused one on its own."""
    user = fund(exchange, {"USDT": "1000"})
    resting = [a["order"]["order_id"] for a in exchange.orders.place_orders(
        [limit_buy(user, "90"), limit_buy(user, "91")])]
    answers = exchange.orders.place_and_cancel([
        {"place": limit_buy(user, "92", "1")},
        {"cancel": {"user": user, "order_id": resting[0]}},
        {"place": limit_buy(user, "100", "20")},              # 2000 USDT: too much
        {"cancel": {"user": user, "order_id": 2 ** 62}},     # no such order
        {"place": limit_buy(user, "93.001", "1")},            # off tick
        {"cancel": {"user": user, "order_id": resting[1]}},
        {"place": limit_buy(user, "94", "1"), "cancel": {"user": user, "order_id": 1}},
        "place",
    ])
    assert [next(iter(a)) for a in answers] == ["order", "order", "error", "error", "error",
                                                 "order", "error", "error"], answers
    placed = [answers[0]["order"]]
    assert placed[0]["status"] == "new"
    assert [answers[1]["order"]["order_id"], answers[5]["order"]["order_id"]] == resting
    assert answers[1]["order"]["cancel_requested"] is True
    assert answers[2]["error"]["reason"] == "INSUFFICIENT_FUNDS"
    assert answers[3]["error"]["code"] == "UNKNOWN_ORDER"
    assert (answers[4]["error"]["code"], answers[4]["error"]["field"]) == \
        ("INVALID_ORDER", "price")
    assert (answers[6]["error"]["code"], answers[6]["error"]["field"]) == \
        ("INVALID_ORDER", "requests")
    assert answers[7]["error"]["code"] == "INVALID_ORDER"
    # The cancels released their holds; the new order's is kept.
    wait_for(lambda: balance(exchange, user, "USDT") == (D("908"), D("92")),
             what="both cancels released, the new order held")
    assert [o["order_id"] for o in exchange.orders.open_orders(user)] == \
        [placed[0]["order_id"]]
    with pytest.raises(Exception) as refused:
        exchange.orders.place_and_cancel([])
    assert code_of(refused.value) == "INVALID_ORDER"
    exchange.orders.cancel_all(user, "BTC-USDT")


def test_a_redelivered_place_and_cancel_places_nothing_twice(exchange, nameko_config):
    user = fund(exchange, {"USDT": "1000"})
    resting = exchange.orders.place_orders([limit_buy(user, "90")])[0]["order"]["order_id"]
    body = {"args": [[{"place": limit_buy(user, "95.5", "1")},
                      {"cancel": {"user": user, "order_id": resting}}]], "kwargs": {}}
    request_id = str(uuid.uuid4())
    first, redelivered = send_requests(nameko_config, [(request_id, body), (request_id, body)],
                                       method="place_and_cancel")
    assert (first["error"], redelivered["error"]) == (None, None)
    first, redelivered = first["result"], redelivered["result"]
    assert redelivered[0]["order"]["order_id"] == first[0]["order"]["order_id"]
    assert first[1]["order"]["cancel_requested"] is True
    # Asked again: cancelled by now, or its first cancel not yet applied.
    assert redelivered[1].get("error", {}).get("code", "ORDER_NOT_OPEN") == "ORDER_NOT_OPEN"
    assert len(exchange.orders.order_history(user)["orders"]) == 2
    exchange.orders.cancel_all(user, "BTC-USDT")


def test_a_request_the_database_fails_fails_only_its_own_caller(exchange, services,
                                                               test_settings):
    """A batch that fails other than by a refusal (here a row the orders
    table's CHECK refuses, which no validated request can be) runs again one
    request at a time: the others are placed, the bad one fails alone."""
    from decimal import Decimal

    from services.matching.models import command_to_dict, place_order_from_decimals
    from services.orders.acceptance import Placement
    from services.orders.providers import MarketCatalog
    container = services["orders"]
    batcher = next(e for e in container.extensions if isinstance(e, Acceptance)).batcher
    config = next(e for e in container.extensions if isinstance(e, MarketCatalog)).config(
        "BTC-USDT")
    user = fund(exchange, {"USDT": "1000"})

    def placement(side):
        place = place_order_from_decimals(config, 0, user, "buy", "limit", Decimal("95"),
                                          Decimal("0.1"), None, "GTC", False, None)
        return Placement(row={
            "user_id": user, "market": "BTC-USDT", "client_order_id": None, "side": side,
            "order_type": "limit", "price": "95", "quantity": "0.1", "quote_amount": None,
            "time_in_force": "GTC", "post_only": False, "stp_mode": None, "hold_asset": "USDT",
            "hold_amount": "9.5", "cap_price": "95", "cap_quantity": "0.1", "request_id": None},
            command=command_to_dict(place))

    good, bad, also_good = batcher.submit_many(
        [placement("buy"), placement("sideways"), placement("buy")])
    assert isinstance(bad, psycopg.errors.CheckViolation), bad
    assert good["status"] == also_good["status"] == "new"
    assert holds_taken(test_settings, user) == (2, D("19"))
    exchange.orders.cancel_all(user, "BTC-USDT")


def test_amends_in_one_batch_each_refused_or_held_on_its_own(exchange, services, test_settings):
    """Two amends in one batch: the one whose extra hold wallets refuses is
    undone alone (its savepoint); the other holds its extra and is sent."""
    from services.orders.acceptance import Amend
    from services.orders.providers import MarketCatalog
    container = services["orders"]
    batcher = next(e for e in container.extensions if isinstance(e, Acceptance)).batcher
    catalog = next(e for e in container.extensions if isinstance(e, MarketCatalog))
    user = fund(exchange, {"USDT": "1000"})
    first, second = (a["order"]["order_id"] for a in exchange.orders.place_orders(
        [limit_buy(user, "95", "1"), limit_buy(user, "95", "1")]))
    grown, refused = batcher.submit_many([
        Amend(user, first, None, D("2"), catalog.config),
        Amend(user, second, None, D("100"), catalog.config)])
    assert (code_of(refused), reason_of(refused)) == ("ORDER_REJECTED", "INSUFFICIENT_FUNDS")
    assert grown["amend_requested"] is True and D(grown["hold_amount"]) == D("190")
    assert D(exchange.orders.get_order(user, second)["hold_amount"]) == D("95")
    assert holds_taken(test_settings, user) == (3, D("285"))
    wait_for(lambda: D(exchange.orders.get_order(user, first)["quantity"]) == D("2"),
             what="the engine to apply the amend")
    exchange.orders.cancel_all(user, "BTC-USDT")
